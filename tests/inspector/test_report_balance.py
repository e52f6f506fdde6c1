"""The report shows the sub-meter balance (分项计量平衡) the rule engine alerts on."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from energy.site import Site
from inspector import render
from inspector.report import build_report, period_of

SH = ZoneInfo("Asia/Shanghai")
SITE = Site.model_validate({"site": "s", "buildings": [{"id": "b", "floor_area_m2": 1000,
    "meters": [
        {"id": "main", "gateway": "g", "device": "main", "energy_type": "electricity",
         "category": "01000", "building_total": True},
        {"id": "light", "gateway": "g", "device": "light", "energy_type": "electricity",
         "category": "01A00"},
        {"id": "hvac", "gateway": "g", "device": "hvac", "energy_type": "electricity",
         "category": "01B00"}]}]})


def counters(days: int, main: float, light: float, hvac: list[float]
             ) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Daily readings at local midnight: constant per day, hvac given per day."""
    out: dict[tuple[str, str], list[tuple[int, float]]] = {("g", d): [] for d in
                                                            ("main", "light", "hvac")}
    v = {"main": 0.0, "light": 0.0, "hvac": 0.0}
    for i in range(days + 1):
        ts = int(dt.datetime(2026, 10, 1 + i, tzinfo=SH).timestamp() * 1000)
        for d in v:
            out[("g", d)].append((ts, v[d]))
        if i < days:
            v["main"] += main
            v["light"] += light
            v["hvac"] += hvac[i]
    return out


def test_the_report_counts_the_days_a_building_does_not_balance() -> None:
    # main 1000 kWh a day; lighting 400; HVAC 550 (−5.0 %, within), then 660 (+6.0 %)
    period = period_of("2026-10", "Asia/Shanghai")
    rep = build_report(site=SITE, period=period,
                       counters=counters(3, 1000.0, 400.0, [550.0, 660.0, 600.0]))
    b = rep.buildings[0]
    assert [round(x.deviation, 3) for x in b.balance] == [-0.05, 0.06, 0.0]
    assert [x.state for x in b.balance] == ["ok", "deviation", "ok"]
    bal = render.report_dict(rep)["buildings"][0]["balance"]
    assert bal["days"] == 3 and bal["deviations"] == 1
    assert round(bal["worst"]["deviation"], 3) == 0.06
    html = render.render_html(rep)
    assert "分项计量平衡" in html and "其中 1 天偏差超过" in html  # zh-CN, the default
