"""Tuning sections of the ingest config file (``batch``, ``timestamps``, ``metrics``).

Kept apart from ``ingest/config.py`` so the pipeline can be configured in tests
and benchmarks without a YAML file. Defaults are what one worker on a small box
wants; each knob says what it trades.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from enmon.config import StrictModel
from ingest.pipeline import PipelineSettings, TimeLimits


class BatchConfig(StrictModel):
    """How messages are grouped into writes and how failed writes are retried."""

    # 2500: as fast as 5000 on a draining backlog (writes overlap decoding better) with
    # ~10 MB less peak memory (bench/ingest_throughput.py)
    max_lines: Annotated[int, Field(ge=1, le=1_000_000)] = 2500
    max_wait_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    max_inflight_batches: Annotated[int, Field(ge=1, le=64)] = 2
    # Receive Maximum: unacked messages the broker may have in flight to this worker;
    # bounds memory (about this many payloads) whatever the database does
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 1000
    retry_initial_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    retry_max_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    # on SIGTERM, time for built batches to be written and acked (fewer redeliveries)
    shutdown_grace_s: Annotated[float, Field(ge=0, le=300)] = 10.0


class TimestampConfig(StrictModel):
    """When a reading's time is doubtful (stored, flagged) or impossible (refused)."""

    future_flag_s: Annotated[float, Field(ge=0)] = 300.0
    future_reject_s: Annotated[float, Field(ge=0)] = 86_400.0
    past_flag_s: Annotated[float, Field(ge=0)] = 7 * 86_400.0


class MetricsConfig(StrictModel):
    """Self-metrics: Prometheus ``/metrics`` (port 0 = off) and ``ingest_stats`` points."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    stats_interval_s: Annotated[float, Field(gt=0)] = 10.0
    completeness_interval_s: Annotated[float, Field(ge=0)] = 300.0
    # the "day" of the per-gateway completeness figure, e.g. Asia/Shanghai
    day_tz: str = "UTC"


def pipeline_settings(batch: BatchConfig, metrics: MetricsConfig) -> PipelineSettings:
    return PipelineSettings(
        max_lines=batch.max_lines, max_wait_s=batch.max_wait_s,
        max_inflight_batches=batch.max_inflight_batches,
        retry_initial_s=batch.retry_initial_s, retry_max_s=batch.retry_max_s,
        stats_interval_s=metrics.stats_interval_s,
        completeness_interval_s=metrics.completeness_interval_s, day_tz=metrics.day_tz,
        shutdown_grace_s=batch.shutdown_grace_s)


def time_limits(ts: TimestampConfig) -> TimeLimits:
    return TimeLimits(future_flag_s=ts.future_flag_s, future_reject_s=ts.future_reject_s,
                      past_flag_s=ts.past_flag_s)
