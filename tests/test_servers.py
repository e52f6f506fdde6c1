"""The fixtures really start the servers and stop them again (no stray processes)."""

from __future__ import annotations

import os
from pathlib import Path

from enmon.localrun import InfluxDB1, Mosquitto, VictoriaMetrics
from tests.conftest import INFLUX_DB
from tests.support import influx_query


def test_servers_start_restart_and_stop(
    mosquitto: Mosquitto, influxdb: InfluxDB1, victoria: VictoriaMetrics
) -> None:
    pids = [s.pid for s in (mosquitto, influxdb, victoria)]
    assert all(pids)
    assert influx_query(influxdb.url, INFLUX_DB, "SHOW DATABASES")
    port = mosquitto.port
    mosquitto.kill()
    mosquitto.start()
    assert mosquitto.port == port and mosquitto.running
    for s in (mosquitto, influxdb, victoria):
        pid = s.pid
        s.stop()
        assert pid is not None
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"{s.name} pid {pid} still running after stop()"


def test_free_ports_are_never_handed_out_twice() -> None:
    from enmon.localrun import free_port

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_server_that_dies_at_start_fails_fast(tmp_path: Path) -> None:
    """influxd that cannot bind exits at once; start() says so instead of waiting 30 s."""
    import socket
    import time

    import pytest

    from enmon.errors import ServiceError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = InfluxDB1(workdir=tmp_path / "influxd", port=taken.getsockname()[1])
        t0 = time.monotonic()
        with pytest.raises(ServiceError, match="exited"):
            server.start(timeout=30)
        assert time.monotonic() - t0 < 15
