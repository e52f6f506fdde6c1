"""Scenarios as data: what goes wrong on the campus, when, and what should be noticed.

A scenario is a YAML file of timed events (a building drifting over its quota,
a boiler fouling, a meter dying, a gateway losing its uplink, a meter being
replaced) plus the alert it is meant to produce. Event times are offsets from
an *anchor*: ``year_start`` (1 January, local time — for drifts that the
year-to-date history must contain) or ``run_start`` (when the live run began —
for faults a demo or a test wants to see within seconds).

:class:`Effects` turns a set of scenarios into pure functions of time that the
campus simulator and the endpoint layer query; it holds no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from enmon.config import StrictModel, load_model
from firmware_sim.campus.config import Duration, Id

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
Anchor = Literal["year_start", "run_start"]


class _Event(StrictModel):
    start: Duration = 0.0
    anchor: Anchor | None = None  # overrides the scenario's anchor for this event


class LoadDrift(_Event):
    """A building's sub-items slowly use more (setpoints changed, lights left on)."""

    kind: Literal["load_drift"]
    building: Id
    items: list[Literal["lighting_sockets", "hvac", "power", "special", "water", "gas",
                        "heat", "steam"]] = ["lighting_sockets", "hvac", "power", "special"]
    factor: Annotated[float, Field(gt=0, le=20)]
    ramp: Duration = 0.0


class Fouling(_Event):
    """Soot or scale builds up: the exhaust gets hotter, the efficiency falls."""

    kind: Literal["fouling"]
    boiler: Id
    to: Annotated[float, Field(ge=0, le=1)]
    ramp: Duration = 0.0


class MeterDies(_Event):
    """The device stops answering (dead power supply, cut RS-485 line)."""

    kind: Literal["meter_dies"]
    device: Id
    end: Duration | None = None


class UplinkLoss(_Event):
    """The gateway cannot reach the broker (4G outage, firewall change)."""

    kind: Literal["uplink_loss"]
    gateway: Id
    end: Duration | None = None


class MeterReplaced(_Event):
    """A new meter goes in: its counter starts again from ``reading``."""

    kind: Literal["meter_replaced"]
    device: Id
    reading: Annotated[float, Field(ge=0)] = 0.0


Event = Annotated[LoadDrift | Fouling | MeterDies | UplinkLoss | MeterReplaced,
                  Field(discriminator="kind")]


class Expectation(StrictModel):
    """The alert the scenario exists to produce (checked by the end-to-end tests)."""

    # the rule engine's rule names (rules/engine.py)
    alert: Literal["quota_early_warning", "quota_exceeded", "budget",
                   "boiler_efficiency", "meter_offline", "gateway_offline", "flatline",
                   "counter_backwards", "implausible_jump", "completeness"]
    target: Id
    within: Duration = 120.0


class Scenario(StrictModel):
    name: Id
    description: str
    anchor: Anchor = "run_start"
    events: list[Event]
    expect: list[Expectation] = []


def scenario_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    return SCENARIO_DIR / f"{name}.yaml"


def load_scenario(name: str) -> Scenario:
    return load_model(Scenario, scenario_path(name))


def library() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def _ramp(t: float, start: float, ramp: float) -> float:
    """0 before ``start``, 1 after ``start + ramp``, linear between."""
    if t <= start:
        return 0.0
    if ramp <= 0 or t >= start + ramp:
        return 1.0
    return (t - start) / ramp


@dataclass(frozen=True, slots=True)
class _Timed:
    at: float
    end: float | None
    event: LoadDrift | Fouling | MeterDies | UplinkLoss | MeterReplaced


class Effects:
    """Scenario events resolved to absolute epoch seconds.

    Args:
        scenarios: what to apply.
        year_start: epoch seconds of 1 January 00:00 local time of the simulated year.
        run_start: epoch seconds at which the live run (or the test) began.
    """

    def __init__(self, scenarios: Iterable[Scenario], *, year_start: float,
                 run_start: float) -> None:
        self.scenarios = list(scenarios)
        self._timed: list[_Timed] = []
        for sc in self.scenarios:
            for ev in sc.events:
                base = year_start if (ev.anchor or sc.anchor) == "year_start" else run_start
                end = getattr(ev, "end", None)
                self._timed.append(_Timed(base + ev.start, None if end is None else base + end, ev))

    def multipliers(self, building: str, t: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for x in self._timed:
            ev = x.event
            if isinstance(ev, LoadDrift) and ev.building == building:
                f = 1.0 + (ev.factor - 1.0) * _ramp(t, x.at, ev.ramp)
                for item in ev.items:
                    out[item] = out.get(item, 1.0) * f
        return out

    def fouling(self, boiler: str, base: float, t: float) -> float:
        value = base
        for x in self._timed:
            ev = x.event
            if isinstance(ev, Fouling) and ev.boiler == boiler:
                value = value + (ev.to - value) * _ramp(t, x.at, ev.ramp)
        return value

    def _active(self, kind: type, attr: str, name: str, t: float) -> bool:
        return any(
            isinstance(x.event, kind) and getattr(x.event, attr) == name
            and x.at <= t and (x.end is None or t < x.end)
            for x in self._timed
        )

    def device_dead(self, device: str, t: float) -> bool:
        return self._active(MeterDies, "device", device, t)

    def uplink_down(self, gateway: str, t: float) -> bool:
        return self._active(UplinkLoss, "gateway", gateway, t)

    def replacements(self) -> list[tuple[float, str, float]]:
        """(epoch s, device, new reading), in time order."""
        return sorted((x.at, x.event.device, x.event.reading) for x in self._timed
                      if isinstance(x.event, MeterReplaced))

    def change_times(self) -> list[float]:
        """Instants where something switches: the simulator steps exactly onto them."""
        out: set[float] = set()
        for x in self._timed:
            out.add(x.at)
            if x.end is not None:
                out.add(x.end)
            ramp = getattr(x.event, "ramp", 0.0)
            if ramp:
                out.add(x.at + ramp)
        return sorted(out)
