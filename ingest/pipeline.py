"""The ingest pipeline: receive → validate → batch → write durably → acknowledge.

The one promise: a message is acknowledged to the broker only after everything
it produced (its readings, or the ``rejected`` record saying why not) is in the
database. Everything else follows from it:

* a crash at any moment leaves the unacknowledged messages with the broker, which
  redelivers them; writes are idempotent (a ``meter`` point is keyed by its tags
  and reading time), so a redelivered batch overwrites itself: exactly once stored;
* while the database is down the writer retries with capped exponential backoff
  and acknowledges nothing; the broker stops sending at Receive Maximum, so memory
  stays flat and the backlog waits in the broker's persistent session;
* a batch the database refuses as *bad* (HTTP 400) is split per message so one
  poisonous message cannot block the others; what still fails is stored as a
  ``rejected`` record (reason ``db_refused``).

Two tasks and two bounded queues: the collector turns deliveries into batches of
lines (CPU, pure :class:`Processor`), the writer writes them in order and acks.
At most ``max_inflight_batches`` batches wait between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from enmon import touched as tch
from enmon import wire
from enmon.errors import SinkError, WireError
from enmon.influx import InfluxQL, Writer
from enmon.lineproto import batch_lines, line, payload_hash
from ingest import command_results, decode
from ingest.completeness import DayCompleteness, SeqAggregate, completeness, day_bounds, day_of
from ingest.metrics import Stats, stats_line
from ingest.mqtt import AckingSubscriber, Delivery

log = logging.getLogger("enmon.ingest")

# deliveries taken from the subscriber per loop turn: between two turns the loop reads the
# socket and runs the writer, so a chunk is a few milliseconds of decoding at most
_CHUNK = 64

# Reasons ingest adds to the wire contract's (enmon.wire.Reason)
TS_FUTURE = "ts_future"  # reading more than future_reject_s ahead of ingest's clock
DB_REFUSED = "db_refused"  # the database refused the message's points as invalid
PROCESSING_ERROR = "processing_error"  # a bug met a payload: quarantined, acked, counted


@dataclass(frozen=True, kw_only=True, slots=True)
class TimeLimits:
    """When a reading's timestamp is doubtful (flagged) or impossible (refused).

    Args:
        future_flag_s: ahead of ingest's clock by more than this: stored, ``flag_ts=clock_ahead``.
        future_reject_s: ahead by more than this: refused (``ts_future``); a point far in the
            future would poison every "latest value" query.
        past_flag_s: older than this when it arrives: stored, ``flag_ts=late``.
    """

    future_flag_s: float = 300.0
    future_reject_s: float = 86_400.0
    past_flag_s: float = 7 * 86_400.0


@dataclass(slots=True)
class Processed:
    """What one message turns into."""

    lines: list[str]
    readings: int = 0
    reasons: list[str] = field(default_factory=list)  # one per rejected message/value
    flags: list[str] = field(default_factory=list)
    sent_at: int = 0
    site: str = ""
    gateway: str = ""
    seq: int | None = None  # the batch's seq, for the end-to-end ack to its gateway
    # (gateway, device) → first/last reading time stored: the roll-ups recompute from it
    touched: dict[tch.Key, tch.Span] = field(default_factory=dict)


class Processor:
    """Message → lines. Pure apart from the clock it is given; one per worker.

    Rejected records get a ``worker`` tag and strictly increasing millisecond
    timestamps per worker, so thousands of rejects per second never overwrite
    each other (points with equal tags and time would).
    """

    def __init__(self, *, worker: str, limits: TimeLimits | None = None) -> None:
        self.worker = worker
        self.limits = limits or TimeLimits()
        self._last_reject_ms = 0
        self._lines = decode.LineCache()

    def _reject_ts(self, now_ms: int) -> int:
        self._last_reject_ms = max(now_ms, self._last_reject_ms + 1)
        return self._last_reject_ms

    def rejected(self, *, reason: str, detail: str, payload: bytes, topic: str, site: str,
                 gateway: str, now_ms: int, device: str = "", quantity: str = "",
                 digest: str | None = None, size: int | None = None) -> str:
        tags = {"site": wire.safe_text(site or "_unknown", 64),
                "gateway": wire.safe_text(gateway or "_unknown", 64),
                "reason": reason, "worker": self.worker}
        # whatever the sender put in these, the record must be writable: safe_text escapes
        # lone surrogates and control characters instead of failing the write
        fields: dict[str, float | int | str | bool] = {
            "payload_sha256": digest or payload_hash(payload),
            "detail": wire.safe_text(detail, 500),
            "topic": wire.safe_text(topic, 300),
            "size": len(payload) if size is None else size,
        }
        if device:
            fields["device"] = wire.safe_text(device, 64)
        if quantity:
            fields["quantity"] = wire.safe_text(quantity, 64)
        return line("rejected", tags, fields, self._reject_ts(now_ms))

    def too_large(self, topic: str, size: int, digest: str, *, now_ms: int) -> Processed:
        """The record of a payload over the limit that was not kept in memory."""
        try:
            site, gateway, _ = wire.parse_topic(topic)
        except WireError:
            site = gateway = ""
        rec = self.rejected(reason=str(wire.Reason.TOO_LARGE),
                            detail=f"{size} bytes, limit {wire.MAX_PAYLOAD_BYTES}",
                            payload=b"", topic=topic, site=site, gateway=gateway,
                            now_ms=now_ms, digest=digest, size=size)
        log.warning("event=rejected reason=too_large topic=%r size=%d",
                    wire.safe_text(topic), size)
        return Processed([rec], reasons=[str(wire.Reason.TOO_LARGE)])

    def process(self, payload: bytes, topic: str, now_ms: int) -> Processed:
        fast = decode.decode_strict(payload, topic)
        if fast is not None:
            out = self._process_strict(fast, now_ms)
            if out is not None:
                return out
        if command_results.is_result_topic(topic):  # never a telemetry batch: after the fast path
            return self._process_result(payload, topic, now_ms)
        return self._process_lenient(payload, topic, now_ms)

    def _process_result(self, payload: bytes, topic: str, now_ms: int) -> Processed:
        """A gateway's command result: one ``command`` point, or its ``rejected`` record."""
        try:
            ln, site, gateway = command_results.result_line(
                payload, topic, now_ms=now_ms, future_reject_s=self.limits.future_reject_s)
        except WireError as exc:
            m = command_results.topic_ids(topic)
            log.warning("event=rejected reason=%s topic=%r size=%d detail=%r kind=command_result",
                        exc.reason, wire.safe_text(topic), len(payload),
                        wire.safe_text(exc.detail))
            return Processed([self.rejected(reason=str(exc.reason), detail=exc.detail,
                                            payload=payload, topic=topic, site=m[0],
                                            gateway=m[1], now_ms=now_ms)],
                             reasons=[str(exc.reason)])
        # no seq: a result is not a batch, so it is neither counted in completeness nor acked
        # end to end (the gateway keeps its own record in commands.db)
        return Processed([ln], site=site, gateway=gateway)

    def _process_strict(self, b: decode.BatchIn, now_ms: int) -> Processed | None:
        """A batch that keeps every wire rule and whose reading times need no flag: lines
        by the fast builder. ``None`` sends it down the lenient path (which flags or
        refuses per sample), so both paths store the same."""
        samples = b.samples
        lim = self.limits
        if samples:
            ts = [s.ts for s in samples]
            if (max(ts) - now_ms) / 1000 > lim.future_flag_s \
                    or (now_ms - min(ts)) / 1000 > lim.past_flag_s:
                return None
        out = Processed(decode.meter_lines(b, samples, self._lines))
        out.readings = sum(len(s.values) for s in samples)
        out.site, out.gateway, out.seq = b.site, b.gateway, b.seq
        # (gateway, device) → first/last reading time, in one pass (the common batch has
        # one sample per device: no min/max at all)
        touched: dict[tch.Key, tch.Span] = {}
        gw = b.gateway
        for s in samples:
            if s.values:
                k, t = (gw, s.device), s.ts
                old = touched.get(k)
                touched[k] = (t, t) if old is None else (min(old[0], t), max(old[1], t))
        out.touched = touched
        sent_at = b.sent_at
        if not wire.MIN_TS_MS <= sent_at <= now_ms + lim.future_reject_s * 1000:
            sent_at = now_ms
        out.sent_at = sent_at
        out.lines.append(f"ingest_batch,gateway={b.gateway},site={b.site} "
                         f"seq={b.seq}i,samples={len(samples)}i {sent_at}")
        return out

    def _process_lenient(self, payload: bytes, topic: str, now_ms: int) -> Processed:
        try:
            parsed = wire.parse_batch(payload, topic=topic)
        except WireError as exc:
            try:
                site, gateway, _ = wire.parse_topic(topic)
            except WireError:
                site = gateway = ""
            log.warning("event=rejected reason=%s topic=%r size=%d detail=%r",
                        exc.reason, wire.safe_text(topic), len(payload),
                        wire.safe_text(exc.detail))
            # refused, but recorded: the gateway may drop it (resending cannot help)
            return Processed([self.rejected(reason=str(exc.reason), detail=exc.detail,
                                            payload=payload, topic=topic, site=site,
                                            gateway=gateway, now_ms=now_ms)],
                             reasons=[str(exc.reason)], site=site, gateway=gateway,
                             seq=_lenient_seq(payload) if site else None)
        b = parsed.batch
        out = Processed([])
        digest = payload_hash(payload) if parsed.dropped else None
        lim = self.limits
        keep = []
        for s in b.samples:
            ahead_s = (s.ts - now_ms) / 1000
            if ahead_s > lim.future_reject_s:
                out.lines.append(self.rejected(
                    reason=TS_FUTURE, detail=f"ts {s.ts} is {ahead_s:.0f}s ahead of ingest",
                    payload=payload, topic=topic, site=b.site, gateway=b.gateway,
                    now_ms=now_ms, device=s.device, digest=digest or payload_hash(payload)))
                out.reasons.append(TS_FUTURE)
                continue
            if ahead_s > lim.future_flag_s:
                s.flags["ts"] = "clock_ahead"
                out.flags.append("clock_ahead")
            elif -ahead_s > lim.past_flag_s:
                s.flags["ts"] = "late"
                out.flags.append("late")
            keep.append(s)
            out.readings += len(s.values)
        b.samples = keep
        out.lines.extend(batch_lines(b))
        out.site, out.gateway, out.seq = b.site, b.gateway, b.seq
        out.touched = {(b.gateway, dev): span for dev, span in
                       tch.spans_of((s.device, s.ts) for s in keep if s.values).items()}
        for d in parsed.dropped:
            out.lines.append(self.rejected(
                reason=str(d.reason), detail=d.detail, payload=payload, topic=topic,
                site=b.site, gateway=b.gateway, now_ms=now_ms, device=d.device,
                quantity=d.quantity, digest=digest))
            out.reasons.append(str(d.reason))
        # One point per batch for completeness; keyed by sent_at, so a redelivery of the
        # same message overwrites it and a resend under the same seq shows as a duplicate.
        sent_at = b.sent_at
        if not wire.MIN_TS_MS <= sent_at <= now_ms + lim.future_reject_s * 1000:
            sent_at = now_ms
        out.sent_at = sent_at
        out.lines.append(line("ingest_batch", {"site": b.site, "gateway": b.gateway},
                              {"seq": b.seq, "samples": len(b.samples)}, sent_at))
        return out


