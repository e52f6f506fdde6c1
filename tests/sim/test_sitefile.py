"""The configs generated from a campus are accepted by the parts that read them.

A renamed profile, a quantity a profile lost, or a site-model change in the rule
engine shows up here, not half-way through a demo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from energy.site import Site
from firmware_sim.campus import CampusSim, load_campus
from firmware_sim.campus.sitefile import gateway_configs, site_file
from firmware_sim.campus_live import served_quantities
from gateway.config import GatewayConfig, check_profiles

CAMPUSES = [None, Path(__file__).parent / "e2e-campus.yaml"]


@pytest.mark.parametrize("path", CAMPUSES, ids=["demo", "e2e"])
def test_generated_gateway_configs_and_site_file_validate(path: Path | None,
                                                          tmp_path: Path) -> None:
    campus = load_campus(path)
    sim = CampusSim(campus, start=1_790_000_000.0)
    served = served_quantities(sim)
    transports = {d: {"type": "rtu_over_tcp" if info.bus or "ascii" in info.profile else "tcp",
                      "host": "127.0.0.1", "port": 1000 + i}
                  for i, (d, info) in enumerate(sim.devices.items())}
    # devices on one bus share one serial server
    for d, info in sim.devices.items():
        if info.bus:
            first = next(x for x, i in sim.devices.items() if i.bus == info.bus)
            transports[d] = transports[first]
    cfgs = gateway_configs(campus, transports=transports,
                           mqtt={g: {"host": "127.0.0.1", "port": 1883} for g in sim.gateways()},
                           state_root=tmp_path, quantities=served)
    assert set(cfgs) == set(sim.gateways())
    polled = 0
    for gw, raw in cfgs.items():
        cfg = GatewayConfig.model_validate(raw)
        profiles = check_profiles(cfg, f"{gw}.yaml")
        for dev, prof in zip(cfg.devices, profiles, strict=True):
            assert dev.quantities, dev.name
            assert set(dev.quantities) <= set(prof.quantities)
            # every counter a rule reads is polled (instruments have none)
            assert any(q.endswith(("_kwh", "_m3", "_gj", "_t")) for q in dev.quantities) or (
                sim.devices[dev.name].measures in ("flue", "weather"))
            polled += 1
    assert polled == len(sim.devices)
    site = Site.model_validate(site_file(campus))
    meters = {m.device for _, m in site.meters()}
    assert meters == {d for d, i in sim.devices.items() if i.measures not in ("flue", "weather")}
    boilers = [bo for b in site.buildings for bo in b.boilers]
    assert {bo.id for bo in boilers} == set(sim.boilers)
    assert all(bo.fuel_meter in meters and bo.output_meter in meters for bo in boilers)


def test_demo_campus_serves_water_meters_and_outdoor_air() -> None:
    """Issue 8: water meters and the weather station are real devices of the demo campus.

    Each water meter is polled for its volume counter and flow, is its building's water
    total in the rules' site file (02000), and the outdoor-air sensor is polled too.
    """
    campus = load_campus()
    sim = CampusSim(campus, start=1_790_000_000.0)
    served = served_quantities(sim)
    water = [d for d, i in sim.devices.items() if i.measures == "water"]
    assert {sim.devices[d].owner for d in water} >= {"admin", "hospital", "school"}
    for d in water:
        assert served[d] == ["water_flow_m3_h", "water_volume_m3"], d
    assert any(sim.devices[d].bus for d in water)  # one shares an RS-485 line (Modbus RTU)
    site = Site.model_validate(site_file(campus))
    totals = {m.device: (b.id, m.category, m.counter) for b in site.buildings
              for m in b.meters if m.energy_type == "water" and m.building_total}
    assert totals == {d: (sim.devices[d].owner, "02000", "water_volume_m3") for d in water}
    assert campus.weather is not None
    assert served[campus.weather.device] == ["outdoor_temp_c", "relative_humidity_pct"]
