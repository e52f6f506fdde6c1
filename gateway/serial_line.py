"""Serial line sensors: instruments that talk ASCII lines instead of Modbus.

Flue-gas analysers, some flow computers and older boiler controllers print one
line per reading, either when asked (a request string) or continuously. A
profile describes the exchange as data: the request to send (or none for a
streaming instrument), the line terminator, and one regular expression whose
named groups are the profile's quantities. Parsing is pure.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, model_validator

from enmon.config import StrictModel
from enmon.errors import DriverError
from gateway.profile import Profile, Vector


class LineError(DriverError):
    """A line that does not match the profile's pattern (garbage, partial line)."""


class LineItem(StrictModel):
    group: str  # the regex group holding the number
    scale: float = 1.0
    offset: float = 0.0


class LineVector(Vector):
    line: str


class SerialLineProfile(Profile[LineItem, LineVector]):
    protocol: Literal["serial_line"]
    energy_type: str = "other"
    # what to send to get one line; None: the instrument streams on its own
    request: str | None = None
    terminator: str = "\r\n"
    encoding: Literal["ascii", "latin-1", "utf-8"] = "ascii"
    pattern: str = Field(
        json_schema_extra={"fix": "a Python regular expression with (?P<name>...) groups"})

    @model_validator(mode="after")
    def _groups(self) -> Self:
        try:
            rx = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        for q, item in self.quantities.items():
            if item.group not in rx.groupindex:
                raise ValueError(f"{q}: group {item.group!r} is not a named group of pattern")
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
