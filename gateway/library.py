"""The profile library across protocols: one YAML per model, dispatched on ``protocol``.

``protocol: modbus`` (the default) → :class:`gateway.profile.ModbusProfile`,
``dlt645`` → :class:`gateway.dlt645.Dlt645Profile`, ``cjt188`` →
:class:`gateway.cjt188.Cjt188Profile`, ``serial_line`` →
:class:`gateway.serial_line.SerialLineProfile`. Adding a model is adding a
file; the test suite checks every file's test vectors.
"""

from __future__ import annotations

from functools import cache

from enmon.config import parse_model, read_yaml
from enmon.errors import ConfigError
from gateway import cjt188, mbus
from gateway.dlt645 import Dlt645Profile, item_value
from gateway.profile import ModbusProfile, library, profile_path, to_canonical
from gateway.serial_line import SerialLineProfile, parse_line

AnyProfile = (ModbusProfile | Dlt645Profile | cjt188.Cjt188Profile | mbus.MbusProfile
              | SerialLineProfile)


_MODELS: dict[str, type[AnyProfile]] = {
    "modbus": ModbusProfile, "dlt645": Dlt645Profile, "cjt188": cjt188.Cjt188Profile,
    "serial_line": SerialLineProfile, "mbus": mbus.MbusProfile}


@cache
def load(name: str) -> AnyProfile:
    """A profile by model name from the library, or a path to a YAML file."""
    path = profile_path(name)
    data = read_yaml(path)
    proto = data.get("protocol", "modbus") if isinstance(data, dict) else "modbus"
    if proto not in _MODELS:
        raise ConfigError(str(path), "protocol", f"unknown protocol {proto!r}",
                          "use modbus, dlt645, cjt188, mbus or serial_line")
    return parse_model(_MODELS[proto], data, file=str(path))


names = library  # the shipped models, listed by gateway.profile.library


def evaluate_vector(profile: AnyProfile, index: int) -> dict[str, float]:
    """Decode test vector ``index`` of ``profile`` exactly as the poller would."""
    if isinstance(profile, ModbusProfile):
        vec = profile.test_vectors[index]
        by_q = {f.quantity: f for f in profile.fields()}
        out: dict[str, float] = {}
        for q in vec.expect:
            f = by_q[q]
            regs = vec.registers.get(f.function, {})
            words: list[int] = []
            for i in range(f.words):
                # a vector may give a field's words in one list at its address, or spread out
                for start, block in regs.items():
                    if start <= f.address + i < start + len(block):
                        words.append(block[f.address + i - start])
                        break
            if len(words) != f.words:
                raise KeyError(f"vector {vec.name!r} lacks registers for {q} at {f.address}")
            out[q] = to_canonical(f, words)
        return out
    if isinstance(profile, Dlt645Profile):
        dvec = profile.test_vectors[index]
        out = {}
        for q in dvec.expect:
            item = profile.quantities[q]
            out[q] = item_value(item, bytes.fromhex(dvec.data[item.di]))
        return out
    if isinstance(profile, cjt188.Cjt188Profile):
        raw = bytes.fromhex(profile.test_vectors[index].data)
        return {q: cjt188.item_value(profile, q, raw) for q in profile.test_vectors[index].expect}
    if isinstance(profile, mbus.MbusProfile):
        recs = list(mbus.iter_records(bytes.fromhex(profile.test_vectors[index].records)))
        return {q: mbus.item_value(profile, q, recs) for q in profile.test_vectors[index].expect}
    lvec = profile.test_vectors[index]
    return parse_line(profile, lvec.line)
