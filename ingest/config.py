"""Ingest configuration (YAML, validated). Example: ``ingest/sample.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from enmon.config import StrictModel, load_model
from ingest.options import BatchConfig, MetricsConfig, TimestampConfig
from ingest.storage import InfluxConfig


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


class IngestConfig(StrictModel):
    mqtt: BrokerConfig = BrokerConfig()
    influx: InfluxConfig = InfluxConfig()
    # the shared-subscription group: workers in one group split the stream
    group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "ingest"
    batch: BatchConfig = BatchConfig()
    timestamps: TimestampConfig = TimestampConfig()
    metrics: MetricsConfig = MetricsConfig()


def load_config(path: str | Path) -> IngestConfig:
    return load_model(IngestConfig, path)
