"""The fast path of ingest: a typed decoder that validates while it parses, and the
``meter`` lines of a batch built with a handful of C calls instead of one Python
format per reading.

Only a batch that keeps *every* rule of wire contract v1 (``enmon.wire``) goes this
way: the msgspec types below encode the rules that can be said as types (ID
patterns, sizes, sample limit, ``v == 1``, integer vs float vs bool, finite values
within ±1e15, quantity and energy-type vocabularies, flag pattern, clean text), and
:func:`decode_strict` checks the rest (reserved gateway id, topic match, known
devices, no duplicate samples). Anything else — a bad value, a NaN, a lone
surrogate, an unknown device — returns ``None`` and the caller uses the lenient
:func:`enmon.wire.parse_batch`, which stays the one authority on *why* something is
refused and keeps a partly bad batch's good samples. So the fast path can only be
faster, never different in what is stored or refused.

Server side only: the gateway and the simulators never import this module.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from enmon import wire
from enmon.quantities import ENERGY_TYPES, QUANTITIES

_Id = Annotated[str, Meta(pattern=rf"\A{wire.ID_PATTERN}\Z")]
_OptId = Annotated[str, Meta(pattern=rf"\A(?:{wire.ID_PATTERN})?\Z")]
# clean text: no control characters; lone surrogates never decode (msgspec refuses them)
_Text64 = Annotated[str, Meta(pattern=r"\A[^\x00-\x1f\x7f]{0,64}\Z")]
_Flag = Annotated[str, Meta(pattern=r"\A[a-z][a-z0-9_]{0,63}\Z")]
_Value = Annotated[float, Meta(ge=-wire.MAX_ABS_VALUE, le=wire.MAX_ABS_VALUE)]
_Ts = Annotated[int, Meta(ge=wire.MIN_TS_MS, le=2**53)]
# built from the vocabularies, so a new quantity or energy type needs no change here
_Quantity: Any = Literal.__getitem__(tuple(QUANTITIES))
_EnergyType: Any = Literal.__getitem__(("", *ENERGY_TYPES))


class DeviceIn(msgspec.Struct, frozen=True):
    building: _OptId = ""
    category: _OptId = ""
    energy_type: _EnergyType = ""
    profile: _Text64 = ""


class SampleIn(msgspec.Struct):
    device: str
    ts: _Ts
    values: dict[_Quantity, _Value]
    flags: dict[_Quantity, _Flag] = msgspec.field(default_factory=dict)


class BatchIn(msgspec.Struct):
    v: Literal[1]
    site: _Id
    gateway: _Id
    seq: Annotated[int, Meta(ge=0, le=2**63 - 1)]
    sent_at: int
    devices: dict[_Id, DeviceIn]
    samples: Annotated[list[SampleIn], Meta(max_length=wire.MAX_SAMPLES)]


_DECODER = msgspec.json.Decoder(BatchIn)
_ENCODE = msgspec.json.Encoder().encode
_TOPIC = re.compile(rf"\A{wire.TOPIC_ROOT}/({wire.ID_PATTERN})/({wire.ID_PATTERN})/telemetry\Z")


def decode_strict(payload: bytes, topic: str | None) -> BatchIn | None:
    """The batch if it keeps every rule of the contract, else ``None`` (use the lenient
    parser). Reads the payload in place: no copy, no intermediate dicts."""
    if len(payload) > wire.MAX_PAYLOAD_BYTES:
        return None
    try:
        b = _DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if b.gateway in wire.RESERVED_GATEWAY_IDS:
        return None
    if topic is not None:
        m = _TOPIC.match(topic)
        if m is None or m.group(1) != b.site or m.group(2) != b.gateway:
            return None
    devices = b.devices
    samples = b.samples
    # every sample's device is declared, and no device has two samples at one instant
    if not devices.keys() >= {s.device for s in samples}:
        return None
    if len({(s.device, s.ts) for s in samples}) != len(samples):
        return None
    return b


class LineCache:
    """``meter,<sorted tags>`` per (site, gateway, device, meta): built once per device,
    reused across batches. Tags of a strictly valid batch are IDs and vocabulary names,
    which need no escaping. Bounded: cleared when it reaches ``limit`` entries."""

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._prefix: dict[tuple[str, str, str, DeviceIn], str] = {}

    def prefix(self, site: str, gateway: str, device: str, meta: DeviceIn) -> str:
        key = (site, gateway, device, meta)
        p = self._prefix.get(key)
        if p is None:
            if len(self._prefix) >= self.limit:
                self._prefix.clear()
            pairs = (("building", meta.building), ("category", meta.category),
                     ("device", device), ("energy_type", meta.energy_type or "other"),
                     ("gateway", gateway), ("site", site))  # sorted by key
            p = "meter" + "".join(f",{k}={v}" for k, v in pairs if v)
            self._prefix[key] = p
        return p


def meter_lines(b: BatchIn, samples: list[SampleIn], cache: LineCache) -> list[str]:
    """The ``meter`` points of ``samples`` (a strictly decoded batch's, in order).

    All values of the batch are formatted by one C call (msgspec writes the shortest
    text that reads back as the same double, e.g. ``1e-7`` where ``repr`` writes
    ``1e-07``) and turned into line-protocol fields by bytes ops: quantity names are
    vocabulary words (``[a-z0-9_]``), so deleting ``{}"`` and turning ``:`` into ``=``
    is exact. Samples with neither values nor flags are skipped, as in
    :func:`enmon.lineproto.batch_lines`.
    """
    kept = [s for s in samples if s.values or s.flags]
    if not kept:
        return []
    body = (_ENCODE([s.values for s in kept])[1:-1]
            .replace(b"},{", b"\n").translate(None, b'{}"').replace(b":", b"="))
    fields = body.decode("ascii").split("\n")
    seq = f"seq={b.seq}i"
    site, gateway, devices = b.site, b.gateway, b.devices
    out = []
    for s, f in zip(kept, fields, strict=True):
        pfx = cache.prefix(site, gateway, s.device, devices[s.device])
        if s.flags:
            flags = ",".join(f'flag_{q}="{v}"' for q, v in s.flags.items())
            f = f"{f},{flags}" if f else flags
        out.append(f"{pfx} {f},{seq} {s.ts}")
    return out
