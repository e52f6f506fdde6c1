"""Every profile in the library loads and decodes its own test vectors exactly.

Tolerance is float32 precision (relative 1e-6): a wrong type, word order or
scale is off by far more.

The vectors are registers (or DL/T 645 value bytes, or ASCII lines) with the
values the manual says they mean; a wrong type, word order or scale in a
profile makes its vector fail here.
"""

from __future__ import annotations

import math

import pytest

from gateway import library
from gateway.dlt645 import Dlt645Profile
from gateway.profile import ModbusProfile
from gateway.serial_line import SerialLineProfile

NAMES = library.names()


def test_library_has_ten_real_models_across_protocols() -> None:
    profiles = [library.load(n) for n in NAMES]
    real = [p for p in profiles if p.manufacturer != "generic"]
    assert len(real) >= 10
    assert any(isinstance(p, Dlt645Profile) for p in profiles)
    assert any(isinstance(p, SerialLineProfile) for p in profiles)
    kinds = {p.energy_type for p in profiles}
    assert {"electricity", "heat", "gas", "steam"} <= kinds
    assert any("CHINT" in p.manufacturer or "Acrel" in p.manufacturer for p in profiles)


@pytest.mark.parametrize("name", NAMES)
def test_profile_vectors(name: str) -> None:
    p = library.load(name)
    assert p.test_vectors, f"{name} has no test vectors"
    assert p.source and p.confidence in ("R", "U", "I")
    for i, vec in enumerate(p.test_vectors):
        got = library.evaluate_vector(p, i)
        assert set(got) == set(vec.expect), vec.name
        for q, want in vec.expect.items():
            ok = math.isclose(got[q], want, rel_tol=1e-6, abs_tol=1e-9)
            assert ok, (name, vec.name, q, got[q])


@pytest.mark.parametrize("name", [n for n in NAMES if isinstance(library.load(n), ModbusProfile)])
def test_modbus_fields_do_not_overlap(name: str) -> None:
    p = library.load(name)
    assert isinstance(p, ModbusProfile)
    used: dict[tuple[str, int], str] = {}
    bits: dict[tuple[str, int], tuple[str, int]] = {}  # register -> (quantity, bit mask)
    for f in p.fields():
        if f.bit is not None or f.width is not None:
            # bit-fields and u8/i8 bytes may share a register, not its bits
            width = 8 if f.type in ("u8", "i8") else (f.width or 1)
            mask = ((1 << width) - 1) << (f.bit or 0)
            for a in range(f.address, f.address + f.words):
                q, m = bits.get((f.function, a), ("", 0))
                assert not m & mask, f"{f.quantity} overlaps {q}"
                assert (f.function, a) not in used, f"{f.quantity} overlaps {used[(f.function, a)]}"
                bits[(f.function, a)] = (f.quantity, m | mask)
            continue
        for a in range(f.address, f.address + f.words):
            assert (f.function, a) not in used, f"{f.quantity} overlaps {used[(f.function, a)]}"
            assert (f.function, a) not in bits, f"{f.quantity} overlaps {bits[(f.function, a)][0]}"
            used[(f.function, a)] = f.quantity
