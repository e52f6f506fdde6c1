"""Manual readings and corrections: the rules a hand-entered figure must keep.

Some energy is never read by a gateway — coal weighed at the weighbridge, a product's
output from the shift log, the final index of a meter taken off the wall before its last
poll — and some stored readings are wrong (a meter's display misread, a register written
by a technician). Both come in by hand and both change figures an inspector files, so
both are **a layer over the readings, never a rewrite of history**:

- a *manual reading* is an ordinary reading of a meter's quantity at a time, marked
  ``manual`` (the ``flag_<quantity>`` of the stored point), with who entered it, when, from
  where (CLI, API, spreadsheet) and why;
- a *correction* replaces the value of one stored reading, marked ``corrected``; the value
  it replaced, who, when and why are kept in the audit trail, so the original stays
  queryable and every later figure can be traced back to it. The latest correction of a
  reading wins.

Every figure (consumption, kgce, CO2, cost, quota) is then computed from the readings as
they now stand, by the same functions as for any reading (:mod:`energy.figures`), and the
roll-ups are recomputed for every bucket the entry touches — the report, the rule engine,
the console and Grafana agree after a correction as they do after late data.

This module is pure: it checks an entry against the readings around it and says what is
wrong in words a data clerk can act on. Messages are msgids with named placeholders,
translated where they are shown (``%(name)s`` placeholders, as in the catalogs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from enmon import quantities

Kind = Literal["reading", "correction"]
Source = Literal["cli", "api", "xlsx", "import"]
FLAG = {"reading": "manual", "correction": "corrected"}
#: the audit trail of entries (never rewritten: what stands is the latest per reading)
MEASUREMENT = "manual_entry"

MAX_REASON = 500
MAX_AUTHOR = 64
# how far in the future a hand-entered reading may lie (the clerk's watch is not the server's)
FUTURE_SLACK_MS = 5 * 60_000


class ManualError(ValueError):
    """An entry refused, with a msgid and its parameters (translated where shown)."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params


@dataclass(frozen=True, slots=True)
class Entry:
    """One manual reading or correction, as entered."""

    kind: Kind
    site: str
    gateway: str
    device: str
    quantity: str
    ts: int                     # the reading's time, epoch ms
    value: float
    author: str
    reason: str
    source: str = "cli"
    entered_at: int = 0         # epoch ms, set when stored
    original: float | None = None  # a correction: the value it replaced

    @property
    def flag(self) -> str:
        return FLAG[self.kind]


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The stored readings of the same counter just before and just after ``ts``, and the
    one at ``ts`` itself (what a correction replaces)."""

    before: tuple[int, float] | None = None
    at: float | None = None
    after: tuple[int, float] | None = None
    at_flag: str | None = None


@dataclass(slots=True)
class Checked:
    entry: Entry
    warnings: list[tuple[str, dict[str, object]]] = field(default_factory=list)


def check(entry: Entry, near: Neighbours, *, now_ms: int, allow_decrease: bool = False,
          swaps: Sequence[int] = ()) -> Checked:
    """Refuse what cannot be right, warn about what looks odd.

    Refused: an unknown quantity, a non-finite or negative counter value, a time in the
    future, no author, a correction without a reason or of a reading that is not stored,
    a manual reading where one is already stored (that is a correction), and — for a
    counter — a value below the reading before it or above the reading after it, which
    would make energy run backwards (``allow_decrease`` for a meter swap or reset, which
    the site file records as a replacement: a reading on the other side of one of ``swaps``
    is another meter's and is not compared).
    """
    e = entry
    if e.quantity not in quantities.QUANTITIES:
        raise ManualError("unknown quantity %(quantity)s", quantity=e.quantity)
    if not (e.value - e.value == 0.0):
        raise ManualError("value %(value)s is not a number", value=e.value)
    if not e.author.strip():
        raise ManualError("say who enters it")
    if len(e.author) > MAX_AUTHOR or len(e.reason) > MAX_REASON:
        raise ManualError("author at most %(a)s characters, reason at most %(r)s",
                          a=MAX_AUTHOR, r=MAX_REASON)
    if e.ts > now_ms + FUTURE_SLACK_MS:
        raise ManualError("the reading's time lies in the future")
    counter = quantities.is_counter(e.quantity)
    if counter and e.value < 0:
        raise ManualError("a counter reading cannot be negative (%(value)s)", value=e.value)
    if e.kind == "correction":
        if not e.reason.strip():
            raise ManualError("a correction needs a reason")
        if near.at is None:
            raise ManualError("no stored reading of %(quantity)s at that time to correct; "
                              "enter it as a manual reading", quantity=e.quantity)
    elif near.at is not None:
        raise ManualError("a reading of %(quantity)s is already stored at that time "
                          "(%(value)s); correct it instead", quantity=e.quantity, value=near.at)
    out = Checked(e)
    before = near.before if near.before is None or not any(
        near.before[0] < t <= e.ts for t in swaps) else None
    after = near.after if near.after is None or not any(
        e.ts < t <= near.after[0] for t in swaps) else None
    near = Neighbours(before, near.at, after, near.at_flag)
    if counter and not allow_decrease:
        if near.before is not None and e.value < near.before[1]:
            raise ManualError("%(value)s is below the reading before it (%(before)s): "
                              "the counter would run backwards", value=e.value,
                              before=near.before[1])
        if near.after is not None and e.value > near.after[1]:
            raise ManualError("%(value)s is above the reading after it (%(after)s): "
                              "the counter would run backwards", value=e.value, after=near.after[1])
    if e.kind == "correction" and near.at is not None and near.at == e.value:
        out.warnings.append(("the correction equals the stored value %(value)s",
                             {"value": e.value}))
    return out


def fields_of(entry: Entry) -> dict[str, float | str]:
    """The fields the entry sets on the ``meter`` point of its reading."""
    return {entry.quantity: float(entry.value), f"flag_{entry.quantity}": entry.flag}


def latest(entries: list[Mapping[str, object]]) -> dict[tuple[str, str, str, int],
                                                        Mapping[str, object]]:
    """The latest entry per (gateway, device, quantity, reading time): what stands."""
    out: dict[tuple[str, str, str, int], Mapping[str, object]] = {}
    for r in sorted(entries, key=lambda r: int(str(r.get("entered_at") or 0))):
        k = (str(r.get("gateway", "")), str(r.get("device", "")), str(r.get("quantity", "")),
             int(str(r.get("reading_ts") or 0)))
        out[k] = r
    return out
