"""Coalesce a device's registers into the fewest read transactions.

On a 9600-baud RS-485 line every transaction costs a request, the device's
turnaround and the 3.5-character silences — several milliseconds — while one
more register costs about 2.3 ms of payload, so merging neighbouring reads is
the biggest lever on cycle time. This is a pure, named strategy (as in
Telegraf's ``groupFieldsToRequests``) so it can be tested against worked
examples and measured in ``bench/gateway_coalesce.py``.

Strategy ``greedy`` (the only one, and optimal for these constraints): per
function, sort the fields by address and sweep once, extending the current
read while (a) the read stays within ``max_registers``, (b) the hole between
the read's end and the next field is at most ``gap`` registers and (c) that
hole does not touch a forbidden range. Each constraint only gets harder as a
read grows, so starting every read at the leftmost unread field and extending
it as far as allowed uses the fewest reads (the usual exchange argument).
The sweep is linear; the sort is O(n log n) in general and linear on the
already-ordered field lists that profiles are written as (Timsort).

Coils and discrete inputs (FC 1/2) are planned the same way in their own
address spaces, counted in bits: up to ``max_bits`` (≤ 2000) per read, and a
hole of ``16 × gap`` bits is filled (16 bits cost the two bytes one register
does). Forbidden ranges are register ranges and do not apply to bits.

Worked example (gap 2, max 10)::

    fields at 0(2w) 2(2w) 6(2w) 20(1w) 21(1w)
    → read 0..7  (hole 4..5 is 2 registers: filled)  covers 0, 2, 6
    → read 20..21                                      covers 20, 21
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from gateway.modbus_frames import (
    MAX_READ,
    MAX_READ_BITS,
    bit_bytes,
    rtu_wire_bytes,
    tcp_wire_bytes,
)

BIT_FUNCTIONS = frozenset({"coil", "discrete"})


class FieldLike(Protocol):
    @property
    def quantity(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def words(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Read:
    """One read transaction and the fields it answers."""

    function: str
    address: int
    count: int
    fields: tuple[FieldLike, ...] = field(default=())

    @property
    def end(self) -> int:
        return self.address + self.count

    def words_of(self, f: FieldLike, registers: Sequence[int]) -> list[int]:
        off = f.address - self.address
        return list(registers[off : off + f.words])


class PlanError(ValueError):
    """A field cannot be read at all under the given limits (e.g. inside a forbidden range)."""


def _touches(lo: int, hi: int, forbidden: Sequence[tuple[int, int]]) -> bool:
    """Does [lo, hi) (exclusive end) intersect any inclusive forbidden [a, b]?"""
    return any(lo <= b and a < hi for a, b in forbidden)


def plan(
    fields: Iterable[FieldLike],
    *,
    max_registers: int = MAX_READ,
    gap: int = 0,
    forbidden: Sequence[tuple[int, int]] = (),
    max_bits: int = MAX_READ_BITS,
) -> list[Read]:
    """Group ``fields`` into reads; see the module docstring for the strategy.

    Args:
        max_registers: the device's limit per register request (≤ 125).
        gap: the largest hole (in registers) worth reading and discarding to save a request.
        forbidden: inclusive register address ranges the device refuses to read (exception 2).
        max_bits: the device's limit per coil / discrete-input request (≤ 2000).

    Raises:
        PlanError: a field is wider than ``max_registers`` or lies in a forbidden range.
    """
    if not 1 <= max_registers <= MAX_READ:
        raise PlanError(f"max_registers {max_registers} outside 1..{MAX_READ}")
    if not 1 <= max_bits <= MAX_READ_BITS:
        raise PlanError(f"max_bits {max_bits} outside 1..{MAX_READ_BITS}")
    if gap < 0:
        raise PlanError(f"gap {gap} must be ≥ 0")
    by_function: dict[str, list[FieldLike]] = {}
    for f in fields:
        bits = f.function in BIT_FUNCTIONS
        if not bits and f.words > max_registers:
            raise PlanError(f"{f.quantity}: {f.words} registers exceed "
                            f"max_registers {max_registers}")
        if not bits and _touches(f.address, f.address + f.words, forbidden):
            raise PlanError(f"{f.quantity}: address {f.address} lies in a forbidden range")
        by_function.setdefault(f.function, []).append(f)

    reads: list[Read] = []
    for function in sorted(by_function):
        bits = function in BIT_FUNCTIONS
        reads.extend(_sweep(function, by_function[function],
                            limit=max_bits if bits else max_registers,
                            gap=16 * gap if bits else gap,
                            forbidden=() if bits else forbidden))
    return reads


def _sweep(function: str, fields: list[FieldLike], *, limit: int, gap: int,
           forbidden: Sequence[tuple[int, int]]) -> list[Read]:
    """The greedy sweep over one function's address space (see the module docstring)."""
    reads: list[Read] = []
    ordered = sorted(fields, key=lambda f: (f.address, f.words))
    start = end = -1
    members: list[FieldLike] = []
    for f in ordered:
        f_end = f.address + f.words
        if members:
            new_end = max(end, f_end)
            hole = f.address - end  # ≤ 0 when overlapping or adjacent
            if (
                new_end - start <= limit
                and hole <= gap
                and not (hole > 0 and _touches(end, f.address, forbidden))
            ):
                end = new_end
                members.append(f)
                continue
            reads.append(Read(function, start, end - start, tuple(members)))
        start, end, members = f.address, f_end, [f]
    if members:
        reads.append(Read(function, start, end - start, tuple(members)))
    return reads


