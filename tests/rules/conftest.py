"""Fixtures of the rules tests: a local HTTP receiver and a local SMTP server (STARTTLS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from enmon.localrun import free_port


@dataclass
class Receiver:
    """A real HTTP server on loopback that records requests and answers as told."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    reply: dict[str, Any] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"path": request.path, "query": dict(request.query),
                              "headers": dict(request.headers), "body": body})
        self.arrived.set()
        return web.json_response(self.reply, status=self.status)

    async def wait_for(self, n: int, timeout: float = 20.0) -> None:
        async def _wait() -> None:
            while len(self.requests) < n:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(_wait(), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the SMTP server's STARTTLS identity)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Smtp:
    host: str
    port: int
    cafile: str
    messages: list[Any]


@pytest.fixture
def smtp_server(tls_cert: tuple[Path, Path]) -> Iterator[Smtp]:
    """aiosmtpd on loopback that *requires* STARTTLS before accepting mail."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list[Any] = []

    class Keep(Message):
        def handle_message(self, message: Any) -> None:
            got.append(message)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
    port = free_port()
    ctl = Controller(Keep(), hostname="127.0.0.1", port=port, tls_context=ctx,
                     require_starttls=True)
    ctl.start()
    yield Smtp("127.0.0.1", port, str(tls_cert[0]), got)
    ctl.stop()


@pytest.fixture
def smtps_server(tls_cert: tuple[Path, Path]) -> Iterator[Smtp]:
    """aiosmtpd speaking TLS from the first byte (SMTPS, as on port 465): a client that
    sends plain SMTP or STARTTLS gets no greeting."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list[Any] = []

    class Keep(Message):
        def handle_message(self, message: Any) -> None:
            got.append(message)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
    client_ctx = ssl.create_default_context(cafile=str(tls_cert[0]))
    port = free_port()
    ctl = Controller(Keep(), hostname="127.0.0.1", port=port, ssl_context=ctx)
    # the controller's readiness check connects in plain text; give it the TLS client side
    ctl.ssl_context = ctx
    ctl._trigger_server = lambda: _smtps_ping("127.0.0.1", port, client_ctx)  # type: ignore
    ctl.start()
    yield Smtp("127.0.0.1", port, str(tls_cert[0]), got)
    ctl.stop()


def _smtps_ping(host: str, port: int, ctx: Any) -> None:
    import smtplib

    with smtplib.SMTP_SSL(host, port, context=ctx, timeout=5) as s:
        s.noop()
