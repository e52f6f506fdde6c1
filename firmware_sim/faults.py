"""Fault injection for the simulated field devices.

Field buses fail in a handful of ways, and the gateway must survive each one
with a logged reason and a counter. A :class:`Faults` object decides, per
request, whether the device misbehaves and how; it is deterministic for a
given seed so tests are repeatable. Counter faults (rollover, meter
replacement) are value transforms applied to what the device reports.

Modes (probabilities per request, or ``dead`` for a meter that never answers):

* ``timeout``   — no answer at all;
* ``crc``       — the answer with a corrupted checksum;
* ``exception`` — a protocol-level error answer (Modbus exception / DL/T 645 0xD1);
* ``garbage``   — random bytes instead of an answer;
* ``address``   — a well-formed answer from the wrong unit / meter address (a second
  device misconfigured at a neighbour's address, or a reflection on a long bus);
* ``busy``      — Modbus exception 6 (server device busy) for the first ``busy_first``
  requests, then normal answers: a meter still busy after power-up or a slow gateway.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["timeout", "crc", "exception", "garbage", "address", "busy"]


@dataclass
class Faults:
    timeout: float = 0.0
    crc: float = 0.0
    exception: float = 0.0
    garbage: float = 0.0
    address: float = 0.0
    exception_code: int = 4  # Modbus: server device failure
    dead: bool = False
    busy_first: int = 0  # answer this many requests with "busy" (Modbus exception 6) first
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @classmethod
    def always(cls, mode: Fault) -> Faults:
        """A device that fails every request in this one way (to test each fault alone)."""
        if mode == "busy":
            return cls(busy_first=2**62)
        faults = cls()
        setattr(faults, mode, 1.0)
        return faults

    def pick(self) -> Fault | None:
        """Roll the dice for one request."""
        with self._lock:
            if self.dead:
                self.counts["timeout"] = self.counts.get("timeout", 0) + 1
                return "timeout"
            if self.counts.get("busy", 0) < self.busy_first:
                self.counts["busy"] = self.counts.get("busy", 0) + 1
                return "busy"
            r = self._rng.random()
            acc = 0.0
            for name in ("timeout", "crc", "exception", "garbage", "address"):
                acc += getattr(self, name)
                if r < acc:
                    self.counts[name] = self.counts.get(name, 0) + 1
                    return name
            return None

    def garbage_bytes(self, n: int = 7) -> bytes:
        with self._lock:
            return bytes(self._rng.randrange(256) for _ in range(n))


def corrupt(frame: bytes) -> bytes:
    """Flip bits in the last byte (the checksum) so the frame fails its check."""
    return frame[:-1] + bytes([frame[-1] ^ 0x5A]) if frame else frame


@dataclass
class CounterFaults:
    """Counter anomalies a real meter shows: wrap at register capacity, replacement.

    ``capacity``: the counter wraps to 0 here (e.g. 1 000 000 kWh for a DL/T 645
    XXXXXX.XX register, 2**32 × scale on a u32 register). ``replaced_at``: from this reported
    value on, the meter behaves as a new one starting at ``replacement_start``.
    """

    capacity: float | None = None
    offset: float = 0.0  # added to the true counter (to start near the wrap)
    replaced_at: float | None = None
    replacement_start: float = 0.0

    def apply(self, true_value: float) -> float:
        v = true_value + self.offset
        if self.replaced_at is not None and v >= self.replaced_at:
            v = self.replacement_start + (v - self.replaced_at)
        if self.capacity is not None:
            v %= self.capacity
        return v
