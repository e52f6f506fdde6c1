"""Shared fixtures: the real servers, each on a free loopback port in its own temp dir.

Every test that needs MQTT or storage gets a fresh mosquitto / influxd /
victoria-metrics of its own (they start in ~0.1 s), so tests cannot leak state
into each other and a fault-injection test may stop, kill and restart its
server freely (``server.stop()``, ``server.kill()``, ``server.start()``: same
port, same data dir).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enmon.localrun import InfluxDB1, Mosquitto, VictoriaMetrics

INFLUX_DB = "enmon"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(workdir=tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB1]:
    """influxd 1.6 with database ``enmon`` created (see ``influxdb.url``, ``INFLUX_DB``)."""
    server = InfluxDB1(workdir=tmp_path / "influxd")
    server.start()
    data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{INFLUX_DB}"'}).encode()
    with urllib.request.urlopen(f"{server.url}/query", data=data, timeout=10) as r:
        assert r.status == 200
    yield server
    server.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(workdir=tmp_path / "victoria")
    server.start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault table of the fault tests that ran (tests.support.record_fault)."""
    from tests.support import FAULT_ROWS, fault_table

    if not FAULT_ROWS:
        return
    table = fault_table()
    terminalreporter.section("fault table: readings end to end")
    terminalreporter.write_line(table)
    out = Path(__file__).resolve().parents[1] / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "fault-table.md").write_text(table + "\n", encoding="utf-8")
