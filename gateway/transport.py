"""Byte links to field buses: a serial port (RS-485 adapter or pty) or a TCP socket.

The bus scheduler speaks to a :class:`Link`: write a request, then read one
answer frame whose length a framing-specific function decides, within a
deadline. Serial ports are opened with pyserial (portable settings: baud,
parity, stop bits) and then read without threads via the event loop's
``add_reader`` on the port's file descriptor. Anything left in the input after
a frame is garbage on a half-duplex bus and is flushed before the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Literal

from enmon.errors import DriverError

LengthFn = Callable[[bytes], int | None]


class LinkTimeout(DriverError):
    """No complete answer within the device's timeout."""


class LinkError(DriverError):
    """The link itself failed (port vanished, TCP connection refused or reset)."""


class LinkGarbled(DriverError):
    """Bytes arrived, then the line went quiet before a complete frame: noise or a cut answer."""


class Link:
    """Base: ``transact`` = flush, write, read one frame.

    Bytes arrive from a callback or a reader task into a buffer (``_received``) that
    ``transact`` drains; the event wakes it when more arrive.
    """

    name = "link"
    #: an answer that stops for this long before it is complete is garbage (None: never)
    quiet_s: float | None = None

    def __init__(self) -> None:
        self._buf = bytearray()
        self._event = asyncio.Event()

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    def _received(self, data: bytes) -> None:
        self._buf += data
        self._event.set()

    def _take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        self._event.clear()
        return data

    async def _wait_data(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)

    def flush_input(self) -> int:
        return len(self._take())

    def is_open(self) -> bool:
        raise NotImplementedError

    async def transact(self, request: bytes | None, length: LengthFn, timeout: float, *,
                       quiet: bool = True) -> bytes:
        """Send ``request`` (None: just listen) and return one frame of ``length(buf)`` bytes.

        ``quiet``: treat a pause of ``quiet_s`` inside an incomplete answer as garbage (off
        for streaming instruments, whose pauses between lines are normal).
        """
        quiet_s = self.quiet_s if quiet else None
        if not self.is_open():
            await self.open()
        self.flush_input()
        if request is not None:
            await self.write(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        buf = b""
        last_rx = 0.0
        while True:
            chunk = self._take()
            if chunk:
                buf += chunk
                last_rx = loop.time()
            n = length(buf)
            if n is not None and len(buf) >= n:
                return buf[:n]
            now = loop.time()
            if buf and quiet_s is not None and now - last_rx >= quiet_s:
                raise LinkGarbled(f"{self.name}: {len(buf)} bytes then silence: {buf[:24].hex()}")
            left = deadline - now
            if left <= 0:
                raise LinkTimeout(f"{self.name}: no complete answer in {timeout:.3f}s"
                                  + (f" (got {len(buf)} bytes)" if buf else ""))
            wait = left if not buf or quiet_s is None else min(left, quiet_s)
            await self._wait_data(wait)


class SerialLink(Link):
    """An RS-485 adapter (``/dev/ttyUSB0``) or a pty, via pyserial and ``add_reader``."""

    def __init__(self, port: str, *, baud: int = 9600, parity: Literal["N", "E", "O"] = "N",
                 stopbits: Literal[1, 2] = 1, bytesize: int = 8) -> None:
        super().__init__()
        self.port, self.baud, self.parity, self.stopbits, self.bytesize = (
            port, baud, parity, stopbits, bytesize)
        self.name = port
        # 20 character times (a real answer never pauses that long), at least 20 ms
        self.quiet_s = max(0.02, 20 * 11 / baud)
        self._ser: object | None = None

    async def open(self) -> None:
        import serial  # gateway extra

        try:
            ser = serial.Serial(self.port, self.baud, bytesize=self.bytesize, parity=self.parity,
                                stopbits=self.stopbits, timeout=0, write_timeout=2)
        except Exception as exc:  # SerialException, OSError, termios.error (bad settings)
            raise LinkError(f"cannot open {self.port}: {exc}") from None
        self._ser = ser
        asyncio.get_running_loop().add_reader(ser.fileno(), self._on_readable)

    def is_open(self) -> bool:
        return self._ser is not None

    def _on_readable(self) -> None:
        ser = self._ser
        try:
            data = ser.read(4096) if ser is not None else b""  # type: ignore[attr-defined]
        except Exception:  # the port vanished (USB adapter unplugged)
            data = b""
        if data:
            self._received(data)

    async def close(self) -> None:
        ser = self._ser
        self._ser = None
        if ser is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(ser.fileno())  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                ser.close()  # type: ignore[attr-defined]

    async def write(self, data: bytes) -> None:
        if self._ser is None:
            await self.open()
        try:
            self._ser.write(data)  # type: ignore[union-attr]
        except Exception as exc:
            await self.close()
            raise LinkError(f"{self.port}: write failed: {exc}") from None

class TcpLink(Link):
    """Modbus TCP, or an RTU-over-TCP / DL/T 645-over-TCP serial server."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 3.0) -> None:
        super().__init__()
        self.host, self.port, self.connect_timeout = host, port, connect_timeout
        self.name = f"{host}:{port}"
        self.quiet_s = 0.25  # a segment split across the network may pause; garbage still ends
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise LinkError(f"cannot connect to {self.name}: {exc or 'timeout'}") from None
        self._pump = asyncio.create_task(self._read_loop())

    def is_open(self) -> bool:
        return self._writer is not None

    async def _read_loop(self) -> None:
        assert self._reader is not None
        while True:
            try:
                data = await self._reader.read(4096)
            except OSError:
                data = b""
            if not data:
                self._writer = None
                self._event.set()
                return
            self._received(data)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
            self._pump = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._writer = None

    async def write(self, data: bytes) -> None:
        if self._writer is None:
            await self.close()
            await self.open()
        if self._writer is None:
            raise LinkError(f"{self.name}: not connected")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            await self.close()
            raise LinkError(f"{self.name}: write failed: {exc}") from None

    async def _wait_data(self, timeout: float) -> None:
        if self._writer is None and self._pump is not None and self._pump.done():
            await self.close()
            raise LinkError(f"{self.name}: connection closed by peer")
        await super()._wait_data(timeout)
