"""Independent check of the gateway's RTU master: pymodbus' own RTU server.

Two pty ends linked by socat stand in for an RS-485 cable: pymodbus'
``ModbusSerialServer`` (firmware_sim.modbus_tcp with ``serial_port``) on one end,
the production bus scheduler on the other. If our framing, CRC or timing were
wrong in a way our own simulator shares, this is where it shows.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.modbus_tcp import ModbusMeterServer
from gateway import library
from gateway.bus import Bus, BusDevice, Timing
from gateway.drivers import ModbusDriver
from gateway.profile import ModbusProfile
from gateway.transport import SerialLink
from tests.support import wait_until


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[tuple[str, str]]:
    socat = shutil.which("socat")
    assert socat, "socat is a CI dependency (apt-get install socat)"
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: a.exists() and b.exists(), 10, "socat pty pair")
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize("name", ["eastron-sdm630", "acrel-adl400", "schneider-iem3255"])
async def test_gateway_master_reads_pymodbus_rtu_server(cable: tuple[str, str],
                                                        name: str) -> None:
    p = library.load(name)
    assert isinstance(p, ModbusProfile)
    values = {"voltage_l1_v": 231.4, "active_energy_import_kwh": 4321.5, "active_power_kw": 2.5}
    server = ModbusMeterServer(p, lambda now: values, serial_port=cable[0], unit_id=9)
    await server.start()
    try:
        dev = BusDevice(ModbusDriver("m", p, 9, gap=0), Timing(timeout_s=2.0, retries=1))
        bus = Bus("rtu", SerialLink(cable[1], baud=9600), [dev])
        t0 = time.monotonic()
        reading = await bus.poll_device(dev)
        await bus.close()
    finally:
        await server.stop()
    assert time.monotonic() - t0 < 10
    for q, v in values.items():
        assert reading.values[q] == pytest.approx(v, rel=1e-6), q
    assert reading.complete and dev.stats.frame_errors == 0
