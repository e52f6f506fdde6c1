"""Serial line sensors: instruments that talk ASCII lines instead of Modbus.

Flue-gas analysers, some flow computers and older boiler controllers print one
line per reading, either when asked (a request string) or continuously. A
profile describes the exchange as data: the request to send (or none for a
streaming instrument), the line terminator, and one regular expression whose
named groups are the profile's quantities. Parsing is pure.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from enmon import quantities
from enmon.config import StrictModel
from enmon.errors import DriverError


class LineError(DriverError):
    """A line that does not match the profile's pattern (garbage, partial line)."""


class LineItem(StrictModel):
    group: str  # the regex group holding the number
    scale: float = 1.0
    offset: float = 0.0


class LineVector(StrictModel):
    __test__ = False
    name: str
    line: str
    expect: dict[str, float]


class SerialLineProfile(StrictModel):
    model: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    manufacturer: str
    name: str
    protocol: Literal["serial_line"]
    energy_type: str = "other"
    source: str = Field(min_length=5)
    confidence: Literal["R", "U", "I"] = "U"
    # what to send to get one line; None: the instrument streams on its own
    request: str | None = None
    terminator: str = "\r\n"
    encoding: Literal["ascii", "latin-1", "utf-8"] = "ascii"
    pattern: str = Field(
        json_schema_extra={"fix": "a Python regular expression with (?P<name>...) groups"})
    probe: str | None = None
    quantities: dict[str, LineItem]
    test_vectors: list[LineVector] = []

    @field_validator("quantities")
    @classmethod
    def _known(cls, v: dict[str, LineItem]) -> dict[str, LineItem]:
        for name in v:
            quantities.get(name)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SerialLineProfile:
        try:
            rx = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        for q, item in self.quantities.items():
            if item.group not in rx.groupindex:
                raise ValueError(f"{q}: group {item.group!r} is not a named group of pattern")
        if self.probe is not None and self.probe not in self.quantities:
            raise ValueError(f"probe {self.probe!r} is not one of the profile's quantities")
        for vec in self.test_vectors:
            for q in vec.expect:
                if q not in self.quantities:
                    raise ValueError(f"test vector {vec.name!r} expects {q!r}, not in quantities")
        return self

    def request_bytes(self) -> bytes | None:
        if self.request is None:
            return None
        return self.request.encode(self.encoding)

    def terminator_bytes(self) -> bytes:
        return self.terminator.encode(self.encoding)


def parse_line(profile: SerialLineProfile, line: bytes | str) -> dict[str, float]:
    """One line → canonical values; a missing group yields no value (never 0)."""
    text = line.decode(profile.encoding, errors="replace") if isinstance(line, bytes) else line
    text = text.strip("\r\n")
    m = re.fullmatch(profile.pattern, text)
    if m is None:
        raise LineError(f"{profile.model}: line {text[:80]!r} does not match the profile's pattern")
    out: dict[str, float] = {}
    for q, item in profile.quantities.items():
        raw = m.group(item.group)
        if raw is None or raw == "":
            continue
        try:
            out[q] = float(raw) * item.scale + item.offset
        except ValueError:
            raise LineError(f"{profile.model}: {item.group}={raw!r} is not a number") from None
    return out


def format_line(profile: SerialLineProfile, template: str, values: dict[str, float]) -> bytes:
    """Render a line the way the instrument would (used by firmware_sim)."""
    return (template.format(**values) + profile.terminator).encode(profile.encoding)
