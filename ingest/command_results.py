"""Command results → the ``command`` measurement: every device write, done or refused, on
the record beside the readings it may have changed.

A gateway answers every signed command on ``enmon/v1/{site}/{gateway}/command/result``
(``gateway.commands``)::

    {"v": 1, "id": "9f1c…", "site": "hosp-a", "gateway": "gw-01", "device": "main",
     "target": "demand_period_min", "value": "15", "status": "ok", "reason": "",
     "detail": "", "ts": 1764700000123, "readback": 15.0, "registers": [15]}

Ingest stores it as one point: tags ``site``, ``gateway``, ``device``, ``outcome`` (the
status: ok / refused / failed); fields ``command_id``, ``target``, ``value``, ``reason``,
``detail`` and, where the result carries them, ``readback``, ``registers``, ``issued_at``,
``key_id``; time = the result's own ``ts``. A redelivered result has the same tags and
time, so it overwrites its point: stored once. A result that breaks any rule below is
refused like a bad telemetry batch (a ``rejected`` point with the reason).

Pure: no I/O; ingest imports nothing from the gateway, so the result's shape is checked
here against the same patterns the gateway uses.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from enmon import wire
from enmon.errors import WireError
from enmon.lineproto import line

RESULT_SUFFIX = "/command/result"
RESULT_FILTER = f"{wire.TOPIC_ROOT}/+/+/command/result"
MEASUREMENT = "command"
MAX_RESULT_BYTES = 8192  # a result is a few hundred bytes; the gateway's own command limit
OUTCOMES = frozenset({"ok", "refused", "failed"})

_ID = re.compile(rf"\A{wire.ID_PATTERN}\Z")
_NONCE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")
_TARGET = re.compile(r"\A[a-z][a-z0-9_]{0,63}\Z")
_VALUE = re.compile(r"\A-?[0-9]{1,18}(\.[0-9]{1,12})?\Z")
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
    fields: dict[str, float | int | str | bool] = {
        "command_id": _optional(obj, "id", _NONCE),
        "target": _optional(obj, "target", _TARGET),
        "value": _optional(obj, "value", _VALUE),
        "reason": _optional(obj, "reason", _REASON),
        "detail": _detail(obj.get("detail")),
    }
    readback = obj.get("readback")
    if readback is not None:
        if not isinstance(readback, int | float) or isinstance(readback, bool) \
                or not math.isfinite(readback) or abs(readback) > wire.MAX_ABS_VALUE:
            raise WireError(wire.Reason.BAD_TYPE, "readback must be a finite number")
        fields["readback"] = float(readback)
    registers = obj.get("registers")
    if registers is not None:
        if not isinstance(registers, list) or len(registers) > 64 or not all(
                isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= 0xFFFF
                for w in registers):
            raise WireError(wire.Reason.BAD_TYPE, "registers must be a list of 16-bit words")
        fields["registers"] = ",".join(str(w) for w in registers)
    issued = obj.get("issued_at")
    if issued is not None:
        if not isinstance(issued, int) or isinstance(issued, bool) or not 0 <= issued < 2**40:
            raise WireError(wire.Reason.BAD_TYPE, "issued_at must be Unix seconds")
        fields["issued_at"] = issued
    key_id = _optional(obj, "key_id", _ID)
    if key_id:
        fields["key_id"] = key_id
    tags = {"site": site, "gateway": gateway, "device": device, "outcome": status}
    return line(MEASUREMENT, tags, fields, ts), site, gateway


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
