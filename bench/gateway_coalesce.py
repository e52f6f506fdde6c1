"""Transactions and bytes on the wire per poll cycle: coalesced vs one read per quantity.

For every Modbus profile in the library, three plans: the naive baseline (one read per
quantity), the serial default (gap fill up to the break-even hole, 19 registers at 9600
baud) and full fill (any hole that fits in one request: the fewest transactions, the
Modbus TCP default). Per plan: transactions, RTU bytes both ways, and the line time at
9600 baud (11 bits per character, 3.5-character silence before every frame) plus an
assumed 20 ms device turnaround per transaction. Pure computation: no devices needed.

    python bench/gateway_coalesce.py
"""

from __future__ import annotations

from gateway import library
from gateway import modbus_frames as mf
from gateway.planner import Read, breakeven_gap, plan, plan_naive, wire_cost
from gateway.profile import ModbusProfile

BAUD = 9600
TURNAROUND_S = 0.020


def line_time(reads: list[Read], baud: int = BAUD) -> float:
    chars = 0
    for r in reads:
        req, resp = mf.rtu_wire_bytes(r.count)
        chars += req + resp + 7  # two 3.5-character silences per transaction
    return chars * mf.char_time(baud) + TURNAROUND_S * len(reads)


def main() -> None:
    auto = breakeven_gap(BAUD, TURNAROUND_S)
    names = ("naive", f"gap{auto}", "fill")
    tot = {k: [0, 0, 0.0, 0] for k in names}
    print(f"{'profile':24} {'qty':>3} | " + " | ".join(
        f"{k + ' tx':>9} {'bytes':>5} {'ms':>5}" for k in names) + " | tx naive/fill")
    for name in library.names():
        p = library.load(name)
        if not isinstance(p, ModbusProfile):
            continue
        fields = p.fields()
        lim = {"max_registers": p.limits.max_registers, "forbidden": p.limits.forbidden}
        plans = {"naive": plan_naive(fields), f"gap{auto}": plan(fields, gap=auto, **lim),
                 "fill": plan(fields, gap=mf.MAX_READ, **lim)}
        cells = []
        for k, reads in plans.items():
            n, b = wire_cost(reads, transport="rtu")
            t = line_time(reads)
            tcp = wire_cost(reads, transport="tcp")[1]
            for i, v in enumerate((n, b, t, tcp)):
                tot[k][i] += v
            cells.append(f"{n:>9} {b:>5} {t * 1000:>5.0f}")
        ratio = len(plans["naive"]) / len(plans["fill"])
        print(f"{name:24} {len(fields):>3} | " + " | ".join(cells) + f" | {ratio:>5.1f}x")
    print("-" * 104)
    n0, b0, t0, c0 = tot["naive"]
    print(f"naive: {n0} transactions, {b0} RTU bytes, {c0} TCP bytes, {t0 * 1000:.0f} ms per "
          f"cycle of the whole library at {BAUD} baud (+{TURNAROUND_S * 1000:.0f} ms turnaround)")
    for k in names[1:]:
        n, b, t, c = tot[k]
        print(f"{k:>5}: {n} transactions ({n0 / n:.2f}x fewer), {b} RTU bytes ({b0 / b:.2f}x), "
              f"{c} TCP bytes ({c0 / c:.2f}x), {t * 1000:.0f} ms ({t0 / t:.2f}x faster)")


if __name__ == "__main__":
    main()
