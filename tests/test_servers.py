"""The fixtures really start the servers and stop them again (no stray processes)."""

from __future__ import annotations

import os

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
