"""What was stored, and which readings it touched: the bookkeeping that drives roll-ups.

Roll-ups (``energy_hourly`` → ``energy_daily`` → ``energy_monthly``) must be recomputed for
every bucket that newly stored readings touch — late, replayed after a 10 h outage, or
re-sent — however old the readings are. InfluxDB cannot say *when* a point arrived, so the
writer says it: with every write of readings it adds one ``energy_touched`` point per site,
stamped with the time of the write attempt, whose ``ranges`` field lists, per device, the
first and last reading time written::

    energy_touched,site=campus,worker=ingest-1
        ranges="gw-01/main/1763726400000/1763730000000;…",devices=2i 1763730012345

The rule engine reads the markers stored since its last pass (a time range, so the work is
proportional to what arrived, not to history) and recomputes exactly the hours those
readings affect. The markers are in the database, so the bookkeeping survives a restart of
every process, and any number of writers (N ingest workers, the demo loader, a manual
recompute) can add them: points of different writers differ by the ``worker`` tag, and one
writer's timestamps strictly increase, so no marker overwrites another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping

from enmon.lineproto import line

MEASUREMENT = "energy_touched"
STATE = "rollup_state"  # the rule engine's "recomputed through" per site
# every (gateway, device, counter) a meter's roll-ups were ever read from: one point each
SOURCES = "rollup_sources"

Key = tuple[str, str]  # (gateway, device)
Span = tuple[int, int]  # first and last reading time written, epoch ms


def widen(into: MutableMapping[Key, Span], key: Key, first: int, last: int) -> None:
    """Grow ``into[key]`` to cover [first, last]."""
    old = into.get(key)
    into[key] = (first, last) if old is None else (min(old[0], first), max(old[1], last))


def merge(into: MutableMapping[Key, Span], other: Mapping[Key, Span]) -> None:
    for k, (a, b) in other.items():
        widen(into, k, a, b)


def encode_ranges(ranges: Mapping[Key, Span]) -> str:
    """``gw/device/first/last;…`` — ids match the wire contract's ``[A-Za-z0-9_-]``, so the
    separators cannot occur inside them."""
    return ";".join(f"{g}/{d}/{a}/{b}" for (g, d), (a, b) in sorted(ranges.items()))


def decode_ranges(text: str) -> dict[Key, Span]:
    """The inverse of :func:`encode_ranges`; a malformed part is skipped, not fatal."""
    out: dict[Key, Span] = {}
    for part in text.split(";"):
        bits = part.split("/")
        if len(bits) != 4:
            continue
        try:
            widen(out, (bits[0], bits[1]), int(bits[2]), int(bits[3]))
        except ValueError:
            continue
    return out


def marker_line(site: str, worker: str, ranges: Mapping[Key, Span], ts_ms: int) -> str:
    """The ``energy_touched`` point for one write of one site's readings."""
    return line(MEASUREMENT, {"site": site, "worker": worker},
                {"ranges": encode_ranges(ranges), "devices": len(ranges)}, ts_ms)


class Stamper:
    """Strictly increasing millisecond timestamps for one writer's markers."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self, now_ms: int) -> int:
        self._last = max(now_ms, self._last + 1)
        return self._last


def marker_lines(touched: Mapping[str, Mapping[Key, Span]], worker: str,
                 stamp: Stamper, now_ms: int) -> list[str]:
    """One marker per site, stamped now (call it for every write attempt, so a write that
    succeeds only after an outage is stamped when it is stored, not when it was built)."""
    return [marker_line(site, worker, ranges, stamp(now_ms))
            for site, ranges in sorted(touched.items()) if ranges]


def spans_of(samples: Iterable[tuple[str, int]]) -> dict[str, Span]:
    """(device, ts) pairs → device → (first, last)."""
    out: dict[str, Span] = {}
    for dev, ts in samples:
        old = out.get(dev)
        out[dev] = (ts, ts) if old is None else (min(old[0], ts), max(old[1], ts))
    return out
