"""The service's evaluation core with plain data: streaming and wall-clock checks."""

from __future__ import annotations

from energy.site import Site
from enmon.wire import Batch, DeviceMeta, Sample
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook

S = 1000
SITE = Site.model_validate({"site": "campus", "buildings": [{
    "id": "office-1", "floor_area_m2": 1000,
    "meters": [{"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
                "max_rate_per_h": 100}]}]})


def engine(**quality: float) -> Engine:
    cfg = RulesConfig.model_validate({"quality": {"meter_offline_s": 60, "flatline_s": 120,
                                                  "gateway_offline_grace_s": 10, **quality}})
    return Engine(cfg, [SITE], AlertBook(), started_ms=0)


def b(ts: int, **values: float) -> Batch:
    return Batch("campus", "gw-01", ts, ts, {"main": DeviceMeta("office-1", "01000",
                                                                 "electricity")},
                 [Sample("main", ts, dict(values))])


def fired(out) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.rule for n in out.notifications if n.kind == "firing"]


def test_meter_offline_after_silence_but_not_while_its_gateway_is_down() -> None:
    e = engine()
    e.on_batch(b(10 * S, active_energy_import_kwh=1.0))
    assert fired(e.tick(60 * S)) == []
    assert fired(e.tick(71 * S)) == ["meter_offline"]
    e2 = engine()
    e2.on_batch(b(10 * S, active_energy_import_kwh=1.0))
    assert fired(e2.on_status("campus", "gw-01", "offline", 20 * S)) == []   # grace 10 s
    out = e2.tick(71 * S)
    assert fired(out) == ["gateway_offline"]  # one alert for the gateway, none per meter


def test_a_restart_does_not_page_for_every_known_meter() -> None:
    e = engine()  # started at 0: every meter in the site file counts as just seen
    assert fired(e.tick(59 * S)) == []


def test_counter_backwards_and_implausible_jump() -> None:
    e = engine()
    e.on_batch(b(0, active_energy_import_kwh=100.0))
    assert fired(e.on_batch(b(60 * S, active_energy_import_kwh=101.0))) == []
    # 50 kWh in one minute = 3000 kWh/h > the meter's 100 kWh/h
    assert fired(e.on_batch(b(120 * S, active_energy_import_kwh=151.0))) == ["implausible_jump"]
    assert fired(e.on_batch(b(180 * S, active_energy_import_kwh=3.0))) == ["counter_backwards"]


def test_flatline_needs_duration_and_samples() -> None:
    e = engine()
    for t in range(0, 120, 30):
        assert fired(e.on_batch(b(t * S, active_power_kw=42.0))) == []
    assert fired(e.on_batch(b(120 * S, active_power_kw=42.0))) == ["flatline"]
    out = e.on_batch(b(150 * S, active_power_kw=42.5))
    assert [n.kind for n in out.notifications] == ["resolved"]
