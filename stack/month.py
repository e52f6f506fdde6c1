"""A simulated campus month in InfluxDB, through the same code paths as live data.

Reports and the console need weeks of history; waiting weeks is not an option
and hand-written rows would only test what the author believed. So the month
is *produced*: the campus simulator (:mod:`firmware_sim.campus`) is stepped
through it, each step's readings become wire-contract batches with a per-gateway
``seq`` (:func:`enmon.wire.encode_batch`), ingest's own :class:`Processor` turns
the payloads into line protocol (so flags, ``rejected`` records and the
``ingest_batch`` seq points are exactly what ingest would store), the rule
engine (:class:`rules.engine.Engine`) judges every batch and every tick, and
ingest's completeness and the rules' hourly/daily rollups are computed from what
was stored. Only the clock is simulated.

Three things go wrong on purpose, so the inspector has something to find:

- ``school-main`` stops answering for six hours on day 10 (a gap; the rule
  engine raises ``meter_offline``);
- ``mall-main`` reports one out-of-range power spike on day 12 (a flag, and a
  ``peak_demand`` threshold alert);
- one payload from ``gw-school`` is garbage and one value is of an unknown
  quantity (two ``rejected`` records).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from enmon import touched as tch
from enmon import wire
from enmon.quantities import QUANTITIES

log = logging.getLogger("enmon.demo.month")

DEMO_GAP_DEVICE = "school-main"
DEMO_SPIKE_DEVICE = "mall-main"


@dataclass(frozen=True, slots=True)
class Faults:
    """When the planned faults happen, as offsets from the start of the simulated period."""

    gap_at: dt.timedelta = dt.timedelta(days=9, hours=8)  # 10th day, 08:00
    gap_len: dt.timedelta = dt.timedelta(hours=6)
    spike_at: dt.timedelta = dt.timedelta(days=11, hours=14)
    reject_at: dt.timedelta = dt.timedelta(days=2, hours=3)


@dataclass(slots=True)
class Loaded:
    """What :func:`load_month` put into the database."""

    site: Any  # energy.site.Site of the simulated campus
    start_ms: int
    end_ms: int
    batches: int = 0
    samples: int = 0
    lines: int = 0
    rejected: int = 0
    alert_changes: int = 0
    gap: tuple[str, int, int] = ("", 0, 0)  # device, start, end (ms) of the planned outage
    spike: tuple[str, int] = ("", 0)
    seconds: float = 0.0
    gateways: list[str] = field(default_factory=list)


def change_line(change: Any) -> str:
    """One ``alert`` point from a lifecycle change, in the rules service's own schema."""
    from rules.service import alert_line, change_dict

    return alert_line(change_dict(change))


def month_bounds(month: str, tz: str = "Asia/Shanghai") -> tuple[dt.datetime, dt.datetime]:
    """``"2026-10"`` → [first instant, first instant of the next month) in ``tz``."""
    year, mon = (int(x) for x in month.split("-"))
    zone = ZoneInfo(tz)
    start = dt.datetime(year, mon, 1, tzinfo=zone)
    end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=zone)
    return start, end


def demo_rules_config() -> Any:
    """The rules the demo judges with: one demand threshold and the data-quality checks."""
    from rules.config import Quality, RulesConfig, ThresholdRule

    return RulesConfig(
        thresholds=[ThresholdRule(name="peak_demand", quantity="active_power_kw", above=2000.0,
                                  clear_below=1500.0, severity="critical",
                                  devices=[DEMO_SPIKE_DEVICE])],
        # readings come every 15 min here: a meter is offline after an hour of silence
        quality=Quality(meter_offline_s=3600.0, flatline_quantities=[]),
    )


