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
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from enmon import wire
from enmon.lineproto import float_fields
from enmon.quantities import ENERGY_TYPES, QUANTITIES

# IDs and text are checked against these patterns after the parse, once per distinct
# string (see _Checked): a gateway repeats the same few dozen every batch, and a regex
# per string was 60 % of the typed decode. Lone surrogates never decode (msgspec
# refuses them), so only the patterns remain to be checked.
_ID_RX = re.compile(rf"\A{wire.ID_PATTERN}\Z")
_OPT_ID_RX = re.compile(rf"\A(?:{wire.ID_PATTERN})?\Z")
_TEXT64_RX = re.compile(r"\A[^\x00-\x1f\x7f]{0,64}\Z")  # clean text: no control characters
_Flag = Annotated[str, Meta(pattern=r"\A[a-z][a-z0-9_]{0,63}\Z")]
_Value = Annotated[float, Meta(ge=-wire.MAX_ABS_VALUE, le=wire.MAX_ABS_VALUE)]
_Ts = Annotated[int, Meta(ge=wire.MIN_TS_MS, le=2**53)]
# built from the vocabularies, so a new quantity or energy type needs no change here
_Quantity: Any = Literal.__getitem__(tuple(QUANTITIES))
_EnergyType: Any = Literal.__getitem__(("", *ENERGY_TYPES))


class DeviceIn(msgspec.Struct, frozen=True, gc=False):
    building: str = ""  # _OPT_ID_RX, checked by _Checked.meta
    category: str = ""  # _OPT_ID_RX
    energy_type: _EnergyType = ""
    profile: str = ""  # _TEXT64_RX


class SampleIn(msgspec.Struct, gc=False):
    device: str
    ts: _Ts
    values: dict[_Quantity, _Value]
    flags: dict[_Quantity, _Flag] = msgspec.field(default_factory=dict)


class BatchIn(msgspec.Struct):
    v: Literal[1]
    site: str  # _ID_RX, checked by _Checked.ids
    gateway: str  # _ID_RX
    seq: Annotated[int, Meta(ge=0, le=2**63 - 1)]
    sent_at: int
    devices: dict[str, DeviceIn]  # keys: _ID_RX
    samples: Annotated[list[SampleIn], Meta(max_length=wire.MAX_SAMPLES)]


# DeviceIn and SampleIn hold only strings, numbers and dicts of them, so they can never
# be part of a reference cycle: gc=False keeps the ~20 of them per batch out of the
# cyclic collector's scans (reference counting frees them)
_DECODER = msgspec.json.Decoder(BatchIn)
_TOPIC = re.compile(rf"\A{wire.TOPIC_ROOT}/({wire.ID_PATTERN})/({wire.ID_PATTERN})/telemetry\Z")


class _Checked:
    """IDs and device metadata already found to match their patterns.

    Only strings that passed the full regex are remembered, so a string is let through
    exactly when its pattern matches it: the cache changes the cost, never the answer.
    Bounded: each set is cleared when it reaches ``limit`` entries (then strings are
    checked afresh), so a stream of ever-new names cannot grow it.
    """

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._ids: set[str] = set()
        self._metas: set[DeviceIn] = set()

    def ids(self, names: Iterable[str]) -> bool:
        known = self._ids
        for n in names:
            if n not in known:
                if _ID_RX.search(n) is None:
                    return False
                if len(known) >= self.limit:
                    known.clear()
                known.add(n)
        return True

    def metas(self, metas: Iterable[DeviceIn]) -> bool:
        known = self._metas
        for m in metas:
            if m not in known:
                if (_OPT_ID_RX.search(m.building) is None
                        or _OPT_ID_RX.search(m.category) is None
                        or _TEXT64_RX.search(m.profile) is None):
                    return False
                if len(known) >= self.limit:
                    known.clear()
                known.add(m)
        return True


_CHECKED = _Checked()


def decode_strict(payload: bytes, topic: str | None,
                  checked: _Checked = _CHECKED) -> BatchIn | None:
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
    if not (checked.ids((b.site, b.gateway)) and checked.ids(b.devices)
            and checked.metas(b.devices.values())):
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

    All values of the batch are formatted by one C call (:func:`enmon.lineproto.float_fields`:
    quantity names are vocabulary words and values finite numbers, as it needs). Samples
    with neither values nor flags are skipped, as in :func:`enmon.lineproto.batch_lines`.
    """
    kept = [s for s in samples if s.values or s.flags]
    if not kept:
        return []
    fields = float_fields([s.values for s in kept])
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
