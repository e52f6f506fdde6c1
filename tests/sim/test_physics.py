"""The simulated campus is physically consistent, deterministic, and its scenarios act.

These are properties a user of the simulator relies on when a test, a benchmark or the
demo says "the rules caught it": the data the rules saw was a self-consistent campus,
not noise that happens to trip a threshold.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from enmon.errors import ConfigError
from firmware_sim.campus import CampusModel, CampusSim, load_campus, load_scenario
from firmware_sim.campus import boiler as bl
from firmware_sim.campus.scenario import library as scenario_library
from firmware_sim.campus.steam import vapour_enthalpy_kj_kg, water_enthalpy_kj_kg

CST = timezone(timedelta(hours=8))
# A Wednesday in January, 10:00 local: offices open, heating on, steam boiler at load.
WINTER_MORNING = datetime(2026, 1, 14, 10, 0, tzinfo=CST).timestamp()
SUB = ("light", "hvac", "power", "spec")


@pytest.fixture(scope="module")
def campus() -> CampusModel:
    return load_campus()


def _sim(campus: CampusModel, start: float = WINTER_MORNING, **kw: Any) -> CampusSim:
    return CampusSim(campus, start=start, **kw)


def test_same_seed_same_campus_other_seed_other_campus(campus: CampusModel) -> None:
    a, b, c = _sim(campus), _sim(campus), _sim(campus, seed=7)
    for s in (a, b, c):
        s.advance_to(WINTER_MORNING + 6 * 3600, max_step=60)
    ra = {d: a.reading(d) for d in a.devices}
    assert ra == {d: b.reading(d) for d in b.devices}
    rc = {d: c.reading(d) for d in c.devices}
    energy = "active_energy_import_kwh"
    assert rc["admin-main"][energy] != ra["admin-main"][energy]
    assert c.outdoor_c != a.outdoor_c


def test_energy_counter_is_the_integral_of_the_reported_power(campus: CampusModel) -> None:
    """Differentiating a counter gives back the power curve the same meter reports."""
    sim = _sim(campus)
    dev = "hosp-hvac"
    e0 = sim.reading(dev)["active_energy_import_kwh"]
    integral, last_p, step = 0.0, sim.reading(dev)["active_power_kw"], 30.0
    for i in range(1, 24 * 120 + 1):  # one day in 30 s polls
        sim.advance_to(WINTER_MORNING + i * step, max_step=step)
        p = sim.reading(dev)["active_power_kw"]
        integral += (last_p + p) / 2 * step / 3600
        last_p = p
    delta = sim.reading(dev)["active_energy_import_kwh"] - e0
    assert delta > 100  # a hospital's HVAC uses energy on a January day
    assert delta == pytest.approx(integral, rel=1e-9)


def test_water_counter_is_the_integral_of_the_reported_flow(campus: CampusModel) -> None:
    """A water meter's volume is the flow it reports, integrated: over a day of 60 s polls
    the hospital draws what its flow curve says, more by day than at night."""
    sim = _sim(campus, start=WINTER_MORNING - 10 * 3600)  # from midnight
    dev = "hosp-water"
    assert sim.devices[dev].energy_type == "water" and sim.devices[dev].category == "02000"
    v0 = sim.reading(dev)["water_volume_m3"]
    integral, last, step = 0.0, sim.reading(dev)["water_flow_m3_h"], 60.0
    flows: list[float] = []
    for _ in range(24 * 60):
        sim.advance_to(sim.t + step, max_step=step)
        f = sim.reading(dev)["water_flow_m3_h"]
        integral += (last + f) / 2 * step / 3600
        last = f
        flows.append(f)
    used = sim.reading(dev)["water_volume_m3"] - v0
    assert 50 < used < 500  # m³ a day for a 30 000 m² hospital
    assert used == pytest.approx(integral, rel=1e-9)
    night, day = flows[3 * 60], flows[10 * 60]  # 03:00 and 10:00
    assert day > 1.5 * night > 0


def test_counters_do_not_depend_on_the_step_size(campus: CampusModel) -> None:
    """History (15-minute steps) and live endpoints (1-minute steps) tell the same story."""
    coarse, fine = _sim(campus), _sim(campus)
    end = WINTER_MORNING + 3 * 86_400
    coarse.advance_to(end, max_step=900)
    fine.advance_to(end, max_step=60)
    start = _sim(campus)
    for dev in ("admin-main", "hosp-main", "mall-main", "hosp-gas", "hw1-heat", "steam1-gas",
                "hosp-water"):
        q = next(k for k in start.reading(dev) if k.endswith(("_kwh", "_m3", "_gj")))
        used_c = coarse.reading(dev)[q] - start.reading(dev)[q]
        used_f = fine.reading(dev)[q] - start.reading(dev)[q]
        assert used_c == pytest.approx(used_f, rel=0.02), dev


def test_mains_is_the_sum_of_its_sub_item_meters(campus: CampusModel) -> None:
    sim = _sim(campus)
    before = {d: sim.reading(d) for d in sim.devices}
    sim.advance_to(WINTER_MORNING + 2 * 86_400, max_step=120)
    now = {d: sim.reading(d) for d in sim.devices}
    for b in ("admin", "hosp", "mall"):
        main = now[f"{b}-main"]
        subs = [now[f"{b}-{s}"] for s in SUB]
        assert main["active_power_kw"] == pytest.approx(sum(s["active_power_kw"] for s in subs))
        for ph in ("l1", "l2", "l3"):
            key = f"active_power_{ph}_kw"
            assert main[key] == pytest.approx(sum(s[key] for s in subs))
        used = lambda d: now[d]["active_energy_import_kwh"] - before[d]["active_energy_import_kwh"]  # noqa: E731
        assert used(f"{b}-main") == pytest.approx(sum(used(f"{b}-{s}") for s in SUB), rel=1e-9)


def test_electrical_readings_agree_with_each_other(campus: CampusModel) -> None:
    sim = _sim(campus)
    for dev in ("admin-light", "hosp-main", "school-main"):
        r = sim.reading(dev)
        assert r["active_power_kw"] == pytest.approx(
            r["active_power_l1_kw"] + r["active_power_l2_kw"] + r["active_power_l3_kw"])
        for ph in ("1", "2", "3"):
            p = r[f"voltage_l{ph}_v"] * r[f"current_l{ph}_a"] * r["power_factor"] / 1000
            assert p == pytest.approx(r[f"active_power_l{ph}_kw"], rel=1e-9)
        assert r["apparent_power_kva"] == pytest.approx(
            math.hypot(r["active_power_kw"], r["reactive_power_kvar"]))
        assert 200 < r["voltage_l1_v"] < 245 and 49.9 < r["frequency_hz"] < 50.1


# Steam: daily cold starts (05:30) and stops (22:00). Hot water: a November week where
# the heating loop starts on cold mornings and stops on mild afternoons.
@pytest.mark.parametrize("boiler,gas,out,start", [
    ("steam-1", "steam1-gas", "steam1-steam", WINTER_MORNING - 10 * 3600),
    ("hw-1", "hw1-gas", "hw1-heat", datetime(2026, 11, 20, tzinfo=CST).timestamp()),
])
def test_boiler_energy_balance(
    campus: CampusModel, boiler: str, gas: str, out: str, start: float
) -> None:
    """Gas × NCV = useful heat + losses + heat stored in the boiler (incl. start-ups)."""
    sim = _sim(campus, start=start)
    g0, h0 = sim.reading(gas)["gas_volume_m3"], sim.reading(out)["heat_energy_gj"]
    stored0 = sim.boiler_state[boiler].stored_mj
    sim.advance_to(sim.t + 3 * 86_400, max_step=60)
    st = sim.boiler_state[boiler]
    assert st.starts >= 2
    fuel_mj = (sim.reading(gas)["gas_volume_m3"] - g0) * campus.gas_ncv_mj_m3
    useful_mj = (sim.reading(out)["heat_energy_gj"] - h0) * 1000
    assert fuel_mj == pytest.approx(st.fuel_mj, rel=1e-9)
    assert useful_mj == pytest.approx(st.useful_mj, rel=1e-9)
    assert fuel_mj == pytest.approx(
        st.useful_mj + st.loss_mj + (st.stored_mj - stored0) + st.standby_mj, rel=1e-9)
    assert st.charged_mj > 0 and st.standby_mj > 0  # start-ups warmed it, stops cooled it
    assert 0.80 < useful_mj / fuel_mj < 0.96


def test_steam_mass_times_enthalpy_rise_is_the_heat_counter(campus: CampusModel) -> None:
    sim = _sim(campus)  # already running at 10:00: constant header pressure
    r0 = sim.reading("steam1-steam")
    sim.advance_to(WINTER_MORNING + 4 * 3600, max_step=60)
    r1 = sim.reading("steam1-steam")
    dh = vapour_enthalpy_kj_kg(0.8) - water_enthalpy_kj_kg(80.0)
    mass_t = r1["steam_mass_t"] - r0["steam_mass_t"]
    assert mass_t > 5
    assert mass_t * dh / 1e3 == pytest.approx(r1["heat_energy_gj"] - r0["heat_energy_gj"], rel=1e-3)


def test_heat_meter_power_is_flow_times_temperature_difference(campus: CampusModel) -> None:
    """A heat meter's kW = flow × c_p × (supply − return), as the meter itself computes it."""
    sim = _sim(campus)
    r = sim.reading("hw1-heat")
    assert r["heat_power_kw"] > 100  # heating on a January morning
    kg_s = r["water_flow_m3_h"] * 0.975 / 3.6  # hot water ~0.975 t/m³
    assert r["heat_power_kw"] == pytest.approx(
        kg_s * 4.19 * (r["supply_temp_c"] - r["return_temp_c"]), rel=1e-6)
    assert 50 < r["supply_temp_c"] <= 80 and r["return_temp_c"] < r["supply_temp_c"]


