"""Data completeness per gateway and day, from the ``seq`` numbers gateways put on batches.

Pure functions, no I/O. Each accepted message leaves one ``ingest_batch`` point
(tags site/gateway, time = the batch's ``sent_at``, field ``seq``). Because any
of N workers may have received any batch, no single worker can see the sequence;
the figures are therefore computed from what is *stored*, with server-side
aggregates (count, distinct count, min, max of ``seq`` per gateway and day), so
every worker that runs the computation writes the same answer and the
``completeness`` point is idempotent like everything else.

Definitions (for inspectors; stated in ingest/README.md):

* ``expected`` — batches the gateway must have sent that day: from the one after
  the previous day's highest ``seq`` (or the day's lowest, if the day before is
  unknown or overlaps) to the day's highest ``seq``.
* ``received`` — distinct ``seq`` values stored.
* ``gaps`` — ``expected - received``: batches that never arrived (yet).
* ``duplicates`` — batches stored under a ``seq`` that another, different
  batch already had (a gateway that resent with a new ``sent_at``). An MQTT
  redelivery of the *same* message overwrites its point and is not a duplicate.
* ``ratio`` — ``received / expected``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class SeqAggregate:
    """What the database answers for one gateway and one day."""

    count: int  # stored ingest_batch points
    distinct: int  # distinct seq among them
    min_seq: int
    max_seq: int


@dataclass(frozen=True, slots=True)
class DayCompleteness:
    expected: int
    received: int
    gaps: int
    duplicates: int
    ratio: float
    first_seq: int
    last_seq: int


def completeness(day: SeqAggregate, prev_max_seq: int | None = None) -> DayCompleteness:
    """Turn one day's aggregate into the completeness figure.

    ``prev_max_seq`` continues the sequence from the previous day, so a gap that
    straddles midnight is charged to the day it ends in instead of vanishing.
    """
    if day.count <= 0 or day.distinct <= 0:
        return DayCompleteness(0, 0, 0, 0, 0.0, 0, 0)
    first = day.min_seq
    if prev_max_seq is not None and prev_max_seq < day.min_seq:
        first = prev_max_seq + 1
    expected = day.max_seq - first + 1
    received = day.distinct
    # a seq that went backwards (gateway state lost) makes max-min meaningless; never
    # report more received than expected
    expected = max(expected, received)
    return DayCompleteness(
        expected=expected,
        received=received,
        gaps=expected - received,
        duplicates=day.count - day.distinct,
        ratio=received / expected,
        first_seq=first,
        last_seq=day.max_seq,
    )


def day_bounds(day: dt.date, tz: str = "UTC") -> tuple[int, int]:
    """[start, end) of a calendar day in ``tz`` as epoch milliseconds."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def day_of(ts_ms: int, tz: str = "UTC") -> dt.date:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=ZoneInfo(tz)).date()
