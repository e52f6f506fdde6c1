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

from enmon.influx import InfluxConfig
from enmon.localrun import InfluxDB1, Mosquitto
from enmon.wire import Batch, DeviceMeta, Sample, encode_batch
from ingest.metrics import Stats
from ingest.mqtt import MqttSettings
from ingest.options import BatchConfig, MetricsConfig, TimestampConfig
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
    kill -9 tests use a subprocess). ``with ThreadWorker(...) as w:`` stops it however
    the block ends."""

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

    def __enter__(self) -> ThreadWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


class Stream:
    """Publish ``items`` at a bounded rate from a thread (a gateway fleet's stream)."""

    def __init__(self, pub: Publisher, items: list[tuple[str, bytes]], rate_per_s: float) -> None:
        self.pub, self.items, self.rate = pub, items, rate_per_s
        self.sent = 0
        self._infos: list[paho.MQTTMessageInfo] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        for i, (t, p) in enumerate(self.items):
            due = t0 + i / self.rate
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)  # pacing the producer, not waiting for a result
            self._infos.append(self.pub.publish(p, t))
            self.sent = i + 1

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "stream did not finish"
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            assert info.is_published()


def write_ingest_config(path: Any, mq: Mosquitto, influx: InfluxDB1, **extra: Any) -> Any:
    import yaml

    data = {
        "mqtt": {"host": mq.host, "port": mq.port, "client_id": "unused"},
        "influx": {"api": "v1", "url": influx.url, "database": INFLUX_DB},
        "metrics": {"stats_interval_s": 0.5, "completeness_interval_s": 0},
        "timestamps": {"past_flag_s": 10 * 365 * 86_400},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


class ProcWorker:
    """``enmon ingest run`` as a real process, for kill -9."""

    def __init__(self, cfg: Any, client_id: str, workdir: Any) -> None:
        from enmon.localrun import Part

        self.part = Part(name=client_id, workdir=workdir,
                         args=["ingest", "run", "-c", str(cfg), "--client-id", client_id])

    def _subscribed(self) -> int:
        return self.part.log_tail(10**7).count("event=subscribed")

    def start(self, timeout: float = 30) -> ProcWorker:
        from tests.support import wait_until

        before = self._subscribed()
        self.part.start()
        wait_until(lambda: self._subscribed() > before or not self.part.running, timeout,
                   f"{self.part.name} subscribed")
        assert self.part.running, self.part.log_tail()
        return self

    def kill(self) -> None:
        self.part.kill()

    def stop(self) -> None:
        self.part.stop()


def stored_count(server: InfluxDB1, gw_regex: str = ".*") -> int:
    return count(server, f"SELECT count(active_power_kw) FROM meter WHERE gateway =~ /{gw_regex}/")


class AuthInfluxDB1(InfluxDB1):
    """influxd 1.6 with ``auth-enabled = true`` and an admin user (for user/password paths)."""

    def command(self) -> list[str]:
        cmd = super().command()
        conf = self.workdir / "influxdb.conf"
        conf.write_text(conf.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n"))
        return cmd


@pytest.fixture
def auth_influxdb(tmp_path: Any) -> Iterator[AuthInfluxDB1]:
    import urllib.parse
    import urllib.request

    server = AuthInfluxDB1(workdir=tmp_path / "influxd-auth")
    server.start()
    # the first admin may be created without credentials; afterwards everything needs them
    data = urllib.parse.urlencode(
        {"q": "CREATE USER admin WITH PASSWORD 'secret-pw' WITH ALL PRIVILEGES"}).encode()
    with urllib.request.urlopen(f"{server.url}/query", data=data, timeout=10) as r:
        assert r.status == 200
    yield server
    server.stop()
