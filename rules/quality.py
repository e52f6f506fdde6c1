"""Data-quality detectors: pure checks over what a meter sent (or did not send).

Inspectors trust a number only if they can see what is missing or doubtful, so
each detector returns a :class:`Finding` (or ``None``) with the evidence in it,
and the rule engine turns findings into alerts with the usual lifecycle.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from energy import accounting

Check = Literal["meter_offline", "gateway_offline", "flatline", "counter_backwards",
                "implausible_jump", "completeness"]


@dataclass(frozen=True, slots=True)
class Finding:
    check: Check
    summary: str
    value: float = 0.0
    evidence: dict[str, float] = field(default_factory=dict)


def meter_offline(last_seen_ms: int | None, now_ms: int, timeout_ms: int) -> Finding | None:
    """No reading for longer than ``timeout_ms`` (or never)."""
    if last_seen_ms is None:
        return Finding("meter_offline", "no reading ever received", float("inf"))
    silent = now_ms - last_seen_ms
    if silent > timeout_ms:
        return Finding("meter_offline", f"no reading for {silent / 1000:.0f} s",
                       silent / 1000, {"last_seen_ms": float(last_seen_ms)})
    return None


def gateway_offline(state: str | None, since_ms: int | None, now_ms: int, grace_ms: int = 0
                    ) -> Finding | None:
    """The gateway's retained status says offline (its LWT fired) for longer than ``grace_ms``."""
    if state != "offline" or since_ms is None:
        return None
    if now_ms - since_ms >= grace_ms:
        return Finding("gateway_offline", f"gateway offline for {(now_ms - since_ms) / 1000:.0f} s",
                       (now_ms - since_ms) / 1000, {"since_ms": float(since_ms)})
    return None


def flatline(samples: Sequence[tuple[int, float]], *, min_duration_ms: int, min_samples: int = 3,
             epsilon: float = 0.0) -> Finding | None:
    """A gauge stuck at one value (within ``epsilon``) for at least ``min_duration_ms``.

    Looks at the trailing run only: a value that moved since is not stuck now.
    """
    if len(samples) < min_samples:
        return None
    pts = sorted(samples)
    last_ts, last_v = pts[-1]
    run_start = last_ts
    n = 0
    for ts, v in reversed(pts):
        if abs(v - last_v) > epsilon:
            break
        run_start = ts
        n += 1
    dur = last_ts - run_start
    if n >= min_samples and dur >= min_duration_ms:
        return Finding("flatline",
                       f"value stuck at {last_v:g} for {dur / 1000:.0f} s ({n} samples)",
                       last_v, {"since_ms": float(run_start), "samples": float(n)})
    return None


#: Edge flags (``gateway/validation.py``) that explain a decrease. ``counter_rollover``:
#: the gateway saw the register wrap at its capacity. ``counter_reset`` is *not* one: it is
#: the gateway saying "it went down and it was no wrap" (a reset or a swap look the same
#: on the wire), exactly what this check is for unless the site file records the swap.
EXPLAINING_FLAGS = frozenset({"counter_rollover"})


def counter_step(t0: int, v0: float, t1: int, v1: float, *, flag: str | None = None,
                 rollover_at: float | None = None,
                 replacements: Sequence[accounting.Replacement] = (),
                 jitter: float = 0.0) -> accounting.Interval:
    """What the step between two readings of a counter was, as the roll-ups count it.

    The same ``energy.accounting.intervals`` that computes consumption classifies the
    step (normal, jitter, rollover at ``rollover_at``, a recorded replacement, or an
    unexplained reset), so an alert never calls "reset" what a report counts as a
    rollover. A rollover flagged by the gateway is taken as one even when the site
    file gives no ``rollover_at`` (the gateway knows the register's capacity).
    """
    if v1 >= v0 and not replacements:  # the common case, kept cheap: every counter sample
        return accounting.Interval(t0, t1, v1 - v0, "normal")
    iv = accounting.intervals([(t0, v0), (t1, v1)], rollover_at=rollover_at,
                              replacements=replacements, jitter=jitter)[0]
    if iv.kind == "reset" and flag in EXPLAINING_FLAGS:
        return accounting.Interval(iv.start, iv.end, iv.amount, "rollover")
    return iv


def counter_backwards(samples: Sequence[tuple[int, float]], *, jitter: float = 0.0,
                      rollover_at: float | None = None,
                      replacements: Sequence[accounting.Replacement] = (),
                      flags: Mapping[int, str] | None = None) -> Finding | None:
    """A cumulative counter decreased by more than ``jitter`` and nothing explains it.

    Explained, so no finding: a wrap at the meter's ``rollover_at``, a swap recorded in
    the site file (``replacements``) between the two readings, or a reading the gateway
    flagged ``counter_rollover`` (``flags``: reading ts → edge flag of this counter).
    """
    pts = sorted(samples)
    flags = flags or {}
    for (t0, v0), (t1, v1) in itertools.pairwise(pts):
        if v0 - v1 <= jitter:
            continue
        step = counter_step(t0, v0, t1, v1, flag=flags.get(t1), rollover_at=rollover_at,
                            replacements=replacements, jitter=jitter)
        if step.kind == "reset":
            return Finding("counter_backwards", f"counter went from {v0:g} to {v1:g}",
                           v1 - v0, {"ts_ms": float(t1), "before": v0, "after": v1})
    return None


def implausible_jump(samples: Sequence[tuple[int, float]], *, max_rate_per_h: float
                     ) -> Finding | None:
    """A counter rising faster than the meter's circuit can deliver (kWh/h > rated kW, etc.)."""
    pts = sorted(samples)
    for (t0, v0), (t1, v1) in itertools.pairwise(pts):
        hours = (t1 - t0) / 3_600_000
        if hours <= 0:
            continue
        rate = (v1 - v0) / hours
        if rate > max_rate_per_h:
            return Finding("implausible_jump",
                           f"counter rose {v1 - v0:g} in {hours * 60:.1f} min "
                           f"({rate:g}/h > {max_rate_per_h:g}/h)",
                           rate, {"ts_ms": float(t1), "before": v0, "after": v1})
    return None


def completeness(received: int, *, window_ms: int, interval_ms: int, target: float
                 ) -> Finding | None:
    """Share of expected readings received in a window below ``target`` (0..1).

    The expected count is window ÷ poll interval. The NDRC upload-rate definitions
    were not found (standards.md), so the target is configuration, not a standard.
    """
    from energy.figures import meter_completeness

    c = meter_completeness(received, 0, window_ms, interval_ms / 1000)
    expected = max(1, c.expected)
    ratio = c.ratio if c.ratio is not None else min(1.0, float(received))
    if ratio < target:
        return Finding("completeness",
                       f"{received}/{expected} readings ({ratio:.1%} < {target:.0%})",
                       ratio, {"received": float(received), "expected": float(expected)})
    return None
