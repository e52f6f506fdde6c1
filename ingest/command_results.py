"""Command results → the ``command`` measurement: every device write and time sync, done or
refused, on the record beside the readings it may have changed.

A gateway answers every signed command on ``enmon/v1/{site}/{gateway}/command/result``
(``gateway.commands``; the kinds and fields are in gateway/README.md)::

    {"v": 1, "id": "9f1c…", "site": "hosp-a", "gateway": "gw-01", "device": "main",
     "action": "write", "target": "demand_period_min", "value": "15", "status": "ok",
     "reason": "", "detail": "", "ts": 1764700000123, "seq": 42,
     "issued_at": 1764700000, "key_id": "ops-1", "readback": 15.0, "registers": [15]}

Ingest stores it as one point: tags ``site``, ``gateway``, ``device``, ``outcome`` (the
status: ok / refused / failed) and ``slot``; fields ``command_id``, ``action``, ``target``,
``value``, ``reason``, ``detail``, ``seq`` and, where the result carries them,
``issued_at`` and ``key_id`` (who signed the command, when), ``readback``, ``registers``
or ``coils`` (``"16752,0"``, ``"1,0,1"``), ``clock_before``, ``clock``,
``offset_before_s``, ``offset_s`` (a time sync); time = the result's own ``ts``.

Why a ``slot`` tag. A point is identified by its series (measurement + tags) and its time,
and ingest writes every point at millisecond precision (``enmon.influx``), so two results
of one device with the same outcome in the same millisecond would be one point, the second
overwriting the first — an answer lost from the record. The remedies considered:

* the time at nanosecond resolution: not on this write path (one precision per write
  request, milliseconds for the readings), and a clock's nanoseconds still collide;
* the command id as a tag: every command a new series, for ever — unbounded cardinality,
  which InfluxDB 1.x pays for in index memory on every series;
* a bounded tie-breaker: ``slot`` = the gateway's answer number ``seq`` modulo
  :data:`SLOTS`. The gateway numbers its answers consecutively and never gives two the
  same millisecond (``ts`` strictly increasing), so two distinct results of one gateway
  differ in time or — for fewer than :data:`SLOTS` answers in one millisecond from any
  gateway that sends ``seq`` — in slot, while a redelivered result has the same ``seq``
  and ``ts`` and overwrites itself: stored once, as the design's idempotent writes ask.
  At most :data:`SLOTS` series per site, gateway, device and outcome.

A result without ``seq`` (a gateway from before it) takes its slot from its command id's
CRC-32, so two such results in one millisecond collide only 1 time in :data:`SLOTS`.
A result that breaks any rule below is refused like a bad telemetry batch (a ``rejected``
point with the reason).

Pure: no I/O; ingest imports nothing from the gateway, so the result's shape is checked
here against the same patterns the gateway uses.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Any

from enmon import wire
from enmon.errors import WireError
from enmon.lineproto import line

RESULT_SUFFIX = "/command/result"
RESULT_FILTER = f"{wire.TOPIC_ROOT}/+/+/command/result"
MEASUREMENT = "command"
MAX_RESULT_BYTES = 8192  # a result is a few hundred bytes; the gateway's own command limit
OUTCOMES = frozenset({"ok", "refused", "failed"})
ACTIONS = frozenset({"write", "time_sync"})
#: tie-breaker series per site/gateway/device/outcome (see the module docstring)
SLOTS = 16

_ID = re.compile(rf"\A{wire.ID_PATTERN}\Z")
_NONCE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")
_TARGET = re.compile(r"\A[a-z][a-z0-9_]{0,63}\Z")
_VALUE = re.compile(r"\A(?:-?[0-9]{1,18}(?:\.[0-9]{1,12})?|on|off|now)\Z")
_CLOCK = re.compile(r"\A20[0-9]{2}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]\Z")
_REASON = re.compile(r"\A(?:[a-z][a-z0-9_]{0,63})?\Z")
_TOPIC = re.compile(rf"\A{wire.TOPIC_ROOT}/({wire.ID_PATTERN})/({wire.ID_PATTERN})"
                    rf"{RESULT_SUFFIX}\Z")


def is_result_topic(topic: str) -> bool:
    """Whether a delivery is a command result (cheap: the telemetry path never asks)."""
    return topic.endswith(RESULT_SUFFIX)


def result_line(payload: bytes, topic: str, *, now_ms: int, future_reject_s: float
                ) -> tuple[str, str, str]:
    """The ``command`` point of one result, with the topic's site and gateway.

    Raises:
        WireError: the result is refused (reason and detail for its ``rejected`` record).
    """
    m = _TOPIC.match(topic)
    if m is None:
        raise WireError(wire.Reason.BAD_TOPIC,
                        f"topic {topic!r} is not enmon/v1/{{site}}/{{gateway}}/command/result")
    site, gateway = m.group(1), m.group(2)
    if gateway in wire.RESERVED_GATEWAY_IDS:  # enmon/v1/{site}/alerts/… is the rule engine's
        raise WireError(wire.Reason.BAD_ID, f"gateway id {gateway!r} is reserved")
    if len(payload) > MAX_RESULT_BYTES:
        raise WireError(wire.Reason.TOO_LARGE,
                        f"{len(payload)} bytes, a result is at most {MAX_RESULT_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WireError(wire.Reason.NOT_UTF8, str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise WireError(wire.Reason.BAD_JSON, str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise WireError(wire.Reason.NOT_OBJECT, "a result is a JSON object")
    if obj.get("v") != 1 or isinstance(obj.get("v"), bool):
        raise WireError(wire.Reason.BAD_VERSION, f"v must be 1, not {obj.get('v')!r}")
    for k in ("site", "gateway", "status", "ts"):
        if k not in obj:
            raise WireError(wire.Reason.MISSING_FIELD, f"{k} is missing")
    if not isinstance(obj["site"], str) or not _ID.match(obj["site"]) \
            or not isinstance(obj["gateway"], str) or not _ID.match(obj["gateway"]):
        raise WireError(wire.Reason.BAD_ID, "site and gateway must be IDs")
    if (obj["site"], obj["gateway"]) != (site, gateway):
        raise WireError(wire.Reason.TOPIC_MISMATCH,
                        f"payload is {obj['site']}/{obj['gateway']}, topic {site}/{gateway}")
    status = obj["status"]
    if status not in OUTCOMES:
        raise WireError(wire.Reason.BAD_TYPE, f"status must be one of {sorted(OUTCOMES)}")
    ts = obj["ts"]
    if not isinstance(ts, int) or isinstance(ts, bool) \
            or not wire.MIN_TS_MS <= ts <= now_ms + future_reject_s * 1000:
        raise WireError(wire.Reason.TS_OUT_OF_RANGE,
                        f"ts {wire.safe_text(ts, 40)} is not epoch ms within range")
    device = _optional(obj, "device", _ID)
    command_id = _optional(obj, "id", _NONCE)
    action = obj.get("action")
    if action is not None and action not in ACTIONS:
        raise WireError(wire.Reason.BAD_TYPE, f"action must be one of {sorted(ACTIONS)}")
    fields: dict[str, float | int | str | bool] = {
        "command_id": command_id,
        "action": action or "",
        "target": _optional(obj, "target", _TARGET),
        "value": _optional(obj, "value", _VALUE),
        "reason": _optional(obj, "reason", _REASON),
        "detail": _detail(obj.get("detail")),
    }
    seq = obj.get("seq")
    if seq is not None:
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
            raise WireError(wire.Reason.BAD_TYPE, "seq must be a non-negative integer")
        fields["seq"] = seq
    for name in ("readback", "offset_before_s", "offset_s"):
        number = obj.get(name)
        if number is not None:
            if not isinstance(number, int | float) or isinstance(number, bool) \
                    or not math.isfinite(number) or abs(number) > wire.MAX_ABS_VALUE:
                raise WireError(wire.Reason.BAD_TYPE, f"{name} must be a finite number")
            fields[name] = float(number)
    registers = obj.get("registers")
    if registers is not None:
        if not isinstance(registers, list) or len(registers) > 64 or not all(
                isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= 0xFFFF
                for w in registers):
            raise WireError(wire.Reason.BAD_TYPE, "registers must be a list of 16-bit words")
        fields["registers"] = ",".join(str(w) for w in registers)
    coils = obj.get("coils")
    if coils is not None:
        if not isinstance(coils, list) or len(coils) > 64 or not all(
                isinstance(b, int) and not isinstance(b, bool) and b in (0, 1) for b in coils):
            raise WireError(wire.Reason.BAD_TYPE, "coils must be a list of 0/1")
        fields["coils"] = ",".join(str(b) for b in coils)
    for name in ("clock_before", "clock"):
        text = obj.get(name)
        if text is not None:
            if not isinstance(text, str) or not _CLOCK.match(text):
                raise WireError(wire.Reason.BAD_TYPE,
                                f"{name} must be a meter's local time YYYY-MM-DD hh:mm:ss")
            fields[name] = text
    issued = obj.get("issued_at")
    if issued is not None:
        if not isinstance(issued, int) or isinstance(issued, bool) or not 0 <= issued < 2**40:
            raise WireError(wire.Reason.BAD_TYPE, "issued_at must be Unix seconds")
        fields["issued_at"] = issued
    key_id = _optional(obj, "key_id", _ID)
    if key_id:
        fields["key_id"] = key_id
    tags = {"site": site, "gateway": gateway, "device": device, "outcome": status,
            "slot": _slot(seq, command_id)}
    return line(MEASUREMENT, tags, fields, ts), site, gateway


def _slot(seq: int | None, command_id: str) -> str:
    """The tie-breaker tag (see the module docstring): ``seq`` mod :data:`SLOTS`, else the
    command id's CRC-32 mod :data:`SLOTS`, else none (one result per millisecond then)."""
    if seq is not None:
        return str(seq % SLOTS)
    if command_id:
        return str(zlib.crc32(command_id.encode()) % SLOTS)
    return ""


def _optional(obj: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    """A field that may be absent or null ("" then), else must match its pattern."""
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str) or not pattern.match(v):
        raise WireError(wire.Reason.BAD_ID if pattern is _ID else wire.Reason.BAD_TYPE,
                        f"{key} {wire.safe_text(v, 80)} is not of the form {pattern.pattern}")
    return v


def _detail(v: object) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise WireError(wire.Reason.BAD_TYPE, "detail must be a string")
    return wire.safe_text(v, 300)


def topic_ids(topic: str) -> tuple[str, str]:
    """The site and gateway of a result topic, ("", "") if it is not one (for ``rejected``)."""
    m = _TOPIC.match(topic)
    return (m.group(1), m.group(2)) if m else ("", "")