def _lenient_seq(payload: bytes) -> int | None:
    """The seq of a refused payload, if it has one (for its end-to-end ack)."""
    try:
        obj = wire.loads(payload)
    except (ValueError, RecursionError):
        return None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63 \
        else None


@dataclass(slots=True)
class _Pending:
    lines: list[str]
    deliveries: list[Delivery]
    spans: list[tuple[int, int]]  # lines[a:b] came from deliveries[i]
    readings: int
    newest_sent_at: int
    built_at: float
    # what the lines touch, per site (all of them) and per delivery (for the split path)
    touched: dict[str, dict[tch.Key, tch.Span]] = field(default_factory=dict)
    touched_each: list[dict[str, dict[tch.Key, tch.Span]]] = field(default_factory=list)
    # (site, gateway, seq) of each delivery, None where unknown: the end-to-end acks
    seqs: list[tuple[str, str, int] | None] = field(default_factory=list)
    unstored: set[int] = field(default_factory=set)  # deliveries not even stored as rejected


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineSettings:
    """Batching and retry knobs.

    Args:
        max_lines: write when a batch holds this many lines...
        max_wait_s: ...or when its first message has waited this long.
        max_inflight_batches: built batches waiting for the writer (memory bound).
        retry_initial_s: first backoff after a failed write; doubles each time...
        retry_max_s: ...up to this.
        stats_interval_s: how often ``ingest_stats`` is written.
        completeness_interval_s: how often today's/yesterday's completeness is recomputed
            (0 disables).
        day_tz: time zone of the "day" in the completeness figure.
        shutdown_grace_s: on stop, how long built batches may take to be written and acked
            (fewer redeliveries after a routine restart); what is left is redelivered.
    """

    max_lines: int = 2500
    max_wait_s: float = 0.2
    max_inflight_batches: int = 2
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    stats_interval_s: float = 10.0
    completeness_interval_s: float = 300.0
    day_tz: str = "UTC"
    shutdown_grace_s: float = 10.0