def plan_naive(fields: Iterable[FieldLike]) -> list[Read]:
    """One read per field: the baseline the benchmark compares against."""
    return [Read(f.function, f.address, f.words, (f,)) for f in fields]


def breakeven_gap(baud: int, turnaround_s: float = 0.02) -> int:
    """The hole size (registers) at which reading it costs as much as one more transaction.

    On an RTU line a transaction costs its 8-byte request, 5 bytes of answer framing,
    two 3.5-character silences and the device's turnaround; a hole of ``g`` registers
    costs ``2 g`` characters. Filling holes up to this size minimises line time; with the
    default 20 ms turnaround (typical of DIN-rail meters) that is 19 registers at 9600 baud.
    """
    char = 11 / baud
    return max(0, min(MAX_READ, round((20 + turnaround_s / char) / 2)))


def wire_cost(reads: Sequence[Read], *, transport: str = "rtu") -> tuple[int, int]:
    """(transactions, bytes on the wire both directions) of one poll with ``reads``."""
    cost = rtu_wire_bytes if transport == "rtu" else tcp_wire_bytes
    total = 0
    for r in reads:
        # a bit read answers ceil(count / 8) bytes where a register read answers 2 × count
        req, resp = cost(r.count)
        if r.function in BIT_FUNCTIONS:
            resp += bit_bytes(r.count) - 2 * r.count
        total += req + resp
    return len(reads), total


# --------------------------------------------------------------------------- poll intervals


def interval_groups(quantities: Iterable[str], *, device: Mapping[str, float],
                    profile: Mapping[str, float], default: float) -> dict[float, list[str]]:
    """A device's quantities grouped by their effective poll interval, fastest first.

    The device config's own ``intervals_s`` wins, then the profile's (what the model's
    maker or the profile's author wants: a daily water index beside a 1 s demand), then
    ``default`` (the device's ``poll_interval_s``, else the gateway's ``poll.interval_s``).
    Each group is planned and scheduled on its own, so a 60 s register block is not read
    every second beside a 1 s one.
    """
    groups: dict[float, list[str]] = {}
    for q in quantities:
        iv = device.get(q, profile.get(q, default))
        groups.setdefault(float(iv), []).append(q)
    return dict(sorted(groups.items()))


#: a poll that starts later than this share of its interval after its deadline is "late"
LATE_SHARE = 0.1

K = TypeVar("K", bound=Hashable)


