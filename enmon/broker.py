"""How a server-side service (ingest, rules, the inspector's live alerts) reaches its MQTT broker.

Shared ground: ingest and rules read the same ``mqtt:`` block, so it is validated once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from enmon.config import StrictModel


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