class Pipeline:
    """One worker's pipeline. ``run()`` until ``stop`` is set."""

    def __init__(self, *, sub: AckingSubscriber, writer: Writer, worker: str,
                 settings: PipelineSettings | None = None, limits: TimeLimits | None = None,
                 query: InfluxQL | None = None, stats: Stats | None = None) -> None:
        self.sub = sub
        self.writer = writer
        self.worker = worker
        self.settings = settings or PipelineSettings()
        self.processor = Processor(worker=worker, limits=limits)
        self._stamp = tch.Stamper()
        self.query = query
        self.stats = stats or Stats()
        self._ready: asyncio.Queue[_Pending] = asyncio.Queue(
            maxsize=max(1, self.settings.max_inflight_batches))
        # messages taken from MQTT and not yet acked; when they reach half the broker's
        # window, waiting max_wait_s for more is pointless (none come before our acks)
        self._held = 0
        self._writing = False
        self._window = max(1, sub.settings.receive_maximum // 2)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._collect(), name="collect"),
                 asyncio.create_task(self._write_loop(), name="write"),
                 asyncio.create_task(self._stats_loop(), name="stats")]
        if self.query is not None and self.settings.completeness_interval_s > 0:
            tasks.append(asyncio.create_task(self._completeness_loop(), name="completeness"))
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            # graceful stop: take nothing new, let the writer finish what is built
            tasks[0].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks[0]
            deadline = asyncio.get_running_loop().time() + self.settings.shutdown_grace_s
            while ((not self._ready.empty() or self._writing)
                   and asyncio.get_running_loop().time() < deadline
                   and not tasks[1].done()):
                await asyncio.sleep(0.02)
            log.info("event=pipeline_stopped worker=%s unacked_left=%d", self.worker,
                     self._held)
        finally:
            for t in [stopper, *tasks]:
                t.cancel()
            for t in [stopper, *tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            # unacked work is simply left to the broker: it redelivers it to us or a peer

    # ------------------------------------------------------------------ collect

    async def _collect(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        sub = self.sub
        carry: list[Delivery] = []  # taken but beyond the last batch's max_lines
        while True:
            chunk = carry or await sub.take(_CHUNK)
            carry = []
            pending = _Pending([], [], [], 0, 0, loop.time())
            deadline = loop.time() + s.max_wait_s
            while True:
                for i, d in enumerate(chunk):
                    if len(pending.lines) >= s.max_lines:
                        carry = chunk[i:]
                        break
                    self._add(pending, d)
                if carry or len(pending.lines) >= s.max_lines:
                    break
                # parsing is CPU work on the loop: let the socket and the writer run
                await asyncio.sleep(0)
                chunk = sub.take_nowait(_CHUNK)
                if chunk:
                    continue
                if self._held >= self._window:
                    break  # no more can come before our acks
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    chunk = await asyncio.wait_for(sub.take(_CHUNK), remaining)
                except TimeoutError:
                    break
            self.stats.queue_depth = sub.queued
            await self._ready.put(pending)
            self.stats.inflight_batches = self._ready.qsize()

    def _add(self, pending: _Pending, d: Delivery) -> None:
        st = self.stats
        st.messages += 1
        self._held += 1
        if d.dup:
            st.redeliveries += 1
        now = int(time.time() * 1000)
        try:
            if d.oversize is not None:
                p = self.processor.too_large(d.topic, *d.oversize, now_ms=now)
            else:
                p = self.processor.process(d.payload, d.topic, now)
        except Exception as exc:  # the last line of defence: no payload may stop the worker
            st.processing_errors += 1
            log.error("event=processing_error topic=%r sha256=%s error=%r",
                      wire.safe_text(d.topic), payload_hash(d.payload), wire.safe_text(exc))
            p = Processed([self.processor.rejected(
                reason=PROCESSING_ERROR, detail=f"{type(exc).__name__}: {exc}",
                payload=d.payload, topic=d.topic, site="", gateway="", now_ms=now)],
                reasons=[PROCESSING_ERROR])
        a = len(pending.lines)
        pending.lines.extend(p.lines)
        pending.spans.append((a, len(pending.lines)))
        pending.deliveries.append(d)
        pending.readings += p.readings
        pending.newest_sent_at = max(pending.newest_sent_at, p.sent_at)
        pending.seqs.append((p.site, p.gateway, p.seq)
                            if p.site and p.gateway and p.seq is not None else None)
        mine = {p.site: p.touched} if p.touched else {}
        pending.touched_each.append(mine)
        if p.touched:
            into = pending.touched.get(p.site)
            if into is None:
                pending.touched[p.site] = dict(p.touched)
            else:  # tch.merge, inlined: this runs for every message
                for k, v in p.touched.items():
                    old = into.get(k)
                    if old is None:
                        into[k] = v
                    elif v[0] < old[0] or v[1] > old[1]:
                        into[k] = (min(old[0], v[0]), max(old[1], v[1]))
        for r in p.reasons:
            st.rejected[r] += 1
        for f in p.flags:
            st.ts_flagged[f] += 1

    # ------------------------------------------------------------------ write

    async def _write_loop(self) -> None:
        while True:
            pending = await self._ready.get()
            self._writing = True
            t0 = time.monotonic()
            await self._write_durably(pending)
            st = self.stats
            st.batch_latency_sum_s += time.monotonic() - t0
            # every PUBACK of the batch in one socket write, only now that it is stored
            acked, stale = self.sub.ack_many(pending.deliveries)
            st.acked += acked
            st.last_ack_at = time.time()
            st.stale_acks += stale
            self._confirm(pending)
            self._held -= len(pending.deliveries)
            self._writing = False
            st.batches += 1
            st.readings += pending.readings
            st.points += len(pending.lines)
            if pending.newest_sent_at:
                st.lag_s = max(0.0, time.time() - pending.newest_sent_at / 1000)
            st.inflight_batches = self._ready.qsize()

    def _confirm(self, pending: _Pending) -> None:
        """Tell each gateway which of its batches are now in the database (end to end)."""
        by_gw: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(pending.seqs):
            if key is not None and i not in pending.unstored:
                by_gw.setdefault((key[0], key[1]), []).append(key[2])
        for (site, gw), seqs in by_gw.items():
            if self.sub.publish(wire.ack_topic(site, gw), wire.encode_ack(seqs)):
                self.stats.e2e_acks += len(seqs)

    async def _write_retrying(self, lines: list[str],
                              touched: dict[str, dict[tch.Key, tch.Span]] | None = None
                              ) -> None:
        """Write; on a retryable failure back off and try again, forever.

        The ``energy_touched`` markers are stamped at each attempt and written in the same
        request as the readings: a write that succeeds after an outage is marked when it
        was stored, so the roll-ups, which read markers by time, cannot miss it.
        """
        delay = self.settings.retry_initial_s
        while True:
            try:
                marks = tch.marker_lines(touched, self.worker, self._stamp,
                                         int(time.time() * 1000)) if touched else []
                await self.writer.write(lines + marks if marks else lines)
                return
            except SinkError as exc:
                if not exc.retryable:
                    raise
                self.stats.write_retries += 1
                log.warning("event=write_retry lines=%d delay_s=%.1f error=%r",
                            len(lines), delay, str(exc)[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_s)

    async def _write_durably(self, pending: _Pending) -> None:
        try:
            await self._write_retrying(pending.lines, pending.touched)
            return
        except SinkError as exc:
            self.stats.write_failures += 1
            log.error("event=write_refused lines=%d messages=%d error=%r splitting=per_message",
                      len(pending.lines), len(pending.deliveries), str(exc)[:300])
        for d, (a, b), mine in zip(pending.deliveries, pending.spans, pending.touched_each,
                                   strict=True):
            try:
                await self._write_retrying(pending.lines[a:b], mine)
                continue
            except SinkError as exc:
                detail = str(exc)
            site, gateway = "", ""
            with contextlib.suppress(WireError):
                site, gateway, _ = wire.parse_topic(d.topic)
            rec = self.processor.rejected(reason=DB_REFUSED, detail=detail, payload=d.payload,
                                          topic=d.topic, site=site, gateway=gateway,
                                          now_ms=int(time.time() * 1000))
            self.stats.rejected[DB_REFUSED] += 1
            try:
                await self._write_retrying([rec])
            except SinkError as exc2:
                # cannot even say why: log enough to find the payload, then move on
                self.stats.unstorable += 1
                pending.unstored.add(pending.deliveries.index(d))
                log.error("event=unstorable topic=%r sha256=%s error=%r", d.topic[:200],
                          payload_hash(d.payload), str(exc2)[:200])

    # ------------------------------------------------------------------ periodic

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval_s)
            self.stats.queue_depth = self.sub.queued
            self.stats.stale_acks = self.sub.stale_acks
            st = self.stats
            log.info("event=ingest_stats worker=%s messages=%d readings=%d acked=%d rejected=%d "
                     "retries=%d queue=%d lag_s=%.1f", self.worker, st.messages, st.readings,
                     st.acked, sum(st.rejected.values()), st.write_retries, st.queue_depth,
                     st.lag_s)
            ln = stats_line(st, worker=self.worker, ts_ms=int(time.time() * 1000))
            try:
                await self.writer.write([ln])
            except SinkError as exc:  # self-metrics are best effort; telemetry is not
                log.info("event=stats_not_written error=%r", str(exc)[:200])

    async def _completeness_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.completeness_interval_s)
            today = dt.datetime.now(dt.UTC)
            day = day_of(int(today.timestamp() * 1000), self.settings.day_tz)
            for d in (day - dt.timedelta(days=1), day):
                try:
                    await self.update_completeness(d, current=(d == day))
                except SinkError as exc:
                    log.info("event=completeness_skipped day=%s error=%r", d, str(exc)[:200])

    async def update_completeness(self, day: dt.date, *, current: bool = True) -> int:
        """Recompute and store one day's completeness; returns the gateways covered."""
        assert self.query is not None
        lines = await compute_completeness_lines(self.query, day, self.settings.day_tz)
        if lines:
            await self.writer.write([ln for ln, _ in lines])
        if current:
            for _, (key, c) in lines:
                self.stats.completeness[key] = c.ratio
                self.stats.seq_gaps[key] = c.gaps
                self.stats.seq_duplicates[key] = c.duplicates
        return len(lines)


async def compute_completeness_lines(
    query: InfluxQL, day: dt.date, tz: str = "UTC",
) -> list[tuple[str, tuple[tuple[str, str], DayCompleteness]]]:
    """``completeness`` points for every gateway seen on ``day`` (server-side aggregates)."""
    start, end = day_bounds(day, tz)
    pstart, _ = day_bounds(day - dt.timedelta(days=1), tz)
    where = f"time >= {start}ms AND time < {end}ms"
    agg: dict[tuple[str, str], dict[str, int]] = {}
    for q in (f'SELECT count("seq") AS n, min("seq") AS lo, max("seq") AS hi FROM ingest_batch '
              f"WHERE {where} GROUP BY site, gateway",
              f'SELECT count(distinct("seq")) AS d FROM ingest_batch WHERE {where} '
              "GROUP BY site, gateway",
              f'SELECT max("seq") AS prev FROM ingest_batch '
              f"WHERE time >= {pstart}ms AND time < {start}ms GROUP BY site, gateway"):
        for row in await query.rows(q):
            key = (str(row.get("site", "")), str(row.get("gateway", "")))
            slot = agg.setdefault(key, {})
            for k in ("n", "lo", "hi", "d", "prev"):
                if row.get(k) is not None:
                    slot[k] = int(row[k])
    out: list[tuple[str, tuple[tuple[str, str], DayCompleteness]]] = []
    for key, a in sorted(agg.items()):
        if "n" not in a:
            continue  # only the previous day had data
        c = completeness(SeqAggregate(a["n"], a.get("d", a["n"]), a["lo"], a["hi"]), a.get("prev"))
        ln = line("completeness", {"site": key[0], "gateway": key[1]}, {
            "expected": c.expected, "received": c.received, "gaps": c.gaps,
            "duplicates": c.duplicates, "ratio": c.ratio, "first_seq": c.first_seq,
            "last_seq": c.last_seq, "day": day.isoformat(), "tz": tz,
        }, start)
        out.append((ln, (key, c)))
    return out