class PollSchedule(Generic[K]):
    """Which parts of one shared bus are due, each at its own poll interval.

    A key is one device (or one interval group of a device's quantities). Pure
    bookkeeping (the caller supplies the clock), so it is tested with compressed time.
    Earliest deadline first: a tick released at ``next_due`` must be read before the next
    one, ``next_due + interval``, and of the keys due, the one whose deadline comes first
    goes next. So a fast key released while slow ones wait goes before them (a block of
    slow meters due together does not make the fast one skip its ticks), and a fast one
    cannot starve a slow one either (the slow one's deadline stays put while the fast
    one's advances, so it soon is the earliest); a slow key's long read delays a fast one
    by at most that read. Equal deadlines go by release, then in the order the keys were
    given (the config's order). Every key
    is due at ``start``, and keys of one interval stay aligned, so the devices due together
    go into one batch (one disk commit, one message — not one per device); each next
    deadline advances by whole intervals from the previous one (no drift); ticks
    missed while the line was busy are skipped, never burst, and an overrun key waits
    behind those already waiting (round robin when the line is overloaded).

    Per key it keeps what the health message reports: polls, skipped ticks, late starts
    (more than ``LATE_SHARE`` of the interval after the deadline) and the worst lag, the
    line time polls took, and — where the caller measured it — the wire minimum of one
    poll (its bytes and silences at the line's baud, without the devices' turnaround).
    """

    def __init__(self, intervals: Mapping[K, float], start: float) -> None:
        if any(v <= 0 for v in intervals.values()):
            raise ValueError("poll intervals must be positive")
        self.intervals: dict[K, float] = dict(intervals)
        self.order = {k: i for i, k in enumerate(intervals)}
        self.next_due: dict[K, float] = dict.fromkeys(intervals, start)
        self.polls = dict.fromkeys(intervals, 0)
        self.skipped = dict.fromkeys(intervals, 0)
        self.late = dict.fromkeys(intervals, 0)
        self.lag_max_s = dict.fromkeys(intervals, 0.0)
        self.busy_s = dict.fromkeys(intervals, 0.0)
        self.last_s = dict.fromkeys(intervals, 0.0)
        #: wire minimum of one poll (s), the least seen over complete polls; None: unknown
        self.wire_s: dict[K, float | None] = dict.fromkeys(intervals, None)

    def deadline(self, name: K) -> float:
        """When ``name``'s current tick must have been read (its next tick's release)."""
        return self.next_due[name] + self.intervals[name]

    def due(self, now: float) -> list[K]:
        """Keys due at ``now``, earliest deadline first."""
        ready = [n for n, t in self.next_due.items() if t <= now]
        return sorted(ready, key=lambda n: (self.deadline(n), self.next_due[n], self.order[n]))

    def done(self, name: K, started: float, finished: float, *,
             wire_s: float | None = None) -> None:
        """Record one poll of ``name`` that held the line from ``started`` to ``finished``;
        ``wire_s``: the wire minimum of that poll, if it was complete and the line's speed
        is known."""
        iv = self.intervals[name]
        first = self.polls[name] == 0
        self.polls[name] += 1
        took = max(0.0, finished - started)
        self.busy_s[name] += took
        self.last_s[name] = took
        if not first:  # the start-up round, everyone due at once, is not "late"
            lag = max(0.0, started - self.next_due[name])
            self.lag_max_s[name] = max(self.lag_max_s[name], lag)
            if lag > LATE_SHARE * iv:
                self.late[name] += 1
        if wire_s is not None:
            known = self.wire_s[name]
            self.wire_s[name] = wire_s if known is None else min(known, wire_s)
        nxt = self.next_due[name] + iv
        if nxt <= finished:  # overran: skip the missed ticks, queue behind the waiting ones
            self.skipped[name] += int((finished - nxt) // iv) + 1
            nxt = finished
        self.next_due[name] = nxt

    def skip(self, name: K, now: float) -> None:
        """``name``'s tick passes unread (its device's turn ended before it): counted as
        skipped, next deadline as after a poll."""
        iv = self.intervals[name]
        self.skipped[name] += 1
        nxt = self.next_due[name] + iv
        if nxt <= now:
            self.skipped[name] += int((now - nxt) // iv) + 1
            nxt = now
        self.next_due[name] = nxt

    def next_wake(self) -> float:
        return min(self.next_due.values())

    def mean_poll_s(self, name: K) -> float:
        return self.busy_s[name] / self.polls[name] if self.polls[name] else 0.0

    def line_load(self) -> float:
        """Share of the line's time the polls, as measured, take (> 1: it cannot keep up)."""
        return sum(self.mean_poll_s(n) / iv for n, iv in self.intervals.items())

    def line_budget(self) -> float | None:
        """Share of the line's time the intervals ask for at the wire minimum: what no
        master could beat on this line (None until some poll's wire time is known)."""
        known = [(w, self.intervals[n]) for n, w in self.wire_s.items() if w is not None]
        return sum(w / iv for w, iv in known) if known else None

    def figures(self) -> dict[K, dict[str, float | int | None]]:
        """Per key: interval, polls, skipped and late ticks, worst lag, line time per poll
        (mean and last) and its wire minimum, in ms (health)."""
        out: dict[K, dict[str, float | int | None]] = {}
        for n, iv in self.intervals.items():
            w = self.wire_s[n]
            out[n] = {"interval_s": iv, "polls": self.polls[n], "skipped": self.skipped[n],
                      "late": self.late[n], "lag_max_ms": round(self.lag_max_s[n] * 1000, 1),
                      "mean_poll_ms": round(self.mean_poll_s(n) * 1000, 1),
                      "last_poll_ms": round(self.last_s[n] * 1000, 1),
                      "wire_min_ms": None if w is None else round(w * 1000, 1)}
        return out

    def by_interval(self) -> dict[float, dict[str, float | int | None]]:
        """The figures summed per interval: one round of that interval's polls (``cycle_ms``
        measured, ``wire_min_ms`` at the wire minimum), its share of the line (``load``,
        ``budget``), polls, skipped and late ticks, the worst lag."""
        out: dict[float, dict[str, float | int | None]] = {}
        for iv in sorted(set(self.intervals.values())):
            keys = [n for n, v in self.intervals.items() if v == iv]
            cycle = sum(self.mean_poll_s(n) for n in keys)
            wires = [self.wire_s[n] for n in keys]
            wire = None if any(w is None for w in wires) else sum(w or 0.0 for w in wires)
            out[iv] = {
                "interval_s": iv, "parts": len(keys),
                "polls": sum(self.polls[n] for n in keys),
                "skipped": sum(self.skipped[n] for n in keys),
                "late": sum(self.late[n] for n in keys),
                "lag_max_ms": round(max(self.lag_max_s[n] for n in keys) * 1000, 1),
                "cycle_ms": round(cycle * 1000, 1),
                "wire_min_ms": None if wire is None else round(wire * 1000, 1),
                "load": round(cycle / iv, 4),
                "budget": None if wire is None else round(wire / iv, 4),
            }
        return out
