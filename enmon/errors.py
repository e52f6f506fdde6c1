"""The one exception tree of enmon.

Every error that crosses a package boundary is an ``EnmonError`` so that the CLI
can print it as one clear line and exit non-zero instead of dumping a traceback::

    EnmonError
    ├── ConfigError        a config or profile file is wrong (names file, key and fix)
    ├── WireError          a telemetry message breaks wire contract v1 (has a reason code)
    ├── DriverError        a device could not be read (timeout, exception response, CRC)
    ├── SinkError          the database refused or could not be reached
    └── ServiceError       a server process (mosquitto, influxd, ...) could not be started
"""

from __future__ import annotations


class EnmonError(Exception):
    """Base of every error enmon raises on purpose."""


class ConfigError(EnmonError):
    """A configuration or profile file is invalid.

    Args:
        file: the file that holds the mistake (or ``"<string>"``).
        key: dotted path to the offending key, e.g. ``devices.0.unit_id``.
        problem: what is wrong, quoting the value.
        fix: what to write instead.
    """

    def __init__(self, file: str, key: str, problem: str, fix: str = "") -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        text = f"{file}: {key}: {problem}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)


class WireError(EnmonError):
    """A message that breaks wire contract v1; ``reason`` is a stable machine code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"[{reason}] {detail}")


class DriverError(EnmonError):
    """A device read failed; the reading is absent, never zero."""


class SinkError(EnmonError):
    """The storage backend refused a write or could not be reached."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class ServiceError(EnmonError):
    """A helper server (mosquitto, influxd, victoria-metrics) could not be run."""
