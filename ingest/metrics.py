"""Self-metrics of an ingest worker: Prometheus text on ``/metrics`` and ``ingest_stats`` points.

The counters live in one plain object that the pipeline bumps without locks (one
asyncio thread); rendering is pure so it is tested without a server. The
exposition format is small enough that a dependency (prometheus_client) would be
more code to configure than this.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from enmon.lineproto import line


@dataclass
class Stats:
    """Everything an operator greps for when ingest looks wrong."""

    messages: int = 0  # MQTT messages taken off the queue
    redeliveries: int = 0  # of which the broker marked DUP (resent after a crash/reconnect)
    readings: int = 0  # values written into ``meter``
    points: int = 0  # lines written (all measurements)
    batches: int = 0  # successful writes
    rejected: Counter[str] = field(default_factory=Counter)  # by reason (messages and values)
    ts_flagged: Counter[str] = field(default_factory=Counter)  # by flag (clock_ahead, late)
    write_retries: int = 0
    write_failures: int = 0  # non-retryable refusals that forced a per-message split
    unstorable: int = 0  # messages InfluxDB refused even as a ``rejected`` record
    processing_errors: int = 0  # payloads that raised inside processing (quarantined)
    e2e_acks: int = 0  # batches confirmed stored to their gateway (end-to-end acks)
    acked: int = 0
    last_ack_at: float = 0.0  # unix time of the latest acknowledgement (0: none yet)
    stale_acks: int = 0
    batch_latency_sum_s: float = 0.0
    lag_s: float = 0.0  # now - sent_at of the newest acked batch
    queue_depth: int = 0  # deliveries waiting in the MQTT queue
    inflight_batches: int = 0
    completeness: dict[tuple[str, str], float] = field(default_factory=dict)
    seq_gaps: dict[tuple[str, str], int] = field(default_factory=dict)
    seq_duplicates: dict[tuple[str, str], int] = field(default_factory=dict)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(s: Stats, *, worker: str) -> str:
    """Prometheus text exposition 0.0.4."""
    w = f'worker="{_esc(worker)}"'
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = w + ("," + labels if labels else "")
            out.append(f"{name}{{{lab}}} {value!r}" if isinstance(value, float)
                       else f"{name}{{{lab}}} {value}")

    metric("enmon_ingest_messages_total", "counter", "MQTT messages processed",
           [("", s.messages)])
    metric("enmon_ingest_redeliveries_total", "counter", "messages the broker resent (DUP)",
           [("", s.redeliveries)])
    metric("enmon_ingest_readings_total", "counter", "values written to meter",
           [("", s.readings)])
    metric("enmon_ingest_points_total", "counter", "line-protocol points written",
           [("", s.points)])
    metric("enmon_ingest_batches_total", "counter", "successful database writes",
           [("", s.batches)])
    metric("enmon_ingest_rejected_total", "counter", "messages or values refused, by reason",
           [(f'reason="{_esc(r)}"', n) for r, n in sorted(s.rejected.items())])
    metric("enmon_ingest_ts_flagged_total", "counter", "readings stored with a clock flag",
           [(f'flag="{_esc(f)}"', n) for f, n in sorted(s.ts_flagged.items())])
    metric("enmon_ingest_write_retries_total", "counter", "writes retried (database down/slow)",
           [("", s.write_retries)])
    metric("enmon_ingest_write_refusals_total", "counter", "batches the database refused as bad",
           [("", s.write_failures)])
    metric("enmon_ingest_unstorable_total", "counter", "messages not even storable as rejected",
           [("", s.unstorable)])
    metric("enmon_ingest_processing_errors_total", "counter",
           "payloads that raised inside processing (quarantined in rejected, acked)",
           [("", s.processing_errors)])
    metric("enmon_ingest_acked_total", "counter", "messages acknowledged to the broker",
           [("", s.acked)])
    metric("enmon_ingest_last_ack_timestamp_seconds", "gauge",
           "unix time of the latest acknowledgement (alert when it stops moving under load)",
           [("", s.last_ack_at)])
    metric("enmon_ingest_batch_latency_seconds_sum", "counter", "time spent in writes",
           [("", s.batch_latency_sum_s)])
    metric("enmon_ingest_lag_seconds", "gauge", "now minus sent_at of the newest stored batch",
           [("", s.lag_s)])
    metric("enmon_ingest_queue_depth", "gauge", "messages received, not yet batched",
           [("", s.queue_depth)])
    metric("enmon_ingest_inflight_batches", "gauge", "batches built, not yet acknowledged",
           [("", s.inflight_batches)])
    metric("enmon_ingest_completeness_ratio", "gauge",
           "today's received/expected batches per gateway (from stored seq)",
           [(f'site="{_esc(a)}",gateway="{_esc(b)}"', v)
            for (a, b), v in sorted(s.completeness.items())])
    metric("enmon_ingest_seq_gaps", "gauge", "today's missing seq per gateway",
           [(f'site="{_esc(a)}",gateway="{_esc(b)}"', v)
            for (a, b), v in sorted(s.seq_gaps.items())])
    metric("enmon_ingest_seq_duplicates", "gauge", "today's duplicated seq per gateway",
           [(f'site="{_esc(a)}",gateway="{_esc(b)}"', v)
            for (a, b), v in sorted(s.seq_duplicates.items())])
    return "\n".join(out) + "\n"


def stats_line(s: Stats, *, worker: str, ts_ms: int) -> str:
    """One ``ingest_stats`` point: totals (rates are derivatives of these in queries)."""
    fields: dict[str, float | int | str | bool] = {
        "messages": s.messages,
        "redeliveries": s.redeliveries,
        "readings": s.readings,
        "points": s.points,
        "batches": s.batches,
        "rejected": sum(s.rejected.values()),
        "ts_flagged": sum(s.ts_flagged.values()),
        "write_retries": s.write_retries,
        "write_refusals": s.write_failures,
        "unstorable": s.unstorable,
        "processing_errors": s.processing_errors,
        "e2e_acks": s.e2e_acks,
        "acked": s.acked,
        "batch_latency_sum_s": s.batch_latency_sum_s,
        "lag_s": s.lag_s,
        "queue_depth": s.queue_depth,
        "inflight_batches": s.inflight_batches,
    }
    return line("ingest_stats", {"worker": worker}, fields, ts_ms)
