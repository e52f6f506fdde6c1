"""`kill -9` of `enmon rules run` in the middle of a firing alert: no repeat, nothing forgotten."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from enmon import wire
from enmon.localrun import InfluxDB1, Mosquitto, Part
from tests.conftest import INFLUX_DB
from tests.rules.conftest import Receiver, free_port
from tests.rules.test_service import batch, until
from tests.support import influx_rows

pytestmark = pytest.mark.slow


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


async def test_kill_9_mid_firing_neither_renotifies_nor_forgets(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver) -> None:
    api = free_port()
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(yaml.safe_dump({
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "rules-crash"},
        "influx": {"url": influxdb.url, "database": INFLUX_DB},
        "state_dir": "state",
        "http": {"host": "127.0.0.1", "port": api},
        "channels": [{"type": "webhook", "name": "hook", "url": receiver.url + "/hook"}],
        "thresholds": [{"name": "peak_demand", "quantity": "active_power_kw", "above": 50.0,
                        "clear_below": 45.0, "for_s": 0.0}],
    }))
    part = Part(name="rules", args=["rules", "run", "-c", str(cfg)], workdir=tmp_path)
    topic = wire.telemetry_topic("campus", "gw-01")
    t0 = int(time.time() * 1000) - 60_000

    async def send(payload: bytes) -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port,
                                  identifier=f"pub-{time.monotonic_ns()}") as c:
            await c.publish(topic, payload, qos=1)

    def alerts() -> list[dict[str, Any]]:
        return list(get(f"http://127.0.0.1:{api}/alerts"))

    def kinds() -> list[str]:
        return [json.loads(r["body"])["kind"] for r in receiver.requests]

    try:
        part.start()
        await until(lambda: "event=rules_started" in part.log_tail(10_000), "rules started", 30)
        await send(batch(1, t0, 60.0))
        await until(lambda: kinds() == ["firing"], "firing webhook", 30)
        # the outbox records the delivery once the receiver has answered; a kill -9 before
        # that record is at-least-once territory (the next start sends it again, same
        # fingerprint and ts): kill after it, where nothing may be repeated
        await until(lambda: "event=notified channel=hook" in part.log_tail(100_000),
                    "the delivery recorded", 30)
        part.kill()  # SIGKILL: no goodbye, no flush

        part.start()
        await until(lambda: part.log_tail(100_000).count("event=rules_started") >= 2,
                    "restarted", 30)
        restored = await asyncio.to_thread(until_sync, alerts)
        assert [a["state"] for a in restored] == ["firing"]
        await send(batch(2, t0 + 1000, 48.0))  # still above the clear level
        await until(lambda: [a["value"] for a in alerts()] == [48.0], "reading seen", 30)
        await send(batch(3, t0 + 2000, 40.0))
        await until(lambda: "resolved" in kinds(), "resolved webhook", 30)
        assert kinds() == ["firing", "resolved"]
        rows = await until(lambda: len(influx_rows(influxdb.url, INFLUX_DB,
                                                   "SELECT * FROM alert")) >= 3 and
                           influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM alert"),
                           "alert history", 30)
        assert sorted(r["state"] for r in rows) == ["firing", "pending", "resolved"]
    finally:
        part.stop()


def until_sync(fn: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return fn()
        except OSError:  # the API is not listening yet
            time.sleep(0.05)
    raise AssertionError("rules API never answered")
