"""The configs generated from a campus are accepted by the parts that read them.

A renamed profile, a quantity a profile lost, or a site-model change in the rule
engine shows up here, not half-way through a demo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.campus import CampusSim, load_campus
from firmware_sim.campus.sitefile import gateway_configs, site_file
from firmware_sim.campus_live import served_quantities
from gateway.config import GatewayConfig, check_profiles
from rules.site import Site

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
            # every counter a rule reads is polled
            assert any(q.endswith(("_kwh", "_m3", "_gj", "_t")) for q in dev.quantities) or (
                "flue" in dev.name)
            polled += 1
    assert polled == len(sim.devices)
    site = Site.model_validate(site_file(campus))
    meters = {m.device for _, m in site.meters()}
    assert meters == {d for d in sim.devices if "flue" not in d}
    boilers = [bo for b in site.buildings for bo in b.boilers]
    assert {bo.id for bo in boilers} == set(sim.boilers)
    assert all(bo.fuel_meter in meters and bo.output_meter in meters for bo in boilers)
