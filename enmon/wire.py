"""Wire contract v1 between gateways and ingest, as code.

One module owns the contract so that the gateway that builds a batch and the
ingest worker that parses it can never disagree. ``parse_batch`` never trusts
its input: anything that breaks the contract raises :class:`WireError` with a
stable ``reason`` code (for the whole message) or is listed in
``ParsedBatch.dropped`` (for one value or sample), so ingest can store *what*
it refused and *why* in the ``rejected`` measurement.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from enmon.errors import WireError
from enmon.quantities import ENERGY_TYPES, QUANTITIES

try:  # orjson is ~40 % faster on the ingest hot path; the stdlib is enough on a gateway
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised on gateway-only installs
    _orjson = None  # type: ignore[assignment]

VERSION = 1
TOPIC_ROOT = "enmon/v1"
MAX_PAYLOAD_BYTES = 256 * 1024
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_ID = re.compile(ID_PATTERN)
_FLAG = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Readings before 2000-01-01 cannot come from a working clock.
MIN_TS_MS = 946_684_800_000
MAX_SAMPLES = 4096  # reachable under the size limit: a minimal sample is ~46 bytes
# The largest magnitude a reading may have: a 12-digit register scaled by 1000 is 1e15,
# and doubles are exact integers up to 2**53 ≈ 9e15. A 400-digit integer is not a reading.
MAX_ABS_VALUE = 1e15
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_text(value: object, limit: int = 200) -> str:
    """Any value as printable, encodable text: for logs and ``rejected`` records, which must
    be writable whatever a sender put in the field (lone surrogates, control characters)."""
    text = value if isinstance(value, str) else repr(value)
    text = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clean_text(value: str) -> bool:
    """Valid UTF-8 text (no lone surrogates) without control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not _CONTROL.search(value)


class Reason(StrEnum):
    """Why a message, sample or value was refused. Stable: stored and counted."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    NOT_OBJECT = "not_object"
    BAD_VERSION = "bad_version"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_ID = "bad_id"
    BAD_TOPIC = "bad_topic"
    TOPIC_MISMATCH = "topic_mismatch"
    TOO_MANY_SAMPLES = "too_many_samples"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_QUANTITY = "unknown_quantity"
    BAD_ENERGY_TYPE = "bad_energy_type"
    NON_FINITE = "non_finite"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    BAD_FLAG = "bad_flag"
    OUT_OF_RANGE = "out_of_range"  # a number no meter can mean (beyond ±1e15)
    BAD_TEXT = "bad_text"  # a string that is not clean UTF-8 text (lone surrogates, controls)
    DUPLICATE_SAMPLE = "duplicate_sample"  # a second sample of one device at one ts


@dataclass(frozen=True, slots=True)
class DeviceMeta:
    """What a reading is *of*: becomes the tags of the ``meter`` measurement."""

    building: str = ""
    category: str = ""
    energy_type: str = "other"
    profile: str = ""


@dataclass(slots=True)
class Sample:
    device: str
    ts: int
    values: dict[str, float]
    flags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Batch:
    site: str
    gateway: str
    seq: int
    sent_at: int
    devices: dict[str, DeviceMeta]
    samples: list[Sample]

    @property
    def topic(self) -> str:
        return telemetry_topic(self.site, self.gateway)


@dataclass(frozen=True, slots=True)
class Dropped:
    """One sample or value that was refused while the rest of the batch was kept."""

    reason: Reason
    detail: str
    device: str = ""
    ts: int = 0
    quantity: str = ""


@dataclass(slots=True)
class ParsedBatch:
    batch: Batch
    dropped: list[Dropped]


# --------------------------------------------------------------------------- topics


# ``enmon/v1/{site}/alerts/{rule}`` belongs to the rule engine: a gateway called
# "alerts" would own those topics and could forge alerts, so the id is reserved.
RESERVED_GATEWAY_IDS = frozenset({"alerts"})


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise WireError(Reason.BAD_ID, f"{kind} {value!r} must match {ID_PATTERN}")
    if kind == "gateway" and value in RESERVED_GATEWAY_IDS:
        raise WireError(Reason.BAD_ID, f"gateway id {value!r} is reserved for the alert topics")
    return value


def telemetry_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{_check_id('site', site)}/{_check_id('gateway', gateway)}/telemetry"


def status_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{_check_id('site', site)}/{_check_id('gateway', gateway)}/status"


def health_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{_check_id('site', site)}/{_check_id('gateway', gateway)}/health"


def ack_topic(site: str, gateway: str) -> str:
    """Where ingest says which of a gateway's batches are stored (only ingest publishes)."""
    return f"{TOPIC_ROOT}/{_check_id('site', site)}/{_check_id('gateway', gateway)}/ack"


def encode_ack(seqs: Iterable[int]) -> bytes:
    """``{"v":1,"stored":[[first,last],…]}``: the seqs stored in the database, as ranges.

    Explicit seqs, not "everything up to N": with several ingest workers on one shared
    subscription each stores a different subset of a gateway's batches.
    """
    ranges: list[list[int]] = []
    for s in sorted(set(seqs)):
        if ranges and ranges[-1][1] == s - 1:
            ranges[-1][1] = s
        else:
            ranges.append([s, s])
    return dumps({"v": VERSION, "stored": ranges})