async def load_month(
    *,
    query: Any,
    writer: Any,
    start: dt.datetime,
    end: dt.datetime,
    step_s: float = 900.0,
    steps_per_batch: int = 4,
    campus: Path | None = None,
    faults: Faults | None = None,
    scenarios: Sequence[str] = (),
    boiler_every_s: float = 0.0,
    progress: Callable[[float], None] | None = None,
) -> Loaded:
    """Simulate ``[start, end)`` and store it; see the module docstring for what happens.

    Args:
        query: an :class:`enmon.influx.InfluxQL` on the target database.
        writer: an :class:`enmon.influx.Writer` on the same database.
        step_s: reading interval of every meter.
        steps_per_batch: readings per device in one MQTT batch (a gateway batches too).
        scenarios: more scenarios from ``firmware_sim/scenarios`` (e.g. a fouling boiler).
        boiler_every_s: run the rules' scheduled boiler-efficiency check this often over the
            stored period (0: not at all), as the rules service would have.
        progress: called with the fraction done (for a progress bar).
    """
    from energy.site import Site
    from firmware_sim.campus import CampusSim, Scenario, load_campus, load_scenario
    from firmware_sim.campus.config import DEFAULT_CAMPUS
    from firmware_sim.campus.sitefile import site_file
    from ingest.pipeline import Processor, compute_completeness_lines
    from rules.engine import Engine
    from rules.lifecycle import AlertBook
    from rules.scheduled import PassStats, Scheduler

    t0 = time.perf_counter()
    f = faults or Faults()
    model = load_campus(campus or DEFAULT_CAMPUS)
    raw_site = site_file(model)
    for b in raw_site["buildings"]:  # the meters are read every step_s here
        for m in b.get("meters", []):
            m["poll_interval_s"] = step_s
    site = Site.model_validate(raw_site)
    start_s, end_s = start.timestamp(), end.timestamp()
    gap_start = start + f.gap_at
    scenario = Scenario.model_validate({
        "name": "inspector-demo",
        "description": "a meter outage the inspector must see as a gap",
        "anchor": "run_start",
        "events": [{"kind": "meter_dies", "device": DEMO_GAP_DEVICE,
                    "start": f.gap_at.total_seconds(),
                    "end": (f.gap_at + f.gap_len).total_seconds()}],
    })
    extra = [load_scenario(name) for name in scenarios]
    sim = CampusSim(model, start=start_s, scenarios=[scenario, *extra], run_start=start_s)
    engine = Engine(demo_rules_config(), [site], AlertBook(), started_ms=int(start_s * 1000))
    processor = Processor(worker="demo")
    by_gw: dict[str, list[str]] = {}
    for dev, info in sim.devices.items():
        by_gw.setdefault(info.gateway, []).append(dev)
    seq = dict.fromkeys(by_gw, 0)
    pending: dict[str, list[wire.Sample]] = {gw: [] for gw in by_gw}
    out = Loaded(site=site, start_ms=int(start_s * 1000), end_ms=int(end_s * 1000),
                 gateways=sorted(by_gw))
    out.gap = (DEMO_GAP_DEVICE, int(gap_start.timestamp() * 1000),
               int((gap_start + f.gap_len).timestamp() * 1000))
    spike_ms = int((start + f.spike_at).timestamp() * 1000)
    reject_ms = int((start + f.reject_at).timestamp() * 1000)
    rejected_done = False
    lines: list[str] = []
    touched: dict[tch.Key, tch.Span] = {}  # what was stored, as ingest marks it

    async def flush(force: bool = False) -> None:
        if lines and (force or len(lines) >= 5000):
            await writer.write(lines)
            out.lines += len(lines)
            lines.clear()

    def meta(dev: str) -> wire.DeviceMeta:
        i = sim.devices[dev]
        return wire.DeviceMeta(building=i.building, category=i.category,
                               energy_type=i.energy_type, profile=i.profile)

    n_steps = int((end_s - start_s) // step_s)
    for k in range(n_steps):
        t = start_s + k * step_s
        sim.advance_to(t, max_step=step_s)
        ts = int(t * 1000)
        for gw, devs in by_gw.items():
            for dev in devs:
                if not sim.answering(dev):
                    continue  # a failed read produces no value, never 0
                values = {q: float(v) for q, v in sim.reading(dev).items() if q in QUANTITIES}
                flags: dict[str, str] = {}
                if dev == DEMO_SPIKE_DEVICE and ts == spike_ms:
                    values["active_power_kw"] = 9_999.0
                    flags["active_power_kw"] = "out_of_range"
                pending[gw].append(wire.Sample(dev, ts, values, flags))
        last = k == n_steps - 1
        if (k + 1) % steps_per_batch and not last:
            continue
        sent_at = ts + 2_000
        for gw in by_gw:
            samples, pending[gw] = pending[gw], []
            if not samples:
                continue
            seq[gw] += 1
            devices = {s.device: meta(s.device) for s in samples}
            batch = wire.Batch(site.site, gw, seq[gw], sent_at, devices, samples)
            payload = wire.encode_batch(batch)
            if not rejected_done and sent_at >= reject_ms and gw == "gw-school":
                # one value of a quantity no profile has, and one garbage payload
                raw = wire.batch_to_dict(batch)
                raw["samples"][0]["values"]["banana_count"] = 3.0
                payload = wire.dumps(raw)
                res = processor.process(b'{"v": 1, "site": "demo-campus", "gatew',
                                        batch.topic, sent_at)
                lines.extend(res.lines)
                out.rejected += len(res.reasons)
                rejected_done = True
            res = processor.process(payload, batch.topic, sent_at)
            lines.extend(res.lines)
            tch.merge(touched, res.touched)
            out.rejected += len(res.reasons)
            out.batches += 1
            out.samples += len(samples)
            parsed = wire.parse_batch(payload, topic=batch.topic).batch
            for ch in engine.on_batch(parsed).changes:
                lines.append(change_line(ch))
                out.alert_changes += 1
        for ch in engine.tick(sent_at).changes:
            lines.append(change_line(ch))
            out.alert_changes += 1
        await flush()
        if progress is not None:
            progress((k + 1) / n_steps * 0.8)
    await flush(force=True)

    # what ingest and the rules compute from what is stored
    tz = site.timezone
    day = dt.datetime.fromtimestamp(start_s, ZoneInfo(tz)).date()
    last_day = dt.datetime.fromtimestamp(end_s - 1, ZoneInfo(tz)).date()
    days = (last_day - day).days + 1
    i = 0
    while day <= last_day:
        lns = await compute_completeness_lines(query, day, tz)
        if lns:
            await writer.write([ln for ln, _ in lns])
        day += dt.timedelta(days=1)
        i += 1
        if progress is not None:
            progress(0.8 + 0.1 * i / days)
    # the roll-ups recompute what the markers say was stored, as the rules service would
    await writer.write(tch.marker_lines({site.site: touched}, "demo", tch.Stamper(),
                                        int(time.time() * 1000)))
    sched = Scheduler(engine, query, writer, settle_s=0.0)
    st = PassStats(site.site)
    await sched.rollup(site, out.end_ms, st)
    if progress is not None:
        progress(1.0)
    if boiler_every_s > 0:
        step_ms = int(boiler_every_s * 1000)
        now = out.start_ms + step_ms
        while now <= out.end_ms:
            changes = (await sched.boilers(site, now, st)).changes
            if changes:
                await writer.write([change_line(ch) for ch in changes])
                out.alert_changes += len(changes)
            now += step_ms
    out.lines += st.points_written
    out.spike = (DEMO_SPIKE_DEVICE, spike_ms)
    out.seconds = time.perf_counter() - t0
    log.info("event=demo_loaded site=%s batches=%d samples=%d lines=%d rejected=%d alerts=%d "
             "seconds=%.1f", site.site, out.batches, out.samples, out.lines, out.rejected,
             out.alert_changes, out.seconds)
    return out
