"""Every command result lands in InfluxDB ``command``, once; a bad one in ``rejected``.

Real mosquitto with the generated ACL (the ingest identity reads, the gateway identity
publishes its own results and telemetry), a real ingest worker and real influxd. The
results have the shape the gateway's ``Commander._answer`` publishes, built here so the
test does not need a Modbus slave (tests/gateway/test_commands.py covers that side).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal
from enmon.localrun import InfluxDB1, Mosquitto
from gateway.commands import result_topic
from ingest.mqtt import MqttSettings
from tests.conftest import INFLUX_DB
from tests.ingest.conftest import (
    SITE,
    ThreadWorker,
    expected_rows,
    influx_cfg,
    make_batch,
    stored,
    topic,
)
from tests.support import influx_rows, wait_until

GW = "gw-01"
TS = int(time.time() * 1000) - 60_000  # a result a minute old: within ingest's time limits


def result(**over: Any) -> bytes:
    """A result as the gateway publishes it (gateway.commands.CommandService._answer)."""
    r: dict[str, Any] = {
        "v": 1, "id": "a" * 32, "site": SITE, "gateway": GW, "device": "main",
        "action": "write", "target": "demand_period_min", "value": "15", "status": "ok",
        "reason": "", "detail": "", "ts": TS, "seq": 1, "issued_at": TS // 1000 - 1,
        "key_id": "ops-1", "readback": 15.0, "registers": [0x4170, 0]}
    r.update(over)
    return json.dumps({k: v for k, v in r.items() if v is not None},
                      separators=(",", ":")).encode()


class Client:
    """A QoS 1 publisher logged in as one identity of the generated credentials."""

    def __init__(self, broker: Mosquitto, secrets: Path, user: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=user,
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set(user, password(secrets, user))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish_all(self, items: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in items]
        for i in infos:
            i.wait_for_publish(timeout=10)
            assert i.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def password(secrets: Path, user: str) -> str:
    return (secrets / "clients" / user / "password").read_text().strip()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    secrets = tmp_path / "secrets"
    make_credentials(secrets, add=[gateway_principal(SITE, GW), service_principal("ingest")])
    broker = Mosquitto(workdir=tmp_path / "mq",
                       extra_conf=(secrets / "broker/enmon-listener.conf").read_text())
    broker.start()
    try:
        yield broker, secrets
    finally:
        broker.stop()


def commands(influxdb: InfluxDB1) -> list[dict[str, Any]]:
    return influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM command")


def test_results_stored_once_beside_telemetry_and_bad_ones_rejected(
        secured: tuple[Mosquitto, Path], influxdb: InfluxDB1) -> None:
    broker, secrets = secured
    mqtt = MqttSettings(host=broker.host, port=broker.port, client_id="ingest",
                        username="ingest", password=password(secrets, "ingest"))
    gw = Client(broker, secrets, f"{SITE}.{GW}")
    res = result_topic(SITE, GW)
    refused_id = uuid.uuid4().hex
    good = [(res, result()), (res, result()),  # the same result twice: one point
            (res, result(id=refused_id, status="refused", reason="not_allowed",
                         detail="not in the writable list", ts=TS + 1, seq=2, readback=None,
                         registers=None, issued_at=TS // 1000, key_id="ops-2"))]
    bad = [(res, b"{not json"),
           (res, result(gateway="gw-02")),  # payload says another gateway
           (res, result(status="maybe", ts=TS + 2))]
    telemetry = [(topic(GW), make_batch(GW, s)) for s in range(40)]
    # interleaved: results in the middle of a telemetry stream
    items = telemetry[:20] + good + bad + telemetry[20:]
    try:
        with ThreadWorker(mqtt, influx_cfg(influxdb)) as w:
            gw.publish_all(items)
            want = expected_rows(GW, range(40))
            wait_until(lambda: stored(influxdb, GW) == want, 30, "every reading stored")
            rows = wait_until(lambda: (r := commands(influxdb)) and len(r) == 2 and r, 15,
                              "both command results in `command`")
            rej = wait_until(lambda: (r := influx_rows(
                influxdb.url, INFLUX_DB, "SELECT * FROM rejected")) and len(r) == 3 and r,
                15, "the three bad results in `rejected`")
            wait_until(lambda: w.stats.acked == len(items), 15, "every message acked")
            assert w.stats.rejected == {"bad_json": 1, "topic_mismatch": 1, "bad_type": 1}
            assert stored(influxdb, GW) == want  # nothing extra in `meter`
        assert w.error is None
    finally:
        gw.close()
    ok, refused = sorted(rows, key=lambda r: r["time"])
    assert ok == {"time": TS, "site": SITE, "gateway": GW, "device": "main", "outcome": "ok",
                  "slot": "1", "command_id": "a" * 32, "action": "write",
                  "target": "demand_period_min", "value": "15", "reason": "", "detail": "",
                  "seq": 1, "readback": 15.0, "registers": "16752,0",
                  "issued_at": TS // 1000 - 1, "key_id": "ops-1"}
    assert (refused["outcome"], refused["reason"], refused["command_id"], refused["time"],
            refused["issued_at"], refused["key_id"], refused["readback"]) == (
        "refused", "not_allowed", refused_id, TS + 1, TS // 1000, "ops-2", None)
    assert sorted((r["reason"], r["site"], r["gateway"], r["topic"]) for r in rej) == [
        ("bad_json", SITE, GW, res), ("bad_type", SITE, GW, res),
        ("topic_mismatch", SITE, GW, res)]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff\xfe", "not_utf8"), (b"[1]", "not_object"), (result(v=2), "bad_version"),
    (b'{"v":1,"site":"site-a","gateway":"gw-01","status":"ok"}', "missing_field"),
    (result(site="x/y"), "bad_id"), (result(ts=12), "ts_out_of_range"),
    (result(ts=True), "ts_out_of_range"), (result(ts=TS + 10**12), "ts_out_of_range"),
    (result(readback=float("nan")), "bad_type"),
    (result(readback=float("inf")), "bad_type"), (result(registers=[70000]), "bad_type"),
    (result(id="short"), "bad_type"), (result(device="a b"), "bad_id"),
    (result(value="1e5"), "bad_type"), (result(detail=5), "bad_type"),
    (result(value="maybe"), "bad_type"), (result(action="reboot"), "bad_type"),
    (result(seq=-1), "bad_type"), (result(seq="7"), "bad_type"),
    (result(coils=[2]), "bad_type"), (result(coils=[True]), "bad_type"),
    (result(offset_s=float("nan")), "bad_type"), (result(clock="yesterday"), "bad_type"),
    (result(detail="x" * 9000), "too_large"), (b"[" * 3000 + b"]" * 3000, "bad_json"),
])
def test_a_bad_result_is_one_rejected_record(payload: bytes, reason: str) -> None:
    from ingest.pipeline import Processor

    p = Processor(worker="w").process(payload, result_topic(SITE, GW), int(time.time() * 1000))
    assert p.reasons == [reason] and len(p.lines) == 1
    assert p.lines[0].startswith(f"rejected,gateway={GW},reason={reason},site={SITE},")
    assert p.seq is None  # no end-to-end ack for a result


def test_a_result_on_the_alert_subtree_is_refused() -> None:
    from ingest.pipeline import Processor

    p = Processor(worker="w").process(result(gateway="alerts"), result_topic(SITE, "alerts"),
                                      int(time.time() * 1000))
    assert p.reasons == ["bad_id"] and p.lines[0].startswith("rejected,")


def test_unclean_detail_is_escaped_and_stored() -> None:
    from ingest.pipeline import Processor

    p = Processor(worker="w").process(result(detail="bad\ud800\x00\n"),
                                      result_topic(SITE, GW), int(time.time() * 1000))
    assert p.reasons == [] and len(p.lines) == 1
    assert p.lines[0].startswith(
        f"command,device=main,gateway={GW},outcome=ok,site={SITE},slot=1 ")
    # safe_text escapes the lone surrogate and the controls; line protocol escapes the "\\"
    assert 'detail="bad\\\\ud800\\\\x00\\\\x0a"' in p.lines[0] and p.lines[0].endswith(f" {TS}")


def test_two_results_in_one_millisecond_are_two_points_and_a_resend_is_one(
        secured: tuple[Mosquitto, Path], influxdb: InfluxDB1) -> None:
    """Two answers of one device with the same outcome in the same millisecond (a gateway
    answering a burst; two gateways' clocks are not the case: the gateway tag differs)
    are two points, told apart by the bounded ``slot`` tag (seq mod 16); the same answer
    delivered again is still one. Coil, time-sync and pre-``seq`` results keep their
    fields. On the old series key (no slot) the second answer overwrote the first."""
    broker, secrets = secured
    mqtt = MqttSettings(host=broker.host, port=broker.port, client_id="ingest",
                        username="ingest", password=password(secrets, "ingest"))
    gw = Client(broker, secrets, f"{SITE}.{GW}")
    res = result_topic(SITE, GW)
    at = TS + 500
    first = result(id="b" * 32, seq=7, ts=at, status="refused", reason="replayed",
                   readback=None, registers=None)
    second = result(id="c" * 32, seq=8, ts=at, status="refused", reason="expired",
                    readback=None, registers=None)
    coil = result(id="d" * 32, seq=9, ts=at + 1, target="pump_run", value="on",
                  readback=1, registers=None, coils=[1])
    sync = result(id="e" * 32, seq=10, ts=at + 2, device="m1", action="time_sync",
                  target="time_sync", value="now", readback=None, registers=None,
                  clock_before="2026-12-03 12:02:00", clock="2026-12-03 12:00:01",
                  offset_before_s=119.6, offset_s=0.4)
    legacy = [result(id=c * 32, seq=None, action=None, issued_at=None, key_id=None,
                     ts=at + 3) for c in ("f", "0")]  # their ids' crc32 slots: 1 and 0
    items = [(res, p) for p in (first, second, first, coil, sync, *legacy)]
    try:
        with ThreadWorker(mqtt, influx_cfg(influxdb)) as w:
            gw.publish_all(items)
            wait_until(lambda: w.stats.acked == len(items), 15, "every result acked")
            rows = wait_until(lambda: (r := commands(influxdb)) and len(r) == 6 and r, 15,
                              "six command points")
        assert w.error is None
    finally:
        gw.close()
    by_id = {r["command_id"]: r for r in rows}
    assert sorted(by_id) == sorted(c * 32 for c in "bcdef0")  # none lost, none twice
    assert (by_id["b" * 32]["time"], by_id["c" * 32]["time"]) == (at, at)
    assert (by_id["b" * 32]["reason"], by_id["c" * 32]["reason"]) == ("replayed", "expired")
    assert (by_id["b" * 32]["slot"], by_id["c" * 32]["slot"]) == ("7", "8")
    assert (by_id["d" * 32]["coils"], by_id["d" * 32]["readback"],
            by_id["d" * 32]["value"]) == ("1", 1.0, "on")
    s = by_id["e" * 32]
    assert (s["action"], s["device"], s["clock_before"], s["clock"], s["offset_before_s"],
            s["offset_s"]) == ("time_sync", "m1", "2026-12-03 12:02:00",
                               "2026-12-03 12:00:01", 119.6, 0.4)
    assert {r["slot"] for r in legacy_rows(rows)} == {"1", "0"}
    assert all(0 <= int(r["slot"]) < 16 for r in rows)  # bounded: 16 series at most


def legacy_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["seq"] is None]
