"""Rules configuration (YAML, validated): what to watch, who to tell, where state lives.

See ``rules/sample-rules.yaml`` for a documented example of every key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from energy.balance import DEFAULT_MAX_SHARE, DEFAULT_MIN_KWH
from enmon.broker import BrokerConfig
from enmon.config import StrictModel, load_model
from enmon.i18n import DEFAULT_LANG, Lang
from enmon.influx import InfluxConfig
from enmon.quantities import QUANTITIES
from rules.acklink import AckLinks
from rules.channels import ChannelConfig, WebhookChannel

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Severity = Literal["info", "warning", "critical"]


class ThresholdRule(StrictModel):
    """Fire when ``quantity`` is above ``above`` for ``for_s``; clear below ``clear_below``."""

    name: Name
    quantity: str = Field(json_schema_extra={"fix": "a quantity name such as active_power_kw"})
    above: float
    clear_below: float
    for_s: Annotated[float, Field(ge=0)] = 0.0
    severity: Severity = "warning"
    repeat_s: Annotated[float, Field(gt=0)] = 4 * 3600.0
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
    """Shorthand for a webhook channel without a signing key (kept for old configs)."""

    url: str


class Quality(StrictModel):
    """Data-quality checks. Targets are configuration: the NDRC definitions were not found."""

    meter_offline_s: Annotated[float, Field(gt=0)] = 900.0
    # rules_degraded, the engine about itself: its broker connection down this long, or
    # this many scheduled passes in a row failed (InfluxDB unreachable) — it is then blind
    degraded_after_s: Annotated[float, Field(gt=0)] = 120.0
    degraded_failed_passes: Annotated[int, Field(ge=1)] = 3
    gateway_offline_grace_s: Annotated[float, Field(ge=0)] = 60.0
    flatline_s: Annotated[float, Field(gt=0)] = 3600.0
    flatline_quantities: list[str] = ["active_power_kw"]
    counter_jitter: Annotated[float, Field(ge=0)] = 0.01
    completeness_target: Annotated[float, Field(gt=0, le=1)] = 0.95
    completeness_window_s: Annotated[float, Field(gt=0)] = 3600.0
    # master-vs-submeter balance (分项计量), per building and site-day from energy_daily: no
    # standard threshold was found, so the share is configuration (energy/balance.py)
    balance_max_share: Annotated[float, Field(gt=0, lt=1)] = DEFAULT_MAX_SHARE
    balance_min_kwh: Annotated[float, Field(ge=0)] = DEFAULT_MIN_KWH
    balance_days: Annotated[int, Field(ge=0, le=62)] = 7  # completed site-days; 0 = off
    severity: Severity = "warning"
    repeat_s: Annotated[float, Field(gt=0)] = 12 * 3600.0


class Schedule(StrictModel):
    """Scheduled checks over InfluxDB: rollups, quotas, budgets, boilers, completeness."""

    interval_s: Annotated[float, Field(gt=0)] = 300.0
    # roll-ups recompute what ingest marked as stored up to this long ago: more than one
    # write request's duration (influx timeout_s) plus the clock skew between hosts
    rollup_settle_s: Annotated[float, Field(ge=0)] = 30.0
    quota_repeat_s: Annotated[float, Field(gt=0)] = 24 * 3600.0
    boiler_repeat_s: Annotated[float, Field(gt=0)] = 12 * 3600.0


class Http(StrictModel):
    """The ack/silence API. Loopback by default; a bearer token from the env when exposed."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8095
    token_env: str | None = None


class Grouping(StrictModel):
    """``grouping:`` (Alertmanager's group_by / group_wait / group_interval): alerts that fire
    together in one place reach each channel as ONE message listing each of them.

    A firing whose ``group_by`` labels equal those of a firing held for the same channel joins
    it; a group is sent ``group_wait_s`` after its first alert, and no sooner than
    ``group_interval_s`` after that group's previous message. Resolutions, repeats and
    escalations are sent on their own; the ``mqtt`` channel (one message per rule topic) is
    never grouped.
    """

    group_by: list[str] = Field(default_factory=lambda: ["site", "building"], min_length=1,
                                json_schema_extra={
                                    "fix": "label names, e.g. [site, building]"})
    group_wait_s: float = Field(default=30.0, ge=0, le=3600, json_schema_extra={
        "fix": "seconds to wait for more alerts of a new group, 0..3600 (e.g. 30)"})
    group_interval_s: float = Field(default=300.0, ge=0, le=86400, json_schema_extra={
        "fix": "seconds between two messages of the same group, 0..86400 (e.g. 300)"})


