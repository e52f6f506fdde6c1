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


# a meter whose register wraps at 100 000 kWh and that was swapped at 61 h (old 5 003,
# new 9 000), beside the main meter
SWAPPED = Site.model_validate({"site": "campus", "buildings": [{
    "id": "office-1", "floor_area_m2": 1000,
    "meters": [{"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
                "max_rate_per_h": 100},
               {"id": "hvac", "gateway": "gw-01", "device": "hvac", "energy_type": "electricity",
                "rollover_at": 100_000, "max_rate_per_h": 100,
                "replacements": [{"at": 61 * 3_600_000, "old_final": 5_003,
                                  "new_initial": 9_000}]}]}]})


def engine(site: Site = SITE, **quality: float) -> Engine:
    cfg = RulesConfig.model_validate({"quality": {"meter_offline_s": 60, "flatline_s": 120,
                                                  "gateway_offline_grace_s": 10, **quality}})
    return Engine(cfg, [site], AlertBook(), started_ms=0)


def b(ts: int, device: str = "main", flags: dict[str, str] | None = None,
      **values: float) -> Batch:
    return Batch("campus", "gw-01", ts, ts, {device: DeviceMeta("office-1", "01000",
                                                                 "electricity")},
                 [Sample(device, ts, dict(values), dict(flags or {}))])


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


def test_counter_backwards_respects_gateway_flags_and_the_site_file() -> None:
    e = engine(SWAPPED)
    kwh, h = "active_energy_import_kwh", 3600 * S
    # the gateway flagged a wrap on a meter whose rollover_at the site file does not give
    e.on_batch(b(0, **{kwh: 99_999.0}))
    out = e.on_batch(b(60 * S, flags={kwh: "counter_rollover"}, **{kwh: 0.5}))
    assert fired(out) == []
    # a wrap at the meter's rollover_at (site file), unflagged: 25 kWh in an hour
    e.on_batch(b(0, device="hvac", **{kwh: 99_990.0}))
    assert fired(e.on_batch(b(1 * h, device="hvac", **{kwh: 15.0}))) == []
    assert fired(e.on_batch(b(60 * h, device="hvac", **{kwh: 5_001.0}))) == []
    # the swap recorded at 61 h: 2 kWh on the old meter + 2 on the new one, neither a
    # decrease nor a 4 001 kWh jump
    assert fired(e.on_batch(b(62 * h, device="hvac", **{kwh: 9_002.0}))) == []
    # an unexplained drop on the same meter still alerts, flagged counter_reset or not
    out = e.on_batch(b(63 * h, device="hvac", flags={kwh: "counter_reset"}, **{kwh: 2.0}))
    assert fired(out) == ["counter_backwards"]
    # and so does one on a meter without rollover_at and without a flag
    assert fired(e.on_batch(b(120 * S, **{kwh: 0.1}))) == ["counter_backwards"]


def test_an_implausible_boiler_figure_gives_no_verdict() -> None:
    site = Site.model_validate({"site": "campus", "buildings": [{
        "id": "plant", "floor_area_m2": 100,
        "meters": [{"id": "gas", "gateway": "gw-02", "device": "gas", "energy_type": "gas"},
                   {"id": "heat", "gateway": "gw-02", "device": "heat", "energy_type": "heat"}],
        "boilers": [{"id": "b1", "kind": "hot_water", "fuel": "natural_gas", "rated_mw": 2,
                     "ncv_mj_per_unit": 35.588, "fuel_meter": "gas", "output_meter": "heat"}]}]})
    e = Engine(RulesConfig(), [site], AlertBook(), started_ms=0)
    assert fired(e.on_boiler("campus", "plant", "b1", 88.0, 92.0, "", 0)) == ["boiler_efficiency"]
    # the heat meter starts over-reading: 101 % on a non-condensing gas boiler (NCV basis)
    out = e.on_boiler("campus", "plant", "b1", 101.0, 92.0, "", 60 * S)
    assert fired(out) == ["boiler_implausible"]
    assert [n.kind for n in out.notifications] == ["firing"]  # boiler_efficiency not resolved
    assert "gas (gw-02/gas gas_volume_m3)" in out.notifications[0].summary
    assert "heat (gw-02/heat heat_energy_gj)" in out.notifications[0].summary
    # plausible again: the data-quality alert resolves and the verdict is back
    out = e.on_boiler("campus", "plant", "b1", 93.0, 92.0, "", 120 * S)
    assert sorted((n.rule, n.kind) for n in out.notifications) == [
        ("boiler_efficiency", "resolved"), ("boiler_implausible", "resolved")]
