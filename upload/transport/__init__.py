"""The cut-off point between the outbox and a platform's wire protocol.

A transport sends one document as one revision of one record and returns the
platform's :class:`Receipt`, or raises :class:`RetryableError` (try again later:
the platform is down, busy, or the network failed) or :class:`PermanentError`
(the platform refused this document for good: the outbox moves it to ``dead``
with the reason). Anything else a transport raises is a bug and is treated as
retryable by the outbox, so nothing is dropped because of it.

Transports are found by name: ``transport: NAME`` in the config imports
``upload.transport.NAME`` and calls its ``create(config)``. A province's own
format or a client-certificate variant is therefore one new module here, with
no change elsewhere. A module may validate its own ``options:`` with a pydantic
model named ``Options``.

Error tree::

    EnmonError
    └── TransportError      the platform did not acknowledge (``retryable`` says what next)
        ├── RetryableError  try again after a backoff (``retry_after_s`` if the platform said)
        └── PermanentError  refused for good (4xx, malformed, stale revision)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from enmon.errors import EnmonError

if TYPE_CHECKING:
    from upload.config import UploadConfig

__all__ = [
    "PermanentError",
    "Receipt",
    "RetryableError",
    "Transport",
    "TransportError",
    "available",
    "create",
]


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """What the platform acknowledged.

    Args:
        receipt_id: the platform's id for this acceptance (kept for the inspector).
        received_at: the platform's own time of acceptance, as it wrote it.
        duplicate: the platform already had this revision (a resend after a crash or a
            lost acknowledgement); it is not a second record.
        detail: anything else the platform said, for the inspector.
    """

    receipt_id: str
    received_at: str = ""
    duplicate: bool = False
    detail: str = ""


class TransportError(EnmonError):
    """The platform did not acknowledge the document."""

    retryable = True

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        self.reason, self.status = reason, status
        super().__init__(reason)


class RetryableError(TransportError):
    """Not acknowledged this time: the outbox tries again after a backoff."""

    retryable = True

    def __init__(self, reason: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(reason, status=status)
        self.retry_after_s = retry_after_s


class PermanentError(TransportError):
    """Refused for good: resending the same revision cannot succeed."""

    retryable = False


@runtime_checkable
class Transport(Protocol):
    """One platform connection; used by one sender loop, closed with ``aclose``."""

    name: str

    async def send(self, document: Mapping[str, Any], record_id: str, revision: int) -> Receipt:
        """Send ``document`` as ``revision`` of ``record_id`` (1 = new, >1 = update)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def available() -> list[str]:
    """Names of the transports installed in this package (one module each)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load_module(name: str) -> Any:
    """The transport module ``upload.transport.NAME`` (ValueError if there is none)."""
    if name not in available():
        raise ValueError(f"unknown transport {name!r}; available: {', '.join(available())}")
    return importlib.import_module(f"{__name__}.{name}")


def create(config: UploadConfig) -> Transport:
    """Build the transport the config names."""
    transport: Transport = load_module(config.transport).create(config)
    return transport