class Maintenance(StrictModel):
    name: Name
    match: dict[str, str] = Field(json_schema_extra={
        "fix": "label patterns, e.g. {site: campus, building: 'lab-*'}"})
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(json_schema_extra={
        "fix": "0 = Monday … 6 = Sunday"})
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    tz: str = "Asia/Shanghai"


class RulesConfig(StrictModel):
    # notifications: the language of channels without their own ``language:``, and the zone
    # of alerts that belong to no site (the engine's own rules_degraded)
    language: Lang = Field(default=DEFAULT_LANG, json_schema_extra={"fix": "zh-CN or en"})
    timezone: str = "Asia/Shanghai"
    mqtt: BrokerConfig = BrokerConfig()
    influx: InfluxConfig = InfluxConfig()
    sites: list[Path] = Field(default_factory=list, json_schema_extra={
        "fix": "paths of site files (see rules/sample-site.yaml); relative to this file"})
    state_dir: Path = Path("rules-state")
    http: Http | None = Field(default=None, json_schema_extra={
        "fix": "http: {host: 127.0.0.1, port: 8095} to accept acks and silences over HTTP"})
    channels: list[Annotated[ChannelConfig, Field(discriminator="type")]] = []
    ack_links: AckLinks | None = Field(default=None, json_schema_extra={  # rules/acklink.py
        "fix": "ack_links: {base_url: https://…/rules, secret_env: ENMON_ACK_KEY}"})
    grouping: Grouping | None = Field(default=None, json_schema_extra={
        "fix": "grouping: {group_by: [site, building], group_wait_s: 30}"})
    console_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$",
                                    json_schema_extra={
        "fix": "the console as a phone reaches it, e.g. https://ems.example.cn/console "
               "(http:// or https://, no query)"})
    webhooks: list[Webhook] = []
    thresholds: list[ThresholdRule] = []
    quality: Quality = Quality()
    schedule: Schedule = Schedule()
    maintenance: list[Maintenance] = []

    @field_validator("channels")
    @classmethod
    def _escalations(cls, channels: list[ChannelConfig]) -> list[ChannelConfig]:
        """Every ``escalate.channels`` names another channel of the file (a did-you-mean)."""
        names = [c.name for c in channels]
        for c in channels:
            for target in c.escalate.channels if c.escalate else []:
                if target == c.name:
                    raise ValueError(f"{c.name}: escalate.channels names the channel itself; "
                                     "name a second channel (the escalation's)")
                if target not in names:
                    near = difflib.get_close_matches(target, names, n=1)
                    hint = f"did you mean {near[0]!r}?" if near else (
                        f"one of {', '.join(names)}")
                    raise ValueError(f"{c.name}: escalate.channels: no channel {target!r} in "
                                     f"this file; {hint}")
        return channels

    def all_channels(self) -> list[ChannelConfig]:
        legacy = [WebhookChannel(name=f"webhook-{i}", url=w.url)
                  for i, w in enumerate(self.webhooks)]
        return [*self.channels, *legacy]

    @model_validator(mode="after")
    def _names(self) -> RulesConfig:
        names = [c.name for c in self.all_channels()]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"channel names must be unique: {', '.join(sorted(dup))}")
        for q in self.quality.flatline_quantities:
            if q not in QUANTITIES:
                raise ValueError(f"unknown quantity {q!r} in quality.flatline_quantities")
        return self


def load_config(path: str | Path) -> RulesConfig:
    """Load a rules file; relative site and state paths are relative to the file."""
    cfg = load_model(RulesConfig, path)
    base = Path(path).resolve().parent
    sites = [p if p.is_absolute() else base / p for p in cfg.sites]
    state = cfg.state_dir if cfg.state_dir.is_absolute() else base / cfg.state_dir
    return cfg.model_copy(update={"sites": sites, "state_dir": state})
