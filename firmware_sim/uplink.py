"""A TCP relay between a gateway and its broker that a scenario can cut and restore.

"The gateway loses its uplink" must look to the gateway exactly like a 4G outage:
established connections die without a goodbye and new ones are refused, while
the broker stays up for everyone else (so it publishes the gateway's LWT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from enmon.localrun import free_port

log = logging.getLogger("enmon.sim.uplink")


class UplinkProxy:
    """Relays ``host:port`` → ``target``; :meth:`cut` drops everything until :meth:`restore`."""

    def __init__(self, target: tuple[str, int], *, name: str = "uplink",
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target, self.name, self.host = target, name, host
        self.port = port or free_port(host)
        self.down = False
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        self._drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def cut(self) -> None:
        if not self.down:
            self.down, self.cuts = True, self.cuts + 1
            log.info("event=uplink_cut gateway=%s", self.name)
            self._drop_all()

    def restore(self) -> None:
        if self.down:
            self.down = False
            log.info("event=uplink_restored gateway=%s", self.name)

    def _drop_all(self) -> None:
        for w in list(self._writers):
            w.transport.abort()  # RST, no FIN: like a dead radio link
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort() if self.down else dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers.discard(writer)
        self._writers.discard(up_w)

    async def __aenter__(self) -> UplinkProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
