"""Deterministic noise: the same seed, channel and instant always give the same value.

Noise is a pure function of ``(seed, key, t)`` rather than a stateful RNG so that
the history generator (hour steps over a year), the live endpoints (second steps)
and a test that jumps straight to one instant all see the *same* weather and the
same load wobble, whatever order they ask in.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-distributed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


@lru_cache(maxsize=4096)
def key_of(name: str) -> int:
    """A stable integer for a channel name (``hash()`` is salted per process)."""
    return zlib.crc32(name.encode())


@lru_cache(maxsize=8192)  # consecutive steps share lattice points
def unit(seed: int, key: int, n: int) -> float:
    """A uniform value in [-1, 1) for lattice point ``n`` of channel ``key``."""
    h = _mix((seed * 0x100000001B3) ^ (key << 20) ^ (n & _MASK))
    return (h >> 11) / float(1 << 52) - 1.0


def smooth(seed: int, key: int, t: float, period: float) -> float:
    """Value noise in [-1, 1]: random at multiples of ``period``, cosine-blended between.

    Smooth in time, so a load or a temperature never jumps between two polls.
    """
    x = t / period
    n = math.floor(x)
    f = x - n
    w = 0.5 - 0.5 * math.cos(math.pi * f)
    a = unit(seed, key, n)
    b = unit(seed, key, n + 1)
    return a + (b - a) * w


def fraction(seed: int, key: int) -> float:
    """A fixed value in [0, 1) per (seed, key): per-meter constants such as phase imbalance."""
    return (unit(seed, key, 0x5EED) + 1.0) / 2.0