def _indirect(spec: bl.BoilerSpec, flue: dict[str, float]) -> float:
    """The indirect method, written out independently of the model's code."""
    q2 = (flue["flue_temp_c"] - flue["combustion_air_temp_c"]) * (
        0.66 / (21 - flue["flue_o2_pct"]) + 0.009)
    load = flue["boiler_load_pct"] / 100
    return 100 - q2 - spec.unburnt_loss_pct - spec.surface_loss_pct / load


def test_flue_readings_agree_with_the_counters_at_steady_load(campus: CampusModel) -> None:
    """Direct method from the gas and heat counters = indirect method from the analyser."""
    sim = _sim(campus)
    spec = sim.boilers["steam-1"]
    checked = 0
    for _ in range(12):  # twelve 10-minute windows through the day
        g0 = sim.reading("steam1-gas")["gas_volume_m3"]
        h0 = sim.reading("steam1-steam")["heat_energy_gj"]
        flue = [sim.reading("steam1-flue")]
        for _ in range(10):
            sim.advance_to(sim.t + 60, max_step=60)
            flue.append(sim.reading("steam1-flue"))
        loads = [f["boiler_load_pct"] for f in flue]
        if min(loads) < 100 * spec.min_load:
            continue
        direct = 100 * (sim.reading("steam1-steam")["heat_energy_gj"] - h0) * 1000 / (
            (sim.reading("steam1-gas")["gas_volume_m3"] - g0) * campus.gas_ncv_mj_m3)
        indirect = sum(_indirect(spec, f) for f in flue) / len(flue)
        assert direct == pytest.approx(indirect, abs=0.15)
        assert 92.0 < direct < 95.5  # a clean gas boiler with an economiser
        checked += 1
    assert checked >= 6


