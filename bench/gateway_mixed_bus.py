"""Cycle time vs the wire minimum on a mixed RS-485 line: Modbus RTU, DL/T 645 and CJ/T 188
meters on one simulated line, polled at different intervals.

One pty carries all three protocols (firmware_sim's Modbus, DL/T 645 and CJ/T 188 meters
behind one line server that tells a request's protocol by its first bytes), with
line-timing emulation: every answer arrives after the time its request and answer take on
the wire (11 bits per character). The gateway side is the production bus scheduler
(``gateway.bus``), as in ``bench/gateway_cycle.py`` for a Modbus-only line.

The wire minimum is counted from the bytes that actually crossed the line (every request
and answer the link carried, DL/T 645's FE preambles included) plus two 3.5-character
silences per transaction: what a perfect master on that line could not beat. Printed:

* one full cycle (every device once): measured vs minimum, and the ratio;
* the scheduled run, through the gateway itself (``gateway.agent.Gateway`` from a config:
  each protocol's meters at their own ``poll_interval_s``, and on the Modbus meters the
  ``--fast-quantities`` at their own ``intervals_s`` of ``--fast`` s): the gateway's
  health figures per interval — polls, skipped and late ticks, the measured cycle (line
  time of one round of that interval's parts) vs its wire minimum and the ratio — and the
  line budget the intervals ask for at the wire minimum vs the measured load.

    python bench/gateway_mixed_bus.py [--baud 9600] [--modbus 8] [--dlt645 8] [--cjt188 8]
        [--intervals 5,15,60] [--fast 1] [--fast-quantities active_power_kw]
        [--seconds 60] [--cycles 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from firmware_sim.cjt188_meter import Cjt188Server
from firmware_sim.cjt188_meter import Meter as CjMeter
from firmware_sim.dlt645_meter import Dlt645Server
from firmware_sim.dlt645_meter import Meter as DlMeter
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from gateway import cjt188, dlt645, library
from gateway import modbus_frames as mf
from gateway.agent import Gateway
from gateway.bus import Bus, BusDevice, Timing
from gateway.config import GatewayConfig
from gateway.drivers import Cjt188Driver, Dlt645Driver, Driver, ModbusDriver
from gateway.planner import breakeven_gap
from gateway.profile import ModbusProfile
from gateway.transport import SerialLink

SILENCE_CHARS = 7  # 3.5 characters before the request and before the answer


class MixedLine(LineServer):
    """Three protocols' meters on one line: a request starting (after FE preamble bytes)
    with 68h whose eighth byte is 68h again is DL/T 645, another 68h frame CJ/T 188, the
    rest Modbus RTU — as each meter on a real mixed bus ignores the others' frames."""

    def __init__(self, modbus: ModbusSlaveServer, dlt: Dlt645Server, cjt: Cjt188Server, *,
                 baud: int) -> None:
        super().__init__(link="pty", baud=baud, silence=max(0.02, 3.5 * mf.char_time(baud)))
        self.modbus, self.dlt, self.cjt = modbus, dlt, cjt

    def feed(self, buf: bytearray) -> list[bytes]:
        i = 0
        while i < len(buf) and buf[i] == 0xFE:
            i += 1
        if i < len(buf) and buf[i] == 0x68:
            if len(buf) < i + 8:
                return []  # not yet known which 68h protocol
            return (self.dlt if buf[i + 7] == 0x68 else self.cjt).feed(buf)
        return self.modbus.feed(buf) if buf else []


class Counted:
    """Bytes and transactions that crossed the line, per device (the wire minimum's input)."""

    def __init__(self, link: SerialLink) -> None:
        self.bytes: dict[str, int] = defaultdict(int)
        self.transactions: dict[str, int] = defaultdict(int)
        self.current = ""
        inner = link.transact

        async def transact(request: bytes | None, length: Callable[[bytes], int | None],
                           timeout: float, **kw: Any) -> bytes:
            answer = await inner(request, length, timeout, **kw)
            self.bytes[self.current] += len(request or b"") + len(answer)
            self.transactions[self.current] += 1
            return answer

        link.transact = transact  # type: ignore[method-assign]

    def minimum_s(self, name: str, baud: int) -> float:
        chars = self.bytes[name] + SILENCE_CHARS * self.transactions[name]
        return chars * mf.char_time(baud)


