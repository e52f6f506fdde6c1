"""Poll-cycle time of 32 Modbus RTU meters on one simulated 9600-baud RS-485 line.

The meters are firmware_sim units on one pty with line-timing emulation (every answer
arrives after the time its request and answer take on a 9600-baud wire, 11 bits per
character); the gateway side is the production bus scheduler with the 3.5-character
inter-frame silence. Compares the measured cycle with the line's theoretical minimum
(the same transactions' characters plus two 3.5-character silences each, no device
turnaround, no software overhead), for the coalesced plan and, measured in the same run,
the one-read-per-quantity baseline.

    python bench/gateway_cycle.py [--meters 32] [--cycles 3] [--profile eastron-sdm630]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import library
from gateway import modbus_frames as mf
from gateway.bus import Bus, BusDevice, Timing
from gateway.drivers import ModbusDriver
from gateway.planner import breakeven_gap, plan_naive
from gateway.profile import ModbusProfile
from gateway.transport import SerialLink

BAUD = 9600


def line_minimum(drivers: list[ModbusDriver]) -> float:
    chars = 0
    for d in drivers:
        for r in d.reads:
            req, resp = mf.rtu_wire_bytes(r.count)
            chars += req + resp + 7
    return chars * mf.char_time(BAUD)


TIMEOUT_S = 0.5


async def measure(device: str, drivers: list[ModbusDriver], cycles: int,
                  dead: frozenset[str] = frozenset()) -> list[float]:
    timing = Timing(timeout_s=TIMEOUT_S, retries=1, inter_frame_s=mf.silent_interval(BAUD),
                    offline_after=cycles + 1)
    bus = Bus("bench", SerialLink(device, baud=BAUD), [BusDevice(d, timing) for d in drivers])
    out = []
    for c in range(cycles):
        t0 = time.perf_counter()
        readings = await bus.poll_cycle(c)
        out.append(time.perf_counter() - t0)
        bad = [r.device for r in readings if not r.complete and r.device not in dead]
        if bad:
            raise SystemExit(f"incomplete readings from {bad}: the bench is not measuring a "
                             "healthy bus")
    await bus.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=32)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--profile", default="eastron-sdm630")
    args = ap.parse_args()
    logging.getLogger("enmon.gateway.bus").setLevel(logging.ERROR)  # the dead meter's timeouts
    p = library.load(args.profile)
    assert isinstance(p, ModbusProfile)
    values = {q: 1.0 for q in p.quantities}
    units = {u: Unit(p, values) for u in range(1, args.meters + 1)}
    dead_unit = args.meters + 1  # configured in the gateway, absent on the wire
    srv = ModbusSlaveServer(units, link="pty", baud=BAUD).start()
    gap = breakeven_gap(BAUD)
    try:
        results = {}
        for label, g in ((f"coalesced (gap {gap})", gap), ("one read per quantity", None)):
            drivers = [ModbusDriver(f"m{u}", p, u, gap=g or 0) for u in units]
            if g is None:  # naive: force one read per field
                for d in drivers:
                    d.reads = plan_naive(p.fields())
                    d.steps = [d._step(r) for r in d.reads]
            cycles = args.cycles if g is not None else max(1, args.cycles - 1)
            times = asyncio.run(measure(srv.device, drivers, cycles))
            tx = sum(len(d.reads) for d in drivers)
            results[label] = (statistics.median(times), line_minimum(drivers), tx)
        # the failure budget: one more, dead, meter may add no more than its timeout
        drivers = [ModbusDriver(f"m{u}", p, u, gap=gap) for u in [*units, dead_unit]]
        times = asyncio.run(measure(srv.device, drivers, args.cycles, frozenset({f"m{dead_unit}"})))
        dead_cycle = statistics.median(times)
    finally:
        srv.stop()
    print(f"{args.meters} x {p.model} ({len(p.quantities)} quantities) on one {BAUD}-baud "
          f"RTU line (pty with line-timing emulation), median of the cycles:")
    base = results["one read per quantity"][0]
    for label, (t, minimum, tx) in results.items():
        print(f"  {label:24} {tx:4} transactions  cycle {t:6.2f} s   line minimum "
              f"{minimum:6.2f} s   measured/minimum {t / minimum:5.2f}   "
              f"vs baseline {base / t:5.2f}x faster")
    alive = results[f"coalesced (gap {gap})"][0]
    print(f"  with one more meter that never answers (timeout {TIMEOUT_S} s, retries 1): cycle "
          f"{dead_cycle:.2f} s = +{dead_cycle - alive:.2f} s (budget: its timeout, "
          f"{TIMEOUT_S} s)")


if __name__ == "__main__":
    main()
