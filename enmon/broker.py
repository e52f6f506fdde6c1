"""How a server-side service (ingest, rules, the inspector's live alerts) reaches its MQTT broker.

Shared ground: ingest and rules read the same ``mqtt:`` block, so it is validated once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from enmon.config import StrictModel

if TYPE_CHECKING:
    import ssl


class BrokerConfig(StrictModel):
    """An MQTT broker as seen by a server-side service (ingest, rules)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str | None = None
    username: str | None = None
    password_env: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    session_expiry_s: Annotated[int, Field(ge=0)] = 86_400

    def password(self) -> str | None:
        import os

        return os.environ.get(self.password_env) if self.password_env else None

    def tls_context(self) -> ssl.SSLContext | None:
        """TLS to the broker when a CA or a client certificate is configured."""
        if self.ca_file is None and self.cert_file is None:
            return None
        import ssl as _ssl

        ctx = _ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file),
                                str(self.key_file) if self.key_file else None)
        return ctx