def build(args: argparse.Namespace
          ) -> tuple[MixedLine, list[tuple[str, Driver]], list[dict[str, Any]]]:
    sdm = library.load("eastron-sdm630")
    dtsu = library.load("chint-dtsu666-dlt645")
    water = library.load("generic-cjt188-water")
    assert isinstance(sdm, ModbusProfile)
    assert isinstance(dtsu, dlt645.Dlt645Profile) and isinstance(water, cjt188.Cjt188Profile)
    mvals = dict.fromkeys(sdm.quantities, 1.0)
    dvals = dict.fromkeys(dtsu.quantities, 1.0)
    wvals = {q: 12.5 for q in water.quantities}
    units = {u: Unit(sdm, mvals) for u in range(1, args.modbus + 1)}
    dl_addr = [f"{i:012d}" for i in range(1, args.dlt645 + 1)]
    # 14 hex digits; none with 68h where a DL/T 645 frame has its second 68h
    cj_addr = [f"{0x10000000000000 + i:014X}" for i in range(1, args.cjt188 + 1)]
    line = MixedLine(ModbusSlaveServer(units, baud=args.baud),
                     Dlt645Server({a: DlMeter(dtsu, dvals) for a in dl_addr}),
                     Cjt188Server({a: CjMeter(water, wvals) for a in cj_addr}), baud=args.baud)
    gap = breakeven_gap(args.baud)
    drivers: list[tuple[str, Driver]] = (
        [("modbus", ModbusDriver(f"mb{u}", sdm, u, gap=gap)) for u in units]
        + [("dlt645", Dlt645Driver(f"dl{i}", dtsu, a)) for i, a in enumerate(dl_addr)]
        + [("cjt188", Cjt188Driver(f"cj{i}", water, a)) for i, a in enumerate(cj_addr)])
    # the same meters as the gateway's config for the scheduled run
    iv = dict(zip(("modbus", "dlt645", "cjt188"), args.intervals, strict=True))
    fast = [q for q in args.fast_quantities.split(",") if q]
    devices: list[dict[str, Any]] = (
        [{"name": f"mb{u}", "profile": "eastron-sdm630", "unit_id": u, "gap": gap,
          "poll_interval_s": iv["modbus"], "intervals_s": dict.fromkeys(fast, args.fast)}
         for u in units]
        + [{"name": f"dl{i}", "profile": "chint-dtsu666-dlt645", "address": a,
            "poll_interval_s": iv["dlt645"]} for i, a in enumerate(dl_addr)]
        + [{"name": f"cj{i}", "profile": "generic-cjt188-water", "address": a,
            "poll_interval_s": iv["cjt188"]} for i, a in enumerate(cj_addr)])
    return line, drivers, devices


async def run(args: argparse.Namespace, device: str,
              drivers: list[tuple[str, Driver]]) -> list[tuple[float, float, int]]:
    """Full cycles, every device once in turn: (measured s, wire minimum s, transactions)."""
    timing = Timing(timeout_s=1.0, retries=1, inter_frame_s=mf.silent_interval(args.baud),
                    offline_after=1000)
    link = SerialLink(device, baud=args.baud)
    counted = Counted(link)
    devs = [BusDevice(d, timing) for _, d in drivers]
    bus = Bus("mixed", link, devs)
    cycles: list[tuple[float, float, int]] = []
    try:
        for _ in range(args.cycles):
            counted.bytes.clear()
            counted.transactions.clear()
            t0 = time.perf_counter()
            for dev in devs:
                counted.current = dev.driver.name
                r = await bus.poll_device(dev)
                if not r.complete:
                    raise SystemExit(f"incomplete reading from {r.device}: not a healthy bus")
            took = time.perf_counter() - t0
            minimum = sum(counted.minimum_s(d.driver.name, args.baud) for d in devs)
            cycles.append((took, minimum, sum(counted.transactions.values())))
    finally:
        await bus.close()
    return cycles