def decode_ack(payload: bytes, limit: int = 1_000_000) -> set[int]:
    """The seqs of an ack message; a malformed message confirms nothing."""
    try:
        obj = loads(payload)
        out: set[int] = set()
        for first, last in obj["stored"]:
            if not (isinstance(first, int) and isinstance(last, int)) or last < first:
                continue
            if len(out) + last - first + 1 > limit:
                break
            out.update(range(first, last + 1))
        return out
    except (ValueError, TypeError, KeyError):
        return set()


def alert_topic(site: str, rule: str) -> str:
    return f"{TOPIC_ROOT}/{_check_id('site', site)}/alerts/{_check_id('rule', rule)}"


TELEMETRY_FILTER = f"{TOPIC_ROOT}/+/+/telemetry"
STATUS_FILTER = f"{TOPIC_ROOT}/+/+/status"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split ``enmon/v1/{site}/{gateway}/{kind}`` into its three parts."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise WireError(Reason.BAD_TOPIC, f"topic {topic!r} is not enmon/v1/{{site}}/{{gateway}}/…")
    _, _, site, gateway, kind = parts
    _check_id("site", site)
    _check_id("gateway", gateway)
    return site, gateway, kind


# --------------------------------------------------------------------------- encode


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (orjson where installed)."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(data: bytes | str) -> Any:
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


def batch_to_dict(batch: Batch) -> dict[str, Any]:
    return {
        "v": VERSION,
        "site": batch.site,
        "gateway": batch.gateway,
        "seq": batch.seq,
        "sent_at": batch.sent_at,
        "devices": {
            name: {
                "building": m.building,
                "category": m.category,
                "energy_type": m.energy_type,
                "profile": m.profile,
            }
            for name, m in batch.devices.items()
        },
        "samples": [
            {
                "device": s.device,
                "ts": s.ts,
                "values": s.values,
                **({"flags": s.flags} if s.flags else {}),
            }
            for s in batch.samples
        ],
    }


def encode_batch(batch: Batch) -> bytes:
    """Encode a batch, refusing what ingest would refuse (non-finite values, size)."""
    for s in batch.samples:
        for q, v in s.values.items():
            if not math.isfinite(v):
                raise WireError(
                    Reason.NON_FINITE, f"{s.device}.{q} = {v!r}: a failed read has no value"
                )
    data = dumps(batch_to_dict(batch))
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError(Reason.TOO_LARGE, f"batch is {len(data)} bytes, limit {MAX_PAYLOAD_BYTES}")
    return data


# --------------------------------------------------------------------------- parse


