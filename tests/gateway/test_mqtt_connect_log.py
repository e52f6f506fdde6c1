"""A gateway that cannot reach its broker says so: ``event=mqtt_connect_failed`` at WARNING,
once per attempt (paho's backoff step), with the host and port it tried."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from enmon.localrun import free_port
from gateway.config import MQTT
from gateway.diskqueue import DiskQueue
from gateway.mqtt import Uplink


def test_unreachable_broker_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there: connection refused
    up = Uplink(MQTT(host="127.0.0.1", port=port, reconnect_min_s=1, reconnect_max_s=1),
                "s1", "gw1", DiskQueue(tmp_path / "q.db"))
    caplog.set_level(logging.WARNING, logger="enmon")
    up.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            lines = [r.getMessage() for r in caplog.records
                     if "event=mqtt_connect_failed" in r.getMessage()]
            if len(lines) >= 2:
                break
            time.sleep(0.05)
    finally:
        up.client.loop_stop()
    assert len(lines) >= 2, caplog.text
    assert f"host=127.0.0.1 port={port}" in lines[0] and "attempt=1" in lines[0]
    assert "attempt=2" in lines[1]
    assert all(r.levelno == logging.WARNING for r in caplog.records
               if "mqtt_connect_failed" in r.getMessage())
