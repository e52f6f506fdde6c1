"""Master-vs-submeter balance (分项计量): do the sub-item meters add up to the main meter?

A building's main electricity meter (``building_total``) and its sub-item meters (照明插座
01A00, 空调 01B00, 动力 01C00, 特殊 01D00 and their levels below, 住建部 2008 分项能耗数据采集
技术导则, see ``shared/reference/standards.md``) measure the same energy twice. Per site-day
the sum of the sub-items should match the main meter up to losses and meter accuracy; a
larger deviation means a meter is wrong, missing from the site file, wired to another
circuit or counted twice — the sub-item split in every report is then wrong too. MyEMS
reports the same figure (``myems-api/reports/metersubmetersbalance.py``: difference =
master − Σ submeters, percentage = difference ÷ master) without a threshold.

No standard threshold was found (the NDRC online-monitoring data-quality rules quoted by
vendors ask daily and monthly reports to agree within 5 %, a different comparison, mark U),
so the allowed share is configuration (``quality.balance_max_share``, default 5 %, mark I).

Pure: the rule engine reads ``energy_daily`` and calls :func:`evaluate_days`; an inspector's
report can call the same function on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from energy.site import SUBITEM, Meter

BalanceState = Literal["ok", "deviation"]


# The rule engine's defaults (rules ``quality.balance_*``), used where no rules file is read
# (the inspector's report): a deviation above 5 % of the main meter, days under 10 kWh
# on both sides not judged. Configuration [I], not a cited standard (see rules/README.md).
DEFAULT_MAX_SHARE = 0.05
DEFAULT_MIN_KWH = 10.0


@dataclass(frozen=True, slots=True)
class Topology:
    """Which meters are compared: the building's mains and its top-most sub-item meters."""

    mains: tuple[str, ...]
    parts: tuple[str, ...]


def parent_codes(code: str) -> list[str]:
    """The sub-item codes above ``code``: 01A12 → [01A10, 01A00]; 01A10 → [01A00]; 01A00 → []."""
    if not SUBITEM.match(code) or code[2] == "0":
        return []
    out = []
    if code[4] != "0":
        out.append(code[:4] + "0")
    if code[3] != "0":
        out.append(code[:3] + "00")
    return out


def topology(meters: Iterable[Meter], energy_type: str = "electricity") -> Topology:
    """The mains (``building_total``) and the sub-item meters whose sum should equal them.

    A sub-item meter counts only when no meter of a code above it is in the building
    (01A10 under a metered 01A00 is already in 01A00's figure: counting both would add it
    twice). Meters without a sub-item letter (01000, or no category) that are not building
    totals have no place in the split and are left out.
    """
    ms = [m for m in meters if m.energy_type == energy_type]
    mains = tuple(m.id for m in ms if m.building_total)
    subs = [m for m in ms if not m.building_total and SUBITEM.match(m.category)
            and m.category[2] != "0"]
    codes = {m.category for m in subs}
    parts = tuple(m.id for m in subs if not any(p in codes for p in parent_codes(m.category)))
    return Topology(mains, parts)


@dataclass(frozen=True, slots=True)
class Balance:
    """One site-day: the main meter(s), the sum of the sub-items and their deviation."""

    day: int            # local midnight, epoch ms
    main: float
    parts: float
    deviation: float    # (Σ sub-items − main) ÷ main; ±1.0 when the main meter read 0
    state: BalanceState


def evaluate(day: int, main: float, parts: float, *, max_share: float, min_amount: float = 0.0
             ) -> Balance | None:
    """Compare one day's sum of sub-items with the main meter.

    Args:
        max_share: a deviation of more than this share of the main meter's figure is one.
        min_amount: below this on both sides (an idle day) there is too little to judge
            (2 kWh against 2.3 kWh is 15 % and means nothing): ``None``.

    A main meter that read nothing while the sub-items did is a deviation of 100 %.
    """
    if max(main, parts) < min_amount or max(main, parts) <= 0:
        return None
    dev = (parts - main) / main if main > 0 else 1.0
    return Balance(day, main, parts, dev, "deviation" if abs(dev) > max_share else "ok")


def evaluate_days(daily: Mapping[str, Mapping[int, float]], topo: Topology, *,
                  max_share: float, min_amount: float = 0.0) -> list[Balance]:
    """Every site-day on which *all* the compared meters have a figure, in day order.

    ``daily`` maps meter id → {local midnight ms: amount} (the ``energy_daily`` rows). A
    day on which one of them has no figure is skipped, not judged: a meter that sent
    nothing is the completeness and offline checks' business, and its missing day would
    otherwise look like a deviation of its whole share.
    """
    ids: Sequence[str] = (*topo.mains, *topo.parts)
    if not topo.mains or not topo.parts:
        return []
    days = set.intersection(*(set(daily.get(m, {})) for m in ids))
    out = []
    for day in sorted(days):
        main = sum(daily[m][day] for m in topo.mains)
        parts = sum(daily[m][day] for m in topo.parts)
        b = evaluate(day, main, parts, max_share=max_share, min_amount=min_amount)
        if b is not None:
            out.append(b)
    return out
