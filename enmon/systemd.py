"""The systemd notification protocol (``sd_notify``, ``Watchdog``), without libsystemd.

The gateway runs under ``Type=notify`` + ``WatchdogSec=`` (see ``deploy/pi/``) and ingest
signals readiness the same way: this is the contract between the unit files and the code.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

# --------------------------------------------------------------------------- systemd


def sd_notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``READY=1`` / ``WATCHDOG=1`` / ``STATUS=…`` to systemd; False if not under it.

    The protocol is one datagram to ``$NOTIFY_SOCKET`` (``@`` = abstract socket),
    so the gateway needs no libsystemd binding on the Pi.
    """
    env = os.environ if environ is None else environ
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return False
    target = "\0" + addr[1:] if addr.startswith("@") else addr
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(target)
        s.sendall(message.encode())
    return True


class Watchdog:
    """Pets systemd's watchdog at half its period, from the loop that proves liveness.

    Call :meth:`alive` from the poll loop after each completed cycle: if the loop
    hangs (a stuck serial read, a deadlock), the pets stop and systemd restarts
    the gateway after ``WatchdogSec``. Pets more often than needed are dropped,
    so calling it every cycle costs nothing.
    """

    def __init__(
        self, *, environ: Mapping[str, str] | None = None, clock: Any = time.monotonic
    ) -> None:
        env = os.environ if environ is None else environ
        self._env = env
        self._clock = clock
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        enabled = bool(usec) and (not pid or pid == str(os.getpid()))
        self.interval: float | None = int(usec) / 2e6 if enabled and usec else None
        self._last = -float("inf")

    def alive(self) -> bool:
        """Send ``WATCHDOG=1`` if due; True when a datagram was sent."""
        if self.interval is None:
            return False
        now = self._clock()
        if now - self._last < self.interval:
            return False
        self._last = now
        return sd_notify("WATCHDOG=1", environ=self._env)
