"""Rules configuration (YAML, validated)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from enmon.config import StrictModel, load_model
from enmon.quantities import QUANTITIES
from ingest.config import BrokerConfig
from ingest.storage import InfluxConfig


class ThresholdRule(StrictModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    quantity: str = Field(json_schema_extra={"fix": "a quantity name such as active_power_kw"})
    above: float
    clear_below: float
    for_s: Annotated[float, Field(ge=0)] = 0.0
    severity: Literal["info", "warning", "critical"] = "warning"
    devices: list[str] = Field(
        default_factory=list, json_schema_extra={"fix": "device names; empty = all"}
    )

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {self.quantity!r}")
        if self.clear_below > self.above:
            raise ValueError("clear_below must be <= above (hysteresis)")
        return self


class Webhook(StrictModel):
    url: str


class RulesConfig(StrictModel):
    mqtt: BrokerConfig = BrokerConfig()
    influx: InfluxConfig = InfluxConfig()
    webhooks: list[Webhook] = []
    thresholds: list[ThresholdRule] = []


def load_config(path: str | Path) -> RulesConfig:
    return load_model(RulesConfig, path)
