"""The profile library across protocols: one YAML per model, dispatched on ``protocol``.

``protocol: modbus`` (the default) → :class:`gateway.profile.ModbusProfile`,
``dlt645`` → :class:`gateway.dlt645.Dlt645Profile`, ``cjt188`` →
:class:`gateway.cjt188.Cjt188Profile`, ``serial_line`` →
:class:`gateway.serial_line.SerialLineProfile`. Adding a model is adding a
file; the test suite checks every file's test vectors.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

from enmon.config import parse_model, read_yaml
from enmon.errors import ConfigError
from gateway.profile import ModbusProfile, library, profile_path, to_canonical

if TYPE_CHECKING:
    from gateway.cjt188 import Cjt188Profile
    from gateway.dlt645 import Dlt645Profile
    from gateway.mbus import MbusProfile
    from gateway.serial_line import SerialLineProfile

    AnyProfile = (ModbusProfile | Dlt645Profile | Cjt188Profile | MbusProfile
                  | SerialLineProfile)


#: protocol → (module, profile class); a protocol's module is imported when a profile of
#: it is loaded, so a gateway with Modbus meters only never holds the other codecs
_MODELS: dict[str, tuple[str, str]] = {
    "modbus": ("gateway.profile", "ModbusProfile"),
    "dlt645": ("gateway.dlt645", "Dlt645Profile"),
    "cjt188": ("gateway.cjt188", "Cjt188Profile"),
    "serial_line": ("gateway.serial_line", "SerialLineProfile"),
    "mbus": ("gateway.mbus", "MbusProfile")}


def model_class(proto: str) -> type[AnyProfile]:
    """The profile class of ``proto`` (one of ``_MODELS``), its module imported now."""
    module, cls = _MODELS[proto]
    found: type[AnyProfile] = getattr(importlib.import_module(module), cls)
    return found


def __getattr__(name: str) -> Any:
    """``AnyProfile`` at run time (e.g. ``typing.get_type_hints``) imports every codec."""
    if name == "AnyProfile":
        models = [model_class(p) for p in _MODELS]
        union = models[0]
        for m in models[1:]:
            union = union | m  # type: ignore[assignment]
        globals()["AnyProfile"] = union
        return union
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def load(name: str) -> AnyProfile:
    """A profile by model name from the library, or a path to a YAML file."""
    path = profile_path(name)
    data = read_yaml(path)
    proto = data.get("protocol", "modbus") if isinstance(data, dict) else "modbus"
    if proto not in _MODELS:
        raise ConfigError(str(path), "protocol", f"unknown protocol {proto!r}",
                          "use modbus, dlt645, cjt188, mbus or serial_line")
    return parse_model(model_class(proto), data, file=str(path))


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
    if profile.protocol == "dlt645":
        from gateway.dlt645 import item_value

        dvec = profile.test_vectors[index]
        out = {}
        for q in dvec.expect:
            item = profile.quantities[q]
            out[q] = item_value(item, bytes.fromhex(dvec.data[item.di]))
        return out
    if profile.protocol == "cjt188":
        from gateway import cjt188

        raw = bytes.fromhex(profile.test_vectors[index].data)
        return {q: cjt188.item_value(profile, q, raw) for q in profile.test_vectors[index].expect}
    if profile.protocol == "mbus":
        from gateway import mbus

        recs = list(mbus.iter_records(bytes.fromhex(profile.test_vectors[index].records)))
        return {q: mbus.item_value(profile, q, recs) for q in profile.test_vectors[index].expect}
    from gateway.serial_line import parse_line

    lvec = profile.test_vectors[index]
    return parse_line(profile, lvec.line)
