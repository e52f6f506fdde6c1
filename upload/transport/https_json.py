"""JSON over HTTPS, signed with HMAC-SHA256 (see ``upload/README.md`` for the wire format).

One ``POST`` to the configured endpoint per revision; the body is the envelope
``{"record_id", "revision", "op", "document"}`` and the platform answers
``{"receipt_id", "received_at", "duplicate"}``. TLS is verified against ``ca_file``
(or the system store); plain HTTP only with ``allow_http: true``.

How an answer is classified (the platform may override with ``"retryable": true|false``
in its JSON error body):

- 2xx with a ``receipt_id``: acknowledged;
- 408, 425, 429, 5xx, a connection/TLS/timeout failure, or a 2xx without a receipt:
  retryable (``Retry-After`` in seconds is honoured as the minimum delay);
- any other 4xx (401 bad signature, 422 malformed, 409 stale revision …): permanent.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from upload.signing import sign_headers
from upload.transport import PermanentError, Receipt, RetryableError

if TYPE_CHECKING:
    from upload.config import UploadConfig

_RETRYABLE_STATUS = {408, 425, 429}


def envelope_bytes(document: Mapping[str, Any], record_id: str, revision: int) -> bytes:
    """The request body: canonical JSON (sorted keys, UTF-8, no spaces)."""
    env = {"record_id": record_id, "revision": revision,
           "op": "create" if revision == 1 else "update", "document": document}
    return json.dumps(env, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _refusal(resp: httpx.Response) -> tuple[str, bool | None]:
    """``HTTP 422 malformed_document: …`` and the platform's own retryable flag, if any."""
    text = f"HTTP {resp.status_code}"
    flag: bool | None = None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if body.get("error"):
            text += f" {body['error']}"
        if body.get("message"):
            text += f": {body['message']}"
        if isinstance(body.get("retryable"), bool):
            flag = body["retryable"]
    elif resp.text:
        text += f": {resp.text[:200]}"
    return text, flag


class HttpsJsonTransport:
    """Signed JSON over HTTPS with httpx; one connection pool per sender."""

    name = "https_json"

    def __init__(self, *, endpoint: str, key_id: str, secret: bytes,
                 ca_file: str | None = None, allow_http: bool = False, timeout_s: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        url = urlsplit(endpoint)
        if url.scheme != "https" and not (url.scheme == "http" and allow_http):
            raise ValueError(f"endpoint {endpoint!r}: only https:// (allow_http not set)")
        self.endpoint, self.key_id, self._secret = endpoint, key_id, secret
        self.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.clock = clock
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout_s,
                                         follow_redirects=False, trust_env=False)

    def __repr__(self) -> str:  # never shows the secret
        return f"HttpsJsonTransport(endpoint={self.endpoint!r}, key_id={self.key_id!r})"

    async def send(self, document: Mapping[str, Any], record_id: str, revision: int) -> Receipt:
        body = envelope_bytes(document, record_id, revision)
        headers = sign_headers(self._secret, self.key_id, "POST", self.path, int(self.clock()),
                               secrets.token_hex(16), body)
        headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            resp = await self._client.post(self.endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:  # connect, TLS, timeout, protocol
            cause = exc.__cause__ or exc.__context__
            detail = str(exc) or type(exc).__name__
            if cause is not None and str(cause) and str(cause) not in detail:
                detail += f" ({cause})"
            raise RetryableError(f"{type(exc).__name__}: {detail}") from exc
        if 200 <= resp.status_code < 300:
            try:
                ack = resp.json()
                receipt_id = str(ack["receipt_id"])
            except (ValueError, KeyError, TypeError):
                raise RetryableError(f"HTTP {resp.status_code} without a receipt_id",
                                     status=resp.status_code) from None
            return Receipt(receipt_id=receipt_id, received_at=str(ack.get("received_at", "")),
                           duplicate=bool(ack.get("duplicate", False)),
                           detail=str(ack.get("message", "")))
        reason, flag = _refusal(resp)
        retryable = (resp.status_code in _RETRYABLE_STATUS or resp.status_code >= 500
                     or not 400 <= resp.status_code < 500) if flag is None else flag
        if retryable:
            raise RetryableError(reason, status=resp.status_code,
                                 retry_after_s=_retry_after(resp))
        raise PermanentError(reason, status=resp.status_code)

    async def aclose(self) -> None:
        await self._client.aclose()


def create(config: UploadConfig) -> HttpsJsonTransport:
    """Build from the config (reads the secret from its file or variable now)."""
    from upload.config import read_secret

    return HttpsJsonTransport(
        endpoint=config.endpoint, key_id=config.key_id, secret=read_secret(config),
        ca_file=str(config.ca_file) if config.ca_file else None,
        allow_http=config.allow_http, timeout_s=config.timeout_s)
