"""From one campus file to the files the real parts read: gateway configs and a rules site.

The campus YAML is the single description of the simulated site. The gateways
that poll it and the rule engine that judges it get *generated* configs, so a
device renamed in the campus cannot silently drift out of the gateway config
or the quota's building. Pure: dicts in, dicts out (the caller writes YAML).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware_sim.campus.building import CATEGORY
from firmware_sim.campus.config import CampusModel, Meter
from firmware_sim.campus.sim import ENERGY_TYPE

# What the rules' site model calls our building types.
RULES_TYPE = {"office": "office", "hospital": "hospital", "school": "school", "mall": "retail"}
_TOTAL = {"mains", "water", "gas"}  # one per building: that meter is the building's total


def _meter_rows(model: CampusModel) -> list[tuple[str, str, Meter]]:
    """(gateway, building, meter) for every device the gateways poll."""
    rows = [(b.gateway, b.id, m) for b in model.buildings for m in b.meters]
    if model.boiler_house:
        h = model.boiler_house
        rows += [(h.gateway, h.building, m) for bl in h.boilers for m in bl.meters]
    return rows


def gateway_configs(model: CampusModel, *, transports: dict[str, dict[str, Any]],
                    mqtt: dict[str, dict[str, Any]], state_root: Path,
                    poll_interval_s: float = 5.0, timeout_s: float = 0.5,
                    quantities: dict[str, list[str]] | None = None) -> dict[str, dict[str, Any]]:
    """One gateway config (as a dict) per campus gateway.

    Args:
        transports: device → the ``transport`` section that reaches its endpoint.
        quantities: device → what to poll (default: all of its profile).
        mqtt: gateway → its ``mqtt`` section (host/port may point at an uplink proxy).
        state_root: each gateway gets ``state_root/<gateway>`` for seq and its disk queue.
    """
    out: dict[str, dict[str, Any]] = {}
    rows = _meter_rows(model)
    if model.weather:
        w = model.weather
        rows.append((w.gateway, w.building, Meter(device=w.device, measures="weather",
                                                  profile=w.profile, unit_id=w.unit_id)))
    for gw, building, m in rows:
        cfg = out.setdefault(gw, {
            "site": model.site,
            "gateway": gw,
            "state_dir": str(state_root / gw),
            "mqtt": {**mqtt[gw], "client_id": f"enmon-{gw}"},
            "poll": {"interval_s": poll_interval_s, "health_interval_s": 10.0},
            "queue": {"max_mb": 256},
            "devices": [],
        })
        dev: dict[str, Any] = {
            "name": m.device,
            "profile": m.profile,
            "unit_id": m.unit_id,
            "transport": {**transports[m.device], "timeout_s": timeout_s, "retries": 0,
                          "offline_after": 2},
            "building": building,
            "category": CATEGORY.get(m.measures, ""),
            "energy_type": ENERGY_TYPE[m.measures],
        }
        if m.address is not None:
            dev["address"] = m.address
        if quantities and m.device in quantities:
            dev["quantities"] = quantities[m.device]
        cfg["devices"].append(dev)
    return out


def site_file(model: CampusModel, *, poll_interval_s: float | None = None) -> dict[str, Any]:
    """The rule engine's site file for this campus (``energy.site.Site`` schema).

    Quotas, budgets, occupants and boiler rating/fuel come from each building's
    and boiler's ``rules:`` block; meters, their tags and the boiler ↔ meter
    wiring come from the campus itself. ``poll_interval_s`` is the reading
    interval the completeness check expects of every meter (its default if None).
    """
    extra: dict[str, Any] = {} if poll_interval_s is None else {"poll_interval_s": poll_interval_s}
    buildings: list[dict[str, Any]] = []
    for b in model.buildings:
        entry: dict[str, Any] = {"id": b.id, "name": b.name, "type": RULES_TYPE[b.type],
                                 "floor_area_m2": b.floor_area_m2}
        entry.update(b.rules)
        entry["meters"] = [
            {"id": m.device, "gateway": b.gateway, "device": m.device,
             "energy_type": ENERGY_TYPE[m.measures], "category": CATEGORY[m.measures],
             "building_total": m.measures in _TOTAL, **extra,
             **({"rollover_at": m.rollover_at} if m.rollover_at is not None else {})}
            for m in b.meters
        ]
        buildings.append(entry)
    if model.boiler_house:
        h = model.boiler_house
        meters: list[dict[str, Any]] = []
        boilers: list[dict[str, Any]] = []
        for bl in h.boilers:
            by_measure = {m.measures: m.device for m in bl.meters}
            for m in bl.meters:
                if m.measures == "flue":
                    continue  # an analyser has no counter; the rules read it via `instruments`
                meters.append({"id": m.device, "gateway": h.gateway, "device": m.device,
                               "energy_type": ENERGY_TYPE[m.measures],
                               "category": CATEGORY.get(m.measures, ""),
                               "building_total": m.measures == "gas", **extra})
            boiler: dict[str, Any] = {
                "id": bl.id, "kind": bl.kind, "fuel": "natural_gas",
                "ncv_mj_per_unit": model.gas_ncv_mj_m3,
                "fuel_meter": by_measure["gas"],
                "output_meter": by_measure["steam" if bl.kind == "steam" else "heat"],
            }
            if bl.kind == "steam":
                boiler["steam_gauge_mpa"] = bl.params.get("pressure_mpa_g", 0.8)
                boiler["feedwater_temp_c"] = bl.params.get("feedwater_c", 80.0)
            boiler.update(bl.rules)
            boilers.append(boiler)
        buildings.append({"id": h.building, "name": "Boiler house", "type": "other",
                          "floor_area_m2": h.floor_area_m2, "meters": meters,
                          "boilers": boilers})
    return {"site": model.site, "name": model.name, "timezone": _tz_name(model.timezone_hours),
            "buildings": buildings}


def flue_devices(model: CampusModel) -> dict[str, str]:
    """boiler id → its flue analyser device (for rules that read the indirect method)."""
    if not model.boiler_house:
        return {}
    return {bl.id: m.device for bl in model.boiler_house.boilers for m in bl.meters
            if m.measures == "flue"}


def _tz_name(hours: float) -> str:
    if hours == 8:
        return "Asia/Shanghai"
    if hours == int(hours):
        # POSIX Etc zones have the sign inverted
        return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(int(hours))}"
    return "UTC"