def test_start_up_and_low_load_cost_efficiency(campus: CampusModel) -> None:
    spec = bl.BoilerSpec(id="b", kind="hot_water", rated_kw=2000, startup_s=900)
    st = bl.BoilerState()
    bl.decide(spec, st, 1500, 12.0, 0.0)
    cold = bl.rates(spec, st, 1500, 25, 0.0, 0.0)
    assert cold.useful_kw == 0 and cold.fuel_kw > 0 and cold.charge_kw == pytest.approx(1500)
    for _ in range(20):
        bl.decide(spec, st, 1500, 12.0, 60.0)
    warm = bl.rates(spec, st, 1500, 25, 0.0, 0.0)
    assert warm.useful_kw == pytest.approx(1500) and warm.charge_kw == 0
    assert warm.flue_c > cold.flue_c
    low = bl.rates(spec, st, 250, 25, 0.0, 0.0)  # 12.5 % load: below turndown, cycling
    assert low.efficiency_pct < warm.efficiency_pct - 2
    assert low.flue_o2_pct > warm.flue_o2_pct
    fouled = bl.rates(spec, st, 1500, 25, 1.0, 0.0)
    assert fouled.flue_c > warm.flue_c + 60
    assert fouled.efficiency_pct < 92.0 < warm.efficiency_pct  # GB 24500 limit, gas chamber


