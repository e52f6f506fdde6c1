"""The upload part's config: where the outbox lives and how to reach the platform.

The shared secret is never in this file: ``secret_file`` (a file only the service can
read) or ``secret_env`` (an environment variable) names where it is, and
:func:`read_secret` reads it when the transport is built. See ``upload/sample.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from enmon.config import StrictModel, load_model, parse_model
from enmon.errors import ConfigError


class Backoff(StrictModel):
    """Retry timing for documents the platform did not acknowledge.

    Args:
        base_s: delay after the first failure; doubled after each further one.
        max_s: the delay never grows beyond this.
        max_attempts: after this many retryable failures a document goes to ``dead``
            (None: keep trying for ever; a platform that is down for a week loses nothing).
    """

    base_s: Annotated[float, Field(gt=0, json_schema_extra={"fix": "seconds, e.g. 5"})] = 5.0
    max_s: Annotated[float, Field(gt=0, json_schema_extra={"fix": "seconds, e.g. 900"})] = 900.0
    max_attempts: Annotated[int | None, Field(ge=1)] = None

    @model_validator(mode="after")
    def _order(self) -> Backoff:
        if self.max_s < self.base_s:
            raise ValueError(f"max_s ({self.max_s}) is below base_s ({self.base_s})")
        return self

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1, 2, …)."""
        return float(min(self.max_s, self.base_s * 2 ** max(0, failures - 1)))


class UploadConfig(StrictModel):
    """``enmon upload … -c upload.yaml``.

    Args:
        outbox: the SQLite file of the outbox (created if missing).
        transport: a module name in ``upload/transport/`` (``https_json``).
        endpoint: the platform's upload URL; ``https://`` unless ``allow_http``.
        ca_file: PEM file of the CA that signed the platform's certificate
            (None: the system's trust store).
        allow_http: permit a plain ``http://`` endpoint (a lab only; never in production).
        key_id: the access key id the platform issued to this unit.
        secret_file: file holding the shared HMAC secret (trailing newline ignored).
        secret_env: environment variable holding it instead.
        timeout_s: one request's time limit.
        poll_s: how often the sender looks for documents another process queued.
        backoff: retry timing.
        options: settings only the chosen transport understands (validated by it).
    """

    outbox: Path
    transport: str = "https_json"
    endpoint: str
    ca_file: Path | None = None
    allow_http: bool = False
    key_id: str = Field(..., min_length=1, max_length=128)
    secret_file: Path | None = None
    secret_env: Annotated[str | None, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = None
    timeout_s: Annotated[float, Field(gt=0)] = 15.0
    poll_s: Annotated[float, Field(gt=0)] = 2.0
    backoff: Backoff = Backoff()
    options: dict[str, Any] = {}

    @field_validator("transport")
    @classmethod
    def _known(cls, v: str) -> str:
        from upload.transport import available

        if v not in available():
            raise ValueError(f"unknown transport {v!r}; available: {', '.join(available())}")
        return v

    @model_validator(mode="after")
    def _check(self) -> UploadConfig:
        url = urlsplit(self.endpoint)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"endpoint {self.endpoint!r} is not an https:// URL")
        if url.scheme == "http" and not self.allow_http:
            raise ValueError(f"endpoint {self.endpoint!r} is plain HTTP; use https:// "
                             "(or set allow_http: true in a lab)")
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("set exactly one of secret_file and secret_env (the secret itself "
                             "never goes in this file)")
        from upload.transport import load_module

        opts_model = getattr(load_module(self.transport), "Options", None)
        if opts_model is not None:
            opts_model.model_validate(self.options)
        elif self.options:
            raise ValueError(f"transport {self.transport!r} takes no options")
        return self


def load_config(path: str | Path) -> UploadConfig:
    """Read and validate ``upload.yaml``; relative paths are relative to the file."""
    cfg = load_model(UploadConfig, path)
    base = Path(path).parent
    updates: dict[str, Any] = {}
    for key in ("outbox", "ca_file", "secret_file"):
        value = getattr(cfg, key)
        if value is not None and not value.is_absolute():
            updates[key] = base / value
    return cfg.model_copy(update=updates) if updates else cfg


def parse_config(data: Any, *, file: str = "<string>") -> UploadConfig:
    """Validate an already-parsed mapping (tests, embedding)."""
    return parse_model(UploadConfig, data, file=file)


def read_secret(cfg: UploadConfig, *, file: str = "upload.yaml") -> bytes:
    """The HMAC secret, from its file or variable; errors never quote it."""
    if cfg.secret_env is not None:
        value = os.environ.get(cfg.secret_env, "")
        if not value:
            raise ConfigError(file, "secret_env", f"environment variable {cfg.secret_env} is "
                              "unset or empty", "export it in the service's environment")
        return value.encode()
    assert cfg.secret_file is not None
    try:
        data = cfg.secret_file.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(file, "secret_file", f"cannot read {cfg.secret_file}: "
                          f"{exc.strerror}", "check the path and that the service may read it"
                          ) from None
    if not data:
        raise ConfigError(file, "secret_file", f"{cfg.secret_file} is empty",
                          "write the secret the platform issued into it")
    return data
