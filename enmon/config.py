"""Load YAML files into pydantic models with errors a deployer can act on.

Every config error names the file, the dotted key and a fix, e.g.::

    gateway.yaml: devices.0.unit_id: Input should be less than or equal to 247 (got 300)
        (fix: a Modbus unit id is 1..247)
"""

from __future__ import annotations

import re
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


# keys that must not hold a secret inline: their own fix, not "remove this key"
_SECRET_FIX = {"password": "use password_file or password_env (a secret is not written inline)",
               "token": "use token_env (a secret is not written inline)",
               "secret": "use secret_env (a secret is not written inline)"}


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts where ``loc`` points (for a did-you-mean)."""
    current: Any = model
    key_next = False
    for part in loc:
        if key_next or isinstance(part, int):
            key_next = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        ann = info.annotation
        key_next = get_origin(ann) is dict
        args = getattr(ann, "__args__", ()) or ()
        nested = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        for a in args:  # list[Model] / dict[str, Model] / Annotated unions
            nested += [x for x in getattr(a, "__args__", ()) or ()
                       if isinstance(x, type) and issubclass(x, BaseModel)]
        current = nested[0] if nested else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _one(model: type[BaseModel], e: Any, lines: dict[tuple[Any, ...], int] | None
         ) -> tuple[int | None, str, str, str]:
    """One pydantic error as (line, key, problem, fix) — each error gets its own fix."""
    loc = tuple(e["loc"])
    got = e.get("input")
    problem = e["msg"]
    secret = e["type"] == "extra_forbidden" and bool(loc) and str(loc[-1]) in _SECRET_FIX
    if e["type"] != "missing" and not isinstance(got, dict | list) and not secret:
        problem += f" (got {got!r})"  # never a secret's value: errors reach logs and tickets
    fix = _field_fix(model, loc) or _FIX_BY_TYPE.get(e["type"], "")
    if e["type"] == "extra_forbidden" and loc:
        name = str(loc[-1])
        if name in _SECRET_FIX:
            fix = _SECRET_FIX[name]
        else:
            import difflib  # only on the way to an error message (a gateway keeps ~0.2 MB)

            near = difflib.get_close_matches(name, _fields_at(model, loc[:-1]), n=1, cutoff=0.6)
            if near:
                fix = f"did you mean {near[0]!r}?"
    if e["type"] == "literal_error" and isinstance(got, str):
        import difflib

        allowed = re.findall(r"'([^']*)'", e["msg"])
        near = difflib.get_close_matches(got, allowed, n=1, cutoff=0.6)
        if near:
            fix = f"did you mean {near[0]!r}?"
    return _line_of(lines, loc), _key(loc), problem, fix


def _line_of(lines: dict[tuple[Any, ...], int] | None, loc: tuple[Any, ...]) -> int | None:
    """The YAML line of ``loc`` or of its nearest written parent (a missing key has none)."""
    if not lines:
        return None
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def validation_to_config_error(
    file: str, model: type[BaseModel], err: ValidationError,
    lines: dict[tuple[Any, ...], int] | None = None,
) -> ConfigError:
    """Every pydantic error as one line with its own line number and fix.

    The returned error's ``key``/``problem``/``fix`` are those of the first error (what
    code and tests look at); its text lists each error on a line of its own.
    """
    items = [_one(model, e, lines) for e in err.errors()]

    def one_line(line: int | None, key: str, problem: str, fix: str) -> str:
        return str(ConfigError(f"{file}:{line}" if line else file, key, problem, fix))

    line, key, problem, fix = items[0]
    first = ConfigError(file, key, problem, fix)
    first.line = line  # type: ignore[attr-defined]
    text = "\n".join(one_line(*it) for it in items)
    first.args = (f"{len(items)} errors:\n{text}" if len(items) > 1 else text,)
    return first


def yaml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Key path → 1-based line where it is written (mapping keys and list items)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    out: dict[tuple[Any, ...], int] = {}

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = (*path, k.value)
                out[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                out[(*path, i)] = v.start_mark.line + 1
                walk(v, (*path, i))

    if root is not None:
        walk(root, ())
    return out


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


def parse_model(model: type[M], data: Any, *, file: str = "<string>",
                lines: dict[tuple[Any, ...], int] | None = None) -> M:
    if data is None:
        raise ConfigError(
            file, "(top level)", "the file is empty", f"write a {model.__name__} mapping"
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_to_config_error(file, model, err, lines) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read ``path`` as YAML and validate it as ``model``."""
    data = read_yaml(path)
    lines = yaml_lines(Path(path).read_text(encoding="utf-8"))
    return parse_model(model, data, file=str(path), lines=lines)