def test_boiler_fouling_scenario_drives_efficiency_below_the_limit(campus: CampusModel) -> None:
    """Ten days of fouling before the run: clean then, below the GB 24500 limit now."""
    day = 86_400.0
    sim = _sim(campus, start=WINTER_MORNING - 12 * day, run_start=WINTER_MORNING,
               scenarios=[load_scenario("boiler-fouls")])
    spec = sim.boilers["steam-1"]
    before = _indirect(spec, sim.reading("steam1-flue"))
    sim.advance_to(WINTER_MORNING - day, max_step=900)
    g0 = sim.reading("steam1-gas")["gas_volume_m3"]
    h0 = sim.reading("steam1-steam")["heat_energy_gj"]
    sim.advance_to(WINTER_MORNING, max_step=900)
    after = _indirect(spec, sim.reading("steam1-flue"))
    assert before > 92.5 and after < 91.0
    assert sim.boiler_rates["steam-1"].efficiency_pct == pytest.approx(after, abs=0.01)
    # the direct method over the last day (incl. a start-up) agrees: below the limit
    direct = 100 * (sim.reading("steam1-steam")["heat_energy_gj"] - h0) * 1000 / (
        (sim.reading("steam1-gas")["gas_volume_m3"] - g0) * campus.gas_ncv_mj_m3)
    assert 85.0 < direct < 91.5


def test_meter_dies_and_uplink_loss_follow_the_scenario_clock(campus: CampusModel) -> None:
    sim = _sim(campus, scenarios=[load_scenario("meter-dies"), load_scenario("uplink-loss")])
    assert sim.answering("school-main") and sim.uplink_up("gw-mall")
    sim.advance_to(WINTER_MORNING + 20, max_step=1)
    assert not sim.answering("school-main") and sim.answering("school-water")
    assert not sim.uplink_up("gw-mall") and sim.uplink_up("gw-admin")
    e = sim.reading("school-main")["active_energy_import_kwh"]
    sim.advance_to(WINTER_MORNING + 80, max_step=1)
    assert sim.uplink_up("gw-mall") and not sim.answering("school-main")
    # the building still uses energy while its meter is silent
    assert sim.reading("school-main")["active_energy_import_kwh"] > e


def test_meter_replacement_restarts_the_counter(campus: CampusModel) -> None:
    sim = _sim(campus, scenarios=[load_scenario("meter-replaced")])
    old = sim.reading("hosp-hvac")["active_energy_import_kwh"]
    assert old > 1000
    sim.advance_to(WINTER_MORNING + 20, max_step=7)  # the swap lands between two steps
    assert sim.reading("hosp-hvac")["active_energy_import_kwh"] == 0.0
    sim.advance_to(WINTER_MORNING + 3620, max_step=60)
    p = sim.reading("hosp-hvac")["active_power_kw"]
    assert sim.reading("hosp-hvac")["active_energy_import_kwh"] == pytest.approx(p, rel=0.15)


def test_quota_drift_raises_the_admin_building_annual_use(campus: CampusModel) -> None:
    start = datetime(2026, 1, 1, tzinfo=CST).timestamp()
    base = _sim(campus, start=start)
    drift = _sim(campus, start=start, scenarios=[load_scenario("building-over-quota")])
    for s in (base, drift):
        s.advance_to(start + 180 * 86_400, max_step=3600)
    e0 = _sim(campus, start=start).reading("admin-main")["active_energy_import_kwh"]
    used_base = base.reading("admin-main")["active_energy_import_kwh"] - e0
    used_drift = drift.reading("admin-main")["active_energy_import_kwh"] - e0
    assert used_drift > 1.3 * used_base
    # the drift hits lighting and HVAC only
    assert drift.reading("admin-power")["active_energy_import_kwh"] == pytest.approx(
        base.reading("admin-power")["active_energy_import_kwh"])


@pytest.mark.slow
def test_annual_intensities_are_plausible_for_each_building_type(campus: CampusModel) -> None:
    """Per-m² parameters give annual kWh/(m²·a) in the ranges building statistics report."""
    start = datetime(2025, 1, 1, tzinfo=CST).timestamp()
    sim = _sim(campus, start=start)
    e0 = {b.id: sim.reading(f"{b.meters[0].device}")["active_energy_import_kwh"]
          for b in campus.buildings}
    sim.advance_to(start + 365 * 86_400, max_step=1800)
    ranges = {"office": (60, 120), "hospital": (130, 250), "school": (30, 80), "mall": (150, 300)}
    for b in campus.buildings:
        used = sim.reading(b.meters[0].device)["active_energy_import_kwh"] - e0[b.id]
        kwh_m2 = used / b.floor_area_m2
        lo, hi = ranges[b.type]
        assert lo < kwh_m2 < hi, (b.id, kwh_m2)


