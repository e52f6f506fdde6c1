"""DL/T 645 multi-meter discovery on one bus by the wildcard-address tree search, against
the simulator, whose meters all answer a wildcard they match — so they collide on the
wire as real ones do."""

from __future__ import annotations

import logging

import pytest

from firmware_sim.dlt645_meter import Dlt645Server, Meter
from firmware_sim.rtu import LineServer
from gateway import dlt645 as d
from gateway import library
from gateway.discovery import children, discover, pattern
from gateway.transport import SerialLink


def test_patterns_and_matching() -> None:
    assert pattern([]) == d.BROADCAST
    assert pattern([1]) == "AAAAAAAAAA01"
    assert pattern([1, 23]) == "AAAAAAAA2301"
    assert d.address_bytes("AAAAAAAAAA01") == bytes([0x01, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA])
    assert d.address_matches("AAAAAAAA2301", "000000002301")
    assert not d.address_matches("AAAAAAAA2301", "000000002401")
    with pytest.raises(ValueError):
        d.address_bytes("0000AA000001")  # a wildcard only in the high bytes
    assert len(list(children([5]))) == 100 and list(children([1, 2, 3, 4, 5, 6])) == []


@pytest.mark.parametrize("name", ["chint-dtsu666-dlt645", "generic-dlt645-1997"])
async def test_discover_three_meters_two_sharing_the_low_byte(
        name: str, servers: list[LineServer], caplog: pytest.LogCaptureFixture) -> None:
    p = library.load(name)
    assert isinstance(p, d.Dlt645Profile)
    addresses = ["000000000101", "000000000201", "000012345603"]
    vals = {"active_energy_import_kwh": 10.0}
    srv = Dlt645Server({a: Meter(p, vals) for a in addresses}, link="pty")
    servers.append(srv.start())
    link = SerialLink(srv.device)
    with caplog.at_level(logging.INFO, logger="enmon.gateway.discovery"):
        found = await discover(link, version=p.version, timeout=0.03, inter_frame_s=0.001)
    await link.close()
    assert found == sorted(addresses)
    # 1 broadcast + 100 for the low byte + 100 under the colliding 01
    assert any("requests=201" in m for m in caplog.messages), caplog.messages
    assert sum("event=collision" in m for m in caplog.messages) == 2


async def test_discover_on_an_empty_bus(servers: list[LineServer]) -> None:
    srv = Dlt645Server({}, link="pty")
    servers.append(srv.start())
    link = SerialLink(srv.device)
    assert await discover(link, timeout=0.05) == []  # one request, silence
    await link.close()


def test_scan_command_lists_every_1997_meter() -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    p = library.load("generic-dlt645-1997")
    srv = Dlt645Server({a: Meter(p, {}) for a in ("000000000011", "000000000012")}).start()  # type: ignore[arg-type]
    try:
        r = CliRunner().invoke(app, ["scan", "--serial", srv.device, "--protocol", "dlt645-1997",
                                     "--timeout", "0.03"])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    assert "000000000011" in r.output and "000000000012" in r.output and "2 found" in r.output
