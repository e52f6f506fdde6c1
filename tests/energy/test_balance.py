"""Master-vs-submeter balance: which meters are compared and the worked example."""

from __future__ import annotations

import pytest

from energy.balance import evaluate, evaluate_days, parent_codes, topology
from energy.site import Meter

D = 86_400_000


def meter(mid: str, category: str, total: bool = False, etype: str = "electricity") -> Meter:
    return Meter(id=mid, gateway="gw-01", device=mid, energy_type=etype, category=category,
                 building_total=total)


METERS = [meter("main", "01000", True), meter("light", "01A00"), meter("office-light", "01A10"),
          meter("hvac", "01B00"), meter("lifts", "01C00"), meter("water", "02000", True, "water"),
          meter("spare", "")]


def test_parent_codes() -> None:
    assert parent_codes("01A12") == ["01A10", "01A00"]
    assert parent_codes("01A10") == ["01A00"]
    assert parent_codes("01A02") == ["01A00"]
    assert parent_codes("01A00") == [] and parent_codes("01000") == []


def test_topology_counts_each_sub_item_once() -> None:
    topo = topology(METERS)
    assert topo.mains == ("main",)
    # office-light (01A10) is inside light (01A00); water and the unclassified meter are out
    assert topo.parts == ("light", "hvac", "lifts")
    # without the 01A00 meter its level-2 meter takes its place
    assert topology([m for m in METERS if m.id != "light"]).parts == ("office-light", "hvac",
                                                                       "lifts")


def test_balance_worked_example() -> None:
    """Main 1 000 kWh a day; lighting 400 + HVAC 450 + power 100 = 950 kWh = −5.0 %: within
    the default 5 % (a deviation must be *above* it). On day 3 the HVAC meter reads 560:
    1 060 kWh = +6.0 %, a deviation. Day 4 has no lifts figure: skipped, not judged. Day 5
    is a holiday: 3 kWh against 4 kWh is below the 10 kWh minimum."""
    daily = {"main": {0: 1000.0, D: 1000.0, 2 * D: 1000.0, 3 * D: 1000.0, 4 * D: 3.0},
             "light": {0: 400.0, D: 400.0, 2 * D: 400.0, 3 * D: 400.0, 4 * D: 2.0},
             "office-light": {0: 300.0, D: 300.0, 2 * D: 300.0, 3 * D: 300.0, 4 * D: 1.0},
             "hvac": {0: 450.0, D: 450.0, 2 * D: 560.0, 3 * D: 450.0, 4 * D: 1.0},
             "lifts": {0: 100.0, D: 100.0, 2 * D: 100.0, 4 * D: 1.0}}
    res = evaluate_days(daily, topology(METERS), max_share=0.05, min_amount=10.0)
    assert [b.day for b in res] == [0, D, 2 * D]
    assert [b.state for b in res] == ["ok", "ok", "deviation"]
    assert res[0].deviation == pytest.approx(-0.05) and res[0].parts == 950.0
    assert res[2].deviation == pytest.approx(0.06) and res[2].parts == 1060.0
    # a dead main meter while the sub-items count is a 100 % deviation
    dead = evaluate(0, 0.0, 500.0, max_share=0.05, min_amount=10.0)
    assert dead is not None and dead.state == "deviation" and dead.deviation == 1.0
    # a building without sub-item meters (or without a main) is not compared at all
    assert evaluate_days(daily, topology(METERS[:1]), max_share=0.05) == []
