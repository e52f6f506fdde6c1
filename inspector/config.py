"""Configuration of the inspector API (YAML, validated; errors name file, key and fix).

Example (``enmon api run -c inspector.yaml``)::

    influx: {url: http://127.0.0.1:8086, database: enmon}
    sites: [site-campus.yaml]            # rules site files: buildings, floor areas, quotas
    rules_url: http://127.0.0.1:8095     # the rules service's alert API (acknowledging)
    rules_token_env: ENMON_RULES_TOKEN
    language: zh-CN                      # or en: reports and console unless a request asks
    tokens:
      - {name: wang.inspector, role: inspector, sha256: 3f1a...}
      - {name: li.facilities, role: facility_manager, sha256: 9b0c...}
      - {name: chen.operator, role: operator, sha256: 77d2...}   # may send device commands
    # device commands (POST …/gateways/{gateway}/commands): signed with one of the
    # gateways' command keys, published as the broker's ``api`` identity
    commands:
      key: {id: ops-1, file: /etc/enmon/command.key}   # or env: ENMON_COMMAND_KEY (0600)
      lifetime_s: 60
    mqtt: {host: 127.0.0.1, port: 8883, username: api, password_file: /etc/enmon/api.mqtt,
           ca_file: /etc/enmon/ca.crt}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from enmon.broker import BrokerConfig
from enmon.config import StrictModel, load_model
from enmon.errors import ConfigError
from enmon.influx import InfluxConfig
from gateway.config import CommandKey
from inspector.auth import Role


class TokenEntry(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    role: Role = Field(json_schema_extra={
        "fix": "inspector, facility_manager, data_clerk or operator"})
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] = Field(json_schema_extra={
        "fix": "the SHA-256 of the token, as printed by `enmon api token`"})


class CommandBroker(BrokerConfig):
    """The broker the API publishes device commands to, as the ``api`` identity (the only
    one the broker's ACL lets publish on ``…/command``). TLS as for ingest and rules:
    ``ca_file`` (and a client ``cert_file``/``key_file``). The password from an environment
    variable or a file (0600), never from this YAML."""

    password_file: Path | None = Field(default=None, json_schema_extra={
        "fix": "a file (mode 0600) holding the api identity's MQTT password"})
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    @model_validator(mode="after")
    def _one_password(self) -> CommandBroker:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give the MQTT password's password_file or password_env, not both")
        return self

    def password(self) -> str | None:
        if self.password_file is None:
            return super().password()
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(str(self.password_file), "mqtt.password_file",
                              f"cannot read: {exc.strerror}",
                              "make the file readable by the API's user") from None


class CommandSigning(StrictModel):
    """How the API signs device commands: one of the gateways' command keys (the same
    ``{id, file | env}`` as a gateway's ``commands.keys``; the secret never in the YAML)."""

    key: CommandKey = Field(json_schema_extra={
        "fix": "{id: ops-1, file: /etc/enmon/command.key} — a key the gateways hold"})
    # a request that names no lifetime gets this one; at most max_lifetime_s (keep it at or
    # below the gateways' commands.max_lifetime_s, or they refuse it as lifetime_too_long)
    lifetime_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    max_lifetime_s: Annotated[int, Field(ge=1, le=86_400)] = 900

    @model_validator(mode="after")
    def _lifetimes(self) -> CommandSigning:
        if self.lifetime_s > self.max_lifetime_s:
            raise ValueError("commands.lifetime_s is longer than commands.max_lifetime_s")
        return self


class InspectorConfig(StrictModel):
    influx: InfluxConfig = InfluxConfig()
    sites: list[Path] = Field(default_factory=list, json_schema_extra={
        "fix": "paths of rules site files (see rules/sample-site.yaml); relative to this file"})
    tokens: list[TokenEntry] = Field(default_factory=list, json_schema_extra={
        "fix": "at least one {name, role, sha256} from `enmon api token`"})
    rules_url: str | None = Field(default=None, json_schema_extra={
        "fix": "the rules service's http: address, e.g. http://127.0.0.1:8095"})
    rules_token_env: str | None = None
    timezone: str = "Asia/Shanghai"
    max_range_days: Annotated[int, Field(ge=1, le=3660)] = 400
    # what reports and the console speak unless a request asks otherwise (?lang=,
    # Accept-Language, --lang); our readers are Chinese, so Chinese unless told
    language: Literal["zh-CN", "en"] = Field(default="zh-CN", json_schema_extra={
        "fix": "zh-CN or en"})

    commands: CommandSigning | None = Field(default=None, json_schema_extra={
        "fix": "{key: {id: ops-1, file: /etc/enmon/command.key}} (see inspector/README.md)"})
    mqtt: CommandBroker | None = Field(default=None, json_schema_extra={
        "fix": "{host: …, port: …, username: api, password_file: …} (the broker's api "
               "identity)"})

    @model_validator(mode="after")
    def _commands_need_a_broker(self) -> InspectorConfig:
        if self.commands is not None and self.mqtt is None:
            raise ValueError("commands: needs mqtt: (the broker the commands are published "
                             "to, as the api identity)")
        return self

    def rules_token(self) -> str | None:
        return os.environ.get(self.rules_token_env) if self.rules_token_env else None


def load_config(path: str | Path) -> InspectorConfig:
    cfg = load_model(InspectorConfig, path)
    base = Path(path).resolve().parent
    return cfg.model_copy(update={"sites": [p if p.is_absolute() else base / p
                                            for p in cfg.sites]})
