"""Load YAML files into pydantic models with errors a deployer can act on.

Every config error names the file, the dotted key and a fix, e.g.::

    gateway.yaml: devices.0.unit_id: Input should be less than or equal to 247 (got 300)
        (fix: a Modbus unit id is 1..247)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from enmon.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Fix hints by pydantic error type; a model can add its own via ``json_schema_extra={"fix": …}``.
_FIX_BY_TYPE = {
    "missing": "add this key",
    "extra_forbidden": "remove this key or check its spelling",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "literal_error": "use one of the allowed values",
    "string_pattern_mismatch": "use only letters, digits, '_' and '-' (1..64 chars)",
}


def _key(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _field_fix(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Find a ``fix`` hint declared on the field the error points at, if any."""
    current: Any = model
    info = None
    key_next = False  # the previous field was a dict: this part is one of its keys
    for part in loc:
        if key_next or isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, BaseModel)
        ):
            # descend through list items and dict keys to the model they hold
            key_next = False
            continue
        info = current.model_fields.get(str(part))
        if info is None:
            return ""
        ann = info.annotation
        key_next = get_origin(ann) is dict
        args = getattr(ann, "__args__", ()) or ()
        nxt = next(
            (a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        current = nxt
    extra = getattr(info, "json_schema_extra", None) if info is not None else None
    if isinstance(extra, dict):
        return str(extra.get("fix", ""))
    return ""


def validation_to_config_error(
    file: str, model: type[BaseModel], err: ValidationError
) -> ConfigError:
    """Turn the first pydantic error into one ConfigError; list the others in ``problem``."""
    errors = err.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    got = first.get("input")
    problem = first["msg"]
    if first["type"] != "missing" and not isinstance(got, dict | list):
        problem += f" (got {got!r})"
    if len(errors) > 1:
        others = "; ".join(f"{_key(tuple(e['loc']))}: {e['msg']}" for e in errors[1:4])
        problem += f"; also {others}" + (" …" if len(errors) > 4 else "")
    fix = _field_fix(model, loc) or _FIX_BY_TYPE.get(first["type"], "")
    return ConfigError(file, _key(loc), problem, fix)


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), "(file)", "file not found", "check the path") from None
    except OSError as exc:
        raise ConfigError(str(p), "(file)", f"cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(syntax)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            str(p), where, f"YAML syntax error: {problem}", "fix the indentation or quoting"
        ) from None


def parse_model(model: type[M], data: Any, *, file: str = "<string>") -> M:
    if data is None:
        raise ConfigError(
            file, "(top level)", "the file is empty", f"write a {model.__name__} mapping"
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_to_config_error(file, model, err) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read ``path`` as YAML and validate it as ``model``."""
    return parse_model(model, read_yaml(path), file=str(path))
