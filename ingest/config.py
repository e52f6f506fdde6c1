"""Ingest configuration (YAML, validated). Example: ``ingest/sample.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from enmon.broker import BrokerConfig
from enmon.config import StrictModel, load_model
from enmon.influx import InfluxConfig
from ingest.options import BatchConfig, MetricsConfig, TimestampConfig


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
