"""The coalescing planner against worked examples and a brute-force optimum."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import library
from gateway.planner import PlanError, plan, plan_naive, wire_cost
from gateway.profile import ModbusProfile


@dataclass(frozen=True)
class F:
    quantity: str
    address: int
    words: int
    function: str = "holding"


def spans(reads: list) -> list[tuple[str, int, int]]:
    return [(r.function, r.address, r.count) for r in reads]


def test_worked_example_from_docstring() -> None:
    fields = [F("a", 0, 2), F("b", 2, 2), F("c", 6, 2), F("d", 20, 1), F("e", 21, 1)]
    assert spans(plan(fields, gap=2, max_registers=10)) == [("holding", 0, 8), ("holding", 20, 2)]
    # without gap fill the 2-register hole splits the first read
    assert spans(plan(fields, gap=0, max_registers=10)) == [
        ("holding", 0, 4), ("holding", 6, 2), ("holding", 20, 2)]


def test_max_registers_splits() -> None:
    fields = [F(f"q{i}", 2 * i, 2) for i in range(100)]  # 200 contiguous registers
    reads = plan(fields, max_registers=125)
    assert spans(reads) == [("holding", 0, 124), ("holding", 124, 76)]
    assert sum(len(r.fields) for r in reads) == 100


def test_forbidden_hole_is_never_read() -> None:
    fields = [F("a", 0, 2), F("b", 4, 2)]
    assert spans(plan(fields, gap=5)) == [("holding", 0, 6)]
    assert spans(plan(fields, gap=5, forbidden=[(3, 3)])) == [("holding", 0, 2), ("holding", 4, 2)]
    with pytest.raises(PlanError, match="forbidden"):
        plan([F("a", 10, 2)], forbidden=[(11, 20)])


def test_functions_never_mix_and_overlaps_share_a_read() -> None:
    fields = [F("a", 0, 2, "input"), F("b", 0, 2, "holding"), F("c", 1, 1, "input")]
    assert spans(plan(fields)) == [("holding", 0, 2), ("input", 0, 2)]


def test_each_field_decodes_from_its_read() -> None:
    fields = [F("a", 10, 2), F("b", 13, 1)]
    (read,) = plan(fields, gap=1)
    regs = [100, 101, 102, 103]
    assert read.words_of(fields[0], regs) == [100, 101]
    assert read.words_of(fields[1], regs) == [103]


def _optimum(fields: list[F], max_regs: int, gap: int) -> int:
    """Fewest reads by exhaustive search over split points (small inputs only)."""
    fs = sorted(fields, key=lambda f: f.address)
    best = len(fs)
    for cuts in itertools.product([0, 1], repeat=len(fs) - 1):
        groups: list[list[F]] = [[fs[0]]]
        for f, cut in zip(fs[1:], cuts, strict=True):
            if cut:
                groups.append([f])
            else:
                groups[-1].append(f)
        ok = True
        for g in groups:
            start = g[0].address
            end = start + g[0].words
            for f in g[1:]:
                if f.address - end > gap:
                    ok = False
                end = max(end, f.address + f.words)
            ok = ok and end - start <= max_regs
        if ok:
            best = min(best, len(groups))
    return best


@settings(max_examples=150, deadline=None)
@given(
    addrs=st.lists(st.tuples(st.integers(0, 60), st.sampled_from([1, 2, 4])),
                   min_size=1, max_size=9, unique_by=lambda t: t[0]),
    max_regs=st.integers(4, 20),
    gap=st.integers(0, 6),
)
def test_greedy_is_optimal(addrs: list[tuple[int, int]], max_regs: int, gap: int) -> None:
    fields = [F(f"q{a}", a, w) for a, w in addrs]
    reads = plan(fields, max_registers=max_regs, gap=gap)
    assert len(reads) == _optimum(fields, max_regs, gap)
    for r in reads:  # every field inside its read, reads within limits
        assert r.count <= max_regs
        for f in r.fields:
            assert r.address <= f.address and f.address + f.words <= r.end


def test_planning_time_is_linear() -> None:
    def timed(n: int) -> float:
        fields = [F(f"q{i}", i * 3 % 65000, 2) for i in range(n)]
        t0 = time.perf_counter()
        plan(fields, gap=3)
        return time.perf_counter() - t0

    timed(1000)  # warm up
    small, big = min(timed(5000) for _ in range(3)), min(timed(50000) for _ in range(3))
    # 10x the fields must cost well under 10x·log factor of a quadratic planner (100x)
    assert big / small < 30


def test_library_coalescing_saves_transactions() -> None:
    for name in library.names():
        p = library.load(name)
        if not isinstance(p, ModbusProfile):
            continue
        fields = p.fields()
        coalesced = plan(fields, max_registers=p.limits.max_registers, gap=8,
                         forbidden=p.limits.forbidden)
        n_c, bytes_c = wire_cost(coalesced)
        n_n, bytes_n = wire_cost(plan_naive(fields))
        assert n_c <= n_n, name
        if len(fields) >= 4:
            assert n_c < n_n, f"{name}: coalescing saved no transaction"
        # with gap 8 no read costs more bytes than the requests it saves
        assert bytes_c <= bytes_n, name
        read_qs = sorted(f.quantity for r in coalesced for f in r.fields)
        assert read_qs == sorted(f.quantity for f in fields)