def test_every_shipped_scenario_loads_and_names_real_things(campus: CampusModel) -> None:
    names = scenario_library()
    assert {"building-over-quota", "boiler-fouls", "meter-dies", "uplink-loss",
            "meter-replaced"} <= set(names)
    devices = set(campus.devices())
    buildings = {b.id for b in campus.buildings}
    assert campus.boiler_house is not None
    boilers = {b.id for b in campus.boiler_house.boilers}
    gateways = {b.gateway for b in campus.buildings} | {campus.boiler_house.gateway}
    for name in names:
        sc = load_scenario(name)
        assert sc.expect, name
        for ev in sc.events:
            target = getattr(ev, "device", None) or getattr(ev, "building", None) or getattr(
                ev, "boiler", None) or getattr(ev, "gateway", None)
            assert target in devices | buildings | boilers | gateways, (name, target)


def test_a_wrong_campus_file_names_file_key_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "campus.yaml"
    bad.write_text(
        "site: x\nbuildings:\n  - id: a\n    type: office\n    floor_area_m2: 100\n"
        "    gateway: gw\n    meters:\n      - {device: m, measures: main, profile: p}\n")
    with pytest.raises(ConfigError) as exc:
        load_campus(bad)
    assert str(bad) in str(exc.value) and "buildings.0.meters" in exc.value.key
    assert "mains" in exc.value.problem
    bad.write_text("site: x\nbuildings: []\nseed: 1\nclimat: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_campus(bad)
    assert exc.value.key == "climat" and "did you mean 'climate'" in exc.value.fix


def test_the_fast_energy_reading_is_the_full_reading(campus: CampusModel) -> None:
    sim = _sim(campus)
    for dev in ("admin-main", "hosp-light", "school-main"):
        full, fast = sim.reading(dev), sim.reading(dev, energy_only=True)
        assert set(fast) == {"active_energy_import_kwh", "active_power_kw"}
        assert fast == pytest.approx({q: full[q] for q in fast}, rel=1e-12)


def test_history_counters_are_quantised_like_the_registers_the_gateway_reads(
    campus: CampusModel,
) -> None:
    """A history counter equals what the device's register would decode to, exactly."""
    from firmware_sim.history import _quantisers
    from gateway import library
    from gateway.profile import ModbusProfile, from_canonical, to_canonical

    sim = _sim(campus)
    quant = _quantisers(sim)
    checked = 0
    for dev, fns in quant.items():
        prof = library.load(sim.devices[dev].profile)
        assert isinstance(prof, ModbusProfile)
        fields = {f.quantity: f for f in prof.fields()}
        for q, fn in fns.items():
            for v in (0.0, 1234.5678, 98_765.4321, sim.reading(dev).get(q, 7.0)):
                f = fields[q]
                assert fn(v) == pytest.approx(to_canonical(f, from_canonical(f, v)), abs=1e-9)
                checked += 1
    assert checked > 40


def test_steam_table_agrees_with_iapws97() -> None:
    """The simulator's short saturation table, checked against the full IAPWS-IF97."""
    iapws = pytest.importorskip("iapws")  # installed with the rules (server extra)
    from firmware_sim.campus.steam import ATM_MPA, saturation_temp_c

    for gauge in (0.0, 0.25, 0.5, 0.8, 1.0, 1.3):
        sat = iapws.IAPWS97(P=gauge + ATM_MPA, x=1)
        assert vapour_enthalpy_kj_kg(gauge) == pytest.approx(sat.h, rel=1e-3), gauge
        assert saturation_temp_c(gauge) == pytest.approx(sat.T - 273.15, abs=0.3), gauge
    # feedwater: c_p·t leaves out the pressure term (~1 kJ/kg at 1 MPa), 0.05 % of Δh
    for t in (20.0, 60.0, 80.0, 105.0):
        water = iapws.IAPWS97(P=1.0, T=t + 273.15)
        assert water_enthalpy_kj_kg(t) == pytest.approx(water.h, abs=1.5), t
