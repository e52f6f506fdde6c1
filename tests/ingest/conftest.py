"""Helpers for ingest tests: a gateway-like publisher, an in-thread worker, read-back."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from enmon.localrun import InfluxDB1, Mosquitto
from enmon.wire import Batch, DeviceMeta, Sample, encode_batch
from ingest.metrics import Stats
from ingest.mqtt import MqttSettings
from ingest.options import BatchConfig, MetricsConfig, TimestampConfig
from ingest.storage import InfluxConfig
from ingest.worker import run_worker
from tests.conftest import INFLUX_DB
from tests.support import influx_rows

SITE = "site-a"
BASE_TS = 1_763_700_000_000  # readings of the stream start here (2025-11-21)


def value_of(gw: str, seq: int, j: int) -> float:
    """A distinct, exactly representable value per reading, so lost or mixed values show."""
    return seq * 1000 + j + (hash(gw) % 7) / 8


def make_batch(gw: str, seq: int, samples: int = 10, site: str = SITE) -> bytes:
    return encode_batch(Batch(
        site=site, gateway=gw, seq=seq, sent_at=BASE_TS + seq * 1000,
        devices={"main": DeviceMeta("b1", "01A00", "electricity", "test")},
        samples=[Sample("main", BASE_TS + seq * samples + j,
                        {"active_power_kw": value_of(gw, seq, j)}) for j in range(samples)]))


def expected_rows(gw: str, seqs: range, samples: int = 10) -> dict[int, float]:
    return {BASE_TS + s * samples + j: value_of(gw, s, j) for s in seqs for j in range(samples)}


class Publisher:
    """A QoS 1 publisher (what a gateway is to ingest)."""

    def __init__(self, server: Mosquitto) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect(server.host, server.port)
        self.client.loop_start()

    def publish(self, payload: bytes, topic: str) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1)

    def publish_all(self, items: list[tuple[str, bytes]], timeout: float = 60) -> None:
        infos = [self.publish(p, t) for t, p in items]
        deadline = time.monotonic() + timeout
        for i in infos:
            i.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            assert i.is_published(), "broker did not take the message"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    p = Publisher(mosquitto)
    yield p
    p.close()


def topic(gw: str, site: str = SITE) -> str:
    return f"enmon/v1/{site}/{gw}/telemetry"


@dataclass
class ThreadWorker:
    """An ingest worker on its own event loop in a thread (stoppable; not killable —
    kill -9 tests use a subprocess)."""

    mqtt: MqttSettings
    influx: InfluxConfig
    batch: BatchConfig = field(default_factory=BatchConfig)
    metrics: MetricsConfig = field(default_factory=lambda: MetricsConfig(
        stats_interval_s=1.0, completeness_interval_s=0))
    timestamps: TimestampConfig = field(default_factory=lambda: TimestampConfig(
        past_flag_s=10 * 365 * 86_400))
    stats: Stats = field(default_factory=Stats)
    error: BaseException | None = None

    def start(self) -> ThreadWorker:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        assert self._ready.wait(30), f"worker not subscribed: {self.error!r}"
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(run_worker(
                mqtt=self.mqtt, influx=self.influx, group="ingest", stop=self._stop,
                batch=self.batch, timestamps=self.timestamps, metrics=self.metrics,
                stats=self.stats, on_ready=self._ready.set))
        except BaseException as exc:
            self.error = exc
        finally:
            self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "worker did not stop"


def influx_cfg(server: InfluxDB1) -> InfluxConfig:
    return InfluxConfig(api="v1", url=server.url, database=INFLUX_DB)


def mqtt_cfg(server: Mosquitto, client_id: str = "ingest-1") -> MqttSettings:
    return MqttSettings(host=server.host, port=server.port, client_id=client_id)


def stored(server: InfluxDB1, gw: str) -> dict[int, float]:
    rows = influx_rows(server.url, INFLUX_DB,
                       f"SELECT active_power_kw FROM meter WHERE gateway='{gw}'")
    return {int(r["time"]): float(r["active_power_kw"]) for r in rows}


def count(server: InfluxDB1, q: str) -> int:
    rows: list[dict[str, Any]] = influx_rows(server.url, INFLUX_DB, q)
    return int(rows[0]["count"]) if rows else 0