async def scheduled(args: argparse.Namespace, device: str,
                    devices: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway's own schedule for ``args.seconds``: its health figures for the line."""
    port = {"type": "serial", "port": device, "baud": args.baud, "timeout_s": 1.0,
            "offline_after": 100}
    with tempfile.TemporaryDirectory() as state:
        cfg = GatewayConfig.model_validate({
            "site": "bench", "gateway": "mixed", "state_dir": state,
            "devices": [{**d, "transport": port} for d in devices]})
        gw = Gateway(cfg)
        try:
            end = time.monotonic() + args.seconds
            for _ in range(1_000_000):  # bounded; ends at ``end``
                if time.monotonic() >= end:
                    break
                await gw.poll_due(time.monotonic())
                await asyncio.sleep(max(0.0, min(gw.next_due(), end) - time.monotonic()))
            health = gw.health()
        finally:
            for b in gw.buses:
                await b.close()
            gw.queue.close()
    figures: dict[str, Any] = health["schedule"][gw.buses[0].name]
    failed = {n: d["failed"] for n, d in health["devices"].items() if d["failed"]}
    if failed:
        raise SystemExit(f"failed polls {failed}: not a healthy bus")
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--modbus", type=int, default=8)
    ap.add_argument("--dlt645", type=int, default=8)
    ap.add_argument("--cjt188", type=int, default=8)
    ap.add_argument("--intervals", default="5,15,60",
                    help="poll intervals (s) of the Modbus, DL/T 645 and CJ/T 188 meters")
    ap.add_argument("--fast", type=float, default=1.0,
                    help="the interval (s) of the Modbus meters' --fast-quantities")
    ap.add_argument("--fast-quantities", default="active_power_kw",
                    help="comma-separated SDM630 quantities read every --fast s ('' for none)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the scheduled run")
    ap.add_argument("--cycles", type=int, default=3)
    args = ap.parse_args()
    args.intervals = [float(x) for x in args.intervals.split(",")]
    if len(args.intervals) != 3 or args.seconds > 300 or args.cycles > 20:
        raise SystemExit("three intervals; at most 300 s and 20 cycles")
    logging.getLogger("enmon.gateway.bus").setLevel(logging.ERROR)
    logging.getLogger("enmon.gateway").setLevel(logging.ERROR)
    line, drivers, devices = build(args)
    line.start()
    try:
        cycles = asyncio.run(run(args, line.device, drivers))
        figures = asyncio.run(scheduled(args, line.device, devices))
    finally:
        line.stop()
    n = {k: sum(1 for kk, _ in drivers if kk == k) for k in ("modbus", "dlt645", "cjt188")}
    print(f"mixed line at {args.baud} baud (pty with line-timing emulation): "
          f"{n['modbus']} x eastron-sdm630 (Modbus RTU), {n['dlt645']} x chint-dtsu666-dlt645 "
          f"(DL/T 645-2007), {n['cjt188']} x generic-cjt188-water (CJ/T 188)")
    took, minimum, tx = (statistics.median(c[i] for c in cycles) for i in range(3))
    print(f"  full cycle (every device once, median of {args.cycles}): {int(tx)} transactions, "
          f"measured {took:6.2f} s, wire minimum {minimum:6.2f} s, "
          f"measured/minimum {took / minimum:5.3f}")
    iv = dict(zip(("Modbus", "DL/T 645", "CJ/T 188"), args.intervals, strict=True))
    fast = f", Modbus {args.fast_quantities} {args.fast:g} s" if args.fast_quantities else ""
    print(f"  scheduled run of {args.seconds:.0f} s through the gateway, intervals "
          + ", ".join(f"{k} {v:g} s" for k, v in iv.items()) + fast + ":")
    for key, f in figures["intervals"].items():
        cycle, wire = f["cycle_ms"], f["wire_min_ms"]
        ratio = f"{cycle / wire:5.3f}" if wire else "  n/a"
        print(f"    every {key:>4} s: {f['parts']:3} parts {f['polls']:5} polls "
              f"{f['skipped']:3} skipped {f['late']:3} late (worst lag {f['lag_max_ms']:6.1f} ms)"
              f"  cycle {cycle:8.1f} ms, wire minimum {wire:8.1f} ms, ratio {ratio}"
              f"  share of the line {f['load']:5.3f} (minimum {f['budget']:5.3f})")
    budget, load = figures["line_budget"], figures["line_load"]
    print(f"  line budget the intervals ask for: measured {load:5.3f}, wire minimum "
          f"{budget:5.3f} (ratio {load / budget:5.3f}; above 1.0 the line cannot keep up)")


if __name__ == "__main__":
    main()