def _need(obj: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise WireError(Reason.MISSING_FIELD, f"{where}{key} is missing")
    value = obj[key]
    # bool is an int subclass; a JSON true is never a number here
    if isinstance(value, bool) or not isinstance(value, typ):
        raise WireError(Reason.BAD_TYPE, f"{where}{key} has type {type(value).__name__}")
    return value


def _parse_devices(raw: Any) -> dict[str, DeviceMeta]:
    if not isinstance(raw, dict):
        raise WireError(Reason.BAD_TYPE, "devices must be an object")
    out: dict[str, DeviceMeta] = {}
    for name, meta in raw.items():
        _check_id("device", name)
        if not isinstance(meta, dict):
            raise WireError(Reason.BAD_TYPE, f"devices.{name} must be an object")
        fields: dict[str, str] = {}
        for key in ("building", "category", "energy_type", "profile"):
            v = meta.get(key, "")
            if not isinstance(v, str) or len(v) > 64:
                raise WireError(
                    Reason.BAD_TYPE, f"devices.{name}.{key} must be a string ≤ 64 chars"
                )
            if not clean_text(v):
                raise WireError(Reason.BAD_TEXT, f"devices.{name}.{key} {safe_text(v, 64)!r} "
                                "is not clean UTF-8 text")
            if key in ("building", "category") and v and not _ID.fullmatch(v):
                raise WireError(
                    Reason.BAD_ID, f"devices.{name}.{key} {v!r} must match {ID_PATTERN}"
                )
            fields[key] = v
        et = fields["energy_type"] or "other"
        if et not in ENERGY_TYPES:
            raise WireError(
                Reason.BAD_ENERGY_TYPE,
                f"devices.{name}.energy_type {et!r} is not one of {ENERGY_TYPES}",
            )
        out[name] = DeviceMeta(fields["building"], fields["category"], et, fields["profile"])
    return out


def _loads_lenient(text: str) -> Any:
    """orjson on the hot path; the stdlib only for what orjson refuses, so a NaN from a
    sloppy gateway costs that one value (refused with ``non_finite``), not the batch."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except ValueError:
            pass
    return json.loads(text)


def parse_batch(payload: bytes, *, topic: str | None = None) -> ParsedBatch:
    """Parse and validate one telemetry message.

    Raises:
        WireError: the whole message is refused (its ``reason`` says why).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(Reason.TOO_LARGE, f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(Reason.NOT_UTF8, str(exc)) from None
    try:
        # stdlib json: accepts NaN/Infinity, which we then refuse per value with a reason
        obj = _loads_lenient(text)
    except (ValueError, RecursionError) as exc:
        raise WireError(Reason.BAD_JSON, str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise WireError(Reason.NOT_OBJECT, f"top level is {type(obj).__name__}, not an object")
    if obj.get("v") != VERSION or isinstance(obj.get("v"), bool):
        raise WireError(Reason.BAD_VERSION, f"v is {obj.get('v')!r}, this ingest speaks {VERSION}")
    site = _check_id("site", _need(obj, "site", str, ""))
    gateway = _check_id("gateway", _need(obj, "gateway", str, ""))
    if topic is not None:
        t_site, t_gw, kind = parse_topic(topic)
        if kind != "telemetry":
            raise WireError(Reason.BAD_TOPIC, f"telemetry on a {kind!r} topic")
        if (t_site, t_gw) != (site, gateway):
            raise WireError(
                Reason.TOPIC_MISMATCH,
                f"payload says {site}/{gateway}, topic says {t_site}/{t_gw}",
            )
    seq = _need(obj, "seq", int, "")
    if seq < 0 or seq > 2**63 - 1:
        raise WireError(Reason.BAD_TYPE, f"seq {seq} out of range")
    sent_at = _need(obj, "sent_at", int, "")
    devices = _parse_devices(_need(obj, "devices", dict, ""))
    raw_samples = _need(obj, "samples", list, "")
    if len(raw_samples) > MAX_SAMPLES:
        raise WireError(Reason.TOO_MANY_SAMPLES, f"{len(raw_samples)} samples, limit {MAX_SAMPLES}")

    dropped: list[Dropped] = []
    samples: list[Sample] = []
    seen: set[tuple[str, int]] = set()
    for i, raw in enumerate(raw_samples):
        where = f"samples[{i}]."
        if not isinstance(raw, dict):
            raise WireError(Reason.BAD_TYPE, f"samples[{i}] must be an object")
        device = _need(raw, "device", str, where)
        ts = _need(raw, "ts", int, where)
        values_raw = _need(raw, "values", dict, where)
        flags_raw = raw.get("flags", {})
        if not isinstance(flags_raw, dict):
            raise WireError(Reason.BAD_TYPE, f"{where}flags must be an object")
        if device not in devices:
            dropped.append(Dropped(Reason.UNKNOWN_DEVICE,
                                   f"{safe_text(device, 64)!r} not in devices",
                                   safe_text(device, 64), 0))
            continue
        if ts < MIN_TS_MS or ts > 2**53:
            dropped.append(
                Dropped(Reason.TS_OUT_OF_RANGE,
                        f"ts {safe_text(ts, 40)} is not epoch ms after 2000", device, 0)
            )
            continue
        if (device, ts) in seen:
            # two readings of one meter at one instant: storing one would silently drop the
            # other (same series, same time), so the second is refused and recorded
            dropped.append(Dropped(Reason.DUPLICATE_SAMPLE,
                                   f"{device} has a second sample at ts {ts}", device, ts))
            continue
        seen.add((device, ts))
        values: dict[str, float] = {}
        for q, v in values_raw.items():
            if q not in QUANTITIES:
                dropped.append(
                    Dropped(
                        Reason.UNKNOWN_QUANTITY,
                        f"{safe_text(q, 64)!r} is not in the vocabulary",
                        device,
                        ts,
                        safe_text(q, 64),
                    )
                )
            elif isinstance(v, bool) or not isinstance(v, int | float):
                dropped.append(
                    Dropped(
                        Reason.BAD_TYPE, f"{q} is {type(v).__name__}, not a number", device, ts, q
                    )
                )
            elif isinstance(v, int) and abs(v) > MAX_ABS_VALUE:
                # before any float(): a huge JSON integer would overflow there
                dropped.append(Dropped(Reason.OUT_OF_RANGE,
                                       f"{q} is an integer of {len(str(abs(v)))} digits",
                                       device, ts, q))
            elif not math.isfinite(v):
                dropped.append(Dropped(Reason.NON_FINITE, f"{q} is {v!r}", device, ts, q))
            elif abs(v) > MAX_ABS_VALUE:
                dropped.append(Dropped(Reason.OUT_OF_RANGE, f"{q} is {v!r}", device, ts, q))
            else:
                values[q] = float(v)
        flags: dict[str, str] = {}
        for q, f in flags_raw.items():
            if q in QUANTITIES and isinstance(f, str) and _FLAG.fullmatch(f):
                flags[q] = f
            else:
                dropped.append(
                    Dropped(
                        Reason.BAD_FLAG,
                        f"flag {safe_text(q, 64)!r}={safe_text(f, 64)!r}",
                        device,
                        ts,
                        safe_text(q, 64),
                    )
                )
        samples.append(Sample(device, ts, values, flags))
    return ParsedBatch(Batch(site, gateway, seq, sent_at, devices, samples), dropped)
