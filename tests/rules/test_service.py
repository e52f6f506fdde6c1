"""The rules service against a real mosquitto, a real influxd and a local HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from enmon import wire
from enmon.localrun import InfluxDB1, Mosquitto
from enmon.wire import Batch, DeviceMeta, Sample
from rules.config import RulesConfig
from rules.service import EngineDied, RulesService
from tests.conftest import INFLUX_DB
from tests.rules.conftest import Receiver, free_port
from tests.support import influx_rows

pytestmark = pytest.mark.slow


def make_cfg(tmp: Path, mq: Mosquitto, influx: InfluxDB1, hook: str, api_port: int) -> RulesConfig:
    return RulesConfig.model_validate({
        "mqtt": {"host": mq.host, "port": mq.port, "client_id": "rules-test"},
        "influx": {"url": influx.url, "database": INFLUX_DB},
        "state_dir": str(tmp / "state"),
        "http": {"host": "127.0.0.1", "port": api_port},
        "channels": [{"type": "webhook", "name": "hook", "url": hook}],
        "thresholds": [{"name": "peak_demand", "quantity": "active_power_kw", "above": 50.0,
                        "clear_below": 45.0, "for_s": 1.0, "repeat_s": 3600}],
        "quality": {"gateway_offline_grace_s": 0},
    })


class Running:
    """A RulesService running in this event loop until stopped."""

    def __init__(self, cfg: RulesConfig) -> None:
        self.svc = RulesService(cfg)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.svc.run(self.stop))

    async def ready(self, mq: Mosquitto) -> None:
        # ready = subscribed: a probe message to our own status topic comes back as a status
        await until(lambda: self.svc.outbox.senders != {}, "service connected")
        await asyncio.sleep(0)  # let the subscribe calls go out

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


async def until(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = check()
        except Exception:  # the server may still be starting
            v = None
        if v:
            return v
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def batch(seq: int, ts: int, kw: float) -> bytes:
    return wire.encode_batch(Batch(
        site="campus", gateway="gw-01", seq=seq, sent_at=ts,
        devices={"main": DeviceMeta(building="office-1", category="01000",
                                    energy_type="electricity")},
        samples=[Sample("main", ts, {"active_power_kw": kw})]))


async def publish_until_seen(mq: Mosquitto, payloads: list[bytes], topic: str,
                             check: Any, what: str) -> None:
    async with aiomqtt.Client(mq.host, mq.port, identifier=f"pub-{time.monotonic_ns()}") as c:
        for p in payloads:
            await c.publish(topic, p, qos=1)
    await until(check, what)


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


async def test_threshold_alert_survives_restart_without_renotifying(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver) -> None:
    api = free_port()
    cfg = make_cfg(tmp_path, mosquitto, influxdb, receiver.url + "/hook", api)
    topic = wire.telemetry_topic("campus", "gw-01")
    alerts_seen: list[dict[str, Any]] = []

    async def watch_alerts() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="watch") as c:
            await c.subscribe("enmon/v1/+/alerts/#", qos=1)
            async for m in c.messages:
                alerts_seen.append(json.loads(m.payload))  # type: ignore[arg-type]

    watcher = asyncio.create_task(watch_alerts())
    run = Running(cfg)
    await run.ready(mosquitto)
    t0 = int(time.time() * 1000)
    hooks = receiver.requests
    # 60 kW for 2 s of reading time: pending, then firing after its 1 s for-duration
    await publish_until_seen(
        mosquitto, [batch(i, t0 + i * 500, 60.0) for i in range(5)], topic,
        lambda: any(json.loads(r["body"])["kind"] == "firing" for r in hooks), "firing webhook")
    firing = json.loads(hooks[0]["body"])
    assert firing["rule"] == "peak_demand" and firing["device"] == "main"
    assert firing["ts"] - firing["since_ms"] >= 1000
    fp = firing["fingerprint"]

    # restart in the middle of the firing alert
    await run.close()
    run = Running(cfg)
    await run.ready(mosquitto)
    assert [a.state.value for a in run.svc.book.alerts.values()] == ["firing"]
    # still above the clear level: no second "firing" (dedup survives the restart) ...
    await publish_until_seen(mosquitto, [batch(10, t0 + 5000, 48.0)], topic,
                             lambda: run.svc.book.alerts[fp].value == 48.0, "reading seen")
    # ... an operator acknowledges over HTTP ...
    # (the API runs in this event loop: call it from a thread)
    from typer.testing import CliRunner

    from rules.cli import app

    url = f"http://127.0.0.1:{api}"
    listed = await asyncio.to_thread(CliRunner().invoke, app,
                                     ["alerts", "--url", url, "--lang", "en"],
                                     env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and fp in listed.output and "firing" in listed.output
    acked = await asyncio.to_thread(CliRunner().invoke, app,
                                    ["ack", fp[:10], "--by", "zhang", "--url", url])
    assert acked.exit_code == 0, acked.output
    assert f"告警 {fp} 已由 zhang 确认" in acked.output  # zh-CN by default
    # a silence for another building does not mute this one
    other = await asyncio.to_thread(post, f"{url}/silences",
                                    {"match": {"building": "lab-*"}, "duration_s": 60})
    assert list(run.svc.book.silences) == [other["id"]]
    # ... and the load falls below 45 kW: resolved, notified once
    await publish_until_seen(
        mosquitto, [batch(11, t0 + 6000, 40.0)], topic,
        lambda: any(json.loads(r["body"])["kind"] == "resolved" for r in hooks), "resolved")
    kinds = [json.loads(r["body"])["kind"] for r in hooks]
    assert kinds == ["firing", "resolved"]
    assert json.loads(hooks[1]["body"])["value"] == 40.0

    # every change is in InfluxDB `alert` and went out on the MQTT alerts topic
    rows = await until(lambda: len(influx_rows(influxdb.url, INFLUX_DB,
                                               "SELECT * FROM alert")) >= 4 and
                       influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM alert"), "alert rows")
    assert [r["state"] for r in sorted(rows, key=lambda r: r["time"])] == \
        ["pending", "firing", "acknowledged", "resolved"]
    assert {r["fingerprint"] for r in rows} == {fp}
    await until(lambda: len([a for a in alerts_seen if "new" in a]) >= 4, "mqtt alert changes")
    assert [a["new"] for a in alerts_seen if "new" in a] == \
        ["pending", "firing", "acknowledged", "resolved"]
    await run.close()
    watcher.cancel()


async def test_gateway_lwt_raises_gateway_offline(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver) -> None:
    cfg = make_cfg(tmp_path, mosquitto, influxdb, receiver.url + "/hook", free_port())
    run = Running(cfg)
    await run.ready(mosquitto)
    status = wire.status_topic("campus", "gw-07")
    # a gateway stand-in: a real MQTT client with a retained last will, killed with SIGKILL
    gw = subprocess.Popen(
        ["mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-i", "gw-07",
         "-t", "enmon/v1/campus/gw-07/cmd", "--will-topic", status, "--will-qos", "1",
         "--will-retain", "--will-payload", '{"state":"offline"}'],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert gw.stdout is not None
        first_line = asyncio.create_task(asyncio.to_thread(gw.stdout.readline))
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="birth") as c:
            # the stand-in is connected once it receives what we send it
            for _ in range(200):
                await c.publish("enmon/v1/campus/gw-07/cmd", b"ping", qos=1)
                done, _ = await asyncio.wait({first_line}, timeout=0.1)
                if done:
                    break
            assert first_line.done(), "gateway stand-in never connected"
            await c.publish(status, wire.dumps({"state": "online"}), qos=1, retain=True)
        await until(lambda: run.svc.engine.gateways.get(("campus", "gw-07"), ("",))[0] == "online",
                    "online status seen")
        assert not any(json.loads(r["body"])["rule"] == "gateway_offline"
                       for r in receiver.requests)
        gw.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker publishes the will
        await until(lambda: any(json.loads(r["body"])["rule"] == "gateway_offline"
                                for r in receiver.requests), "gateway_offline notification", 30)
        note = json.loads(receiver.requests[-1]["body"])
        assert note["gateway"] == "gw-07" and note["severity"] == "critical"
    finally:
        gw.kill()
        gw.wait()
        await run.close()


async def test_engine_hears_again_after_poison_and_a_broker_restart(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver) -> None:
    cfg = make_cfg(tmp_path, mosquitto, influxdb, receiver.url + "/hook", free_port())
    topic = wire.telemetry_topic("campus", "gw-01")
    run = Running(cfg)
    await run.ready(mosquitto)
    await until(lambda: run.svc.connected, "subscribed")
    t0 = int(time.time() * 1000)
    # poison on the gateway's own topic: a 400-digit integer and a lone surrogate
    huge = (b'{"v":1,"site":"campus","gateway":"gw-01","seq":1,"sent_at":%d,"devices":'
            b'{"main":{"building":"office-1","energy_type":"electricity"}},"samples":'
            b'[{"device":"main","ts":%d,"values":{"active_power_kw":%s}}]}'
            % (t0, t0, b"9" * 400))
    surrogate = huge.replace(b'"device":"main"', b'"device":"\\ud800"')
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="poison") as c:
        await c.publish(topic, huge, qos=1)
        await c.publish(topic, surrogate, qos=1)
    # the broker restarts: the engine notices, reconnects and hears again
    await asyncio.to_thread(mosquitto.stop)
    await until(lambda: not run.svc.connected, "disconnect noticed")
    await asyncio.to_thread(mosquitto.start)
    await until(lambda: run.svc.connected, "reconnected", 30)
    await publish_until_seen(
        mosquitto, [batch(i, t0 + i * 500, 60.0) for i in range(2, 7)], topic,
        lambda: any(json.loads(r["body"])["kind"] == "firing" for r in receiver.requests),
        "a firing webhook after the restart")
    assert not run.task.done()
    await run.close()


async def test_a_dead_task_ends_the_process_non_zero(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver) -> None:
    cfg = make_cfg(tmp_path, mosquitto, influxdb, receiver.url + "/hook", free_port())
    run = Running(cfg)
    await run.ready(mosquitto)

    def broken(now: int) -> Any:
        raise RuntimeError("a bug in the ticker")

    run.svc.engine.tick = broken  # type: ignore[method-assign]
    with pytest.raises(EngineDied, match="a bug in the ticker"):
        await asyncio.wait_for(run.task, 20)  # the CLI exits 2; systemd's Restart= follows


async def test_alert_api_fails_closed(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from enmon.errors import EnmonError

    api = free_port()
    base = make_cfg(tmp_path, mosquitto, influxdb, receiver.url + "/hook", api).model_dump()
    # a token variable that is named but not set: refuse to start, do not serve open
    monkeypatch.delenv("ENMON_RULES_TOKEN", raising=False)
    named = RulesConfig.model_validate({**base, "http": {"host": "127.0.0.1", "port": api,
                                                         "token_env": "ENMON_RULES_TOKEN"}})
    with pytest.raises(EnmonError, match="ENMON_RULES_TOKEN is not set"):
        await RulesService(named).run(asyncio.Event())
    # reachable from other machines without any token: refused too
    exposed = RulesConfig.model_validate({**base, "http": {"host": "0.0.0.0", "port": api}})
    with pytest.raises(EnmonError, match="no token is configured"):
        await RulesService(exposed).run(asyncio.Event())

    # with the token: every route needs it, reads included; the health check does not
    monkeypatch.setenv("ENMON_RULES_TOKEN", "s3cret-token")
    run = Running(named)
    await run.ready(mosquitto)
    url = f"http://127.0.0.1:{api}"

    def status(path: str, token: str | None = None, method: str = "GET") -> int:
        req = urllib.request.Request(url + path, method=method, data=b"{}" if method == "POST"
                                     else None,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert await asyncio.to_thread(status, "/alerts") == 401
    assert await asyncio.to_thread(status, "/alerts", "wrong") == 401
    assert await asyncio.to_thread(status, "/silences", None, "POST") == 401
    assert await asyncio.to_thread(status, "/alerts", "s3cret-token") == 200
    await until(lambda: run.svc.connected, "subscribed")
    assert await asyncio.to_thread(status, "/healthz") == 200
    await run.close()


async def test_a_deaf_engine_says_so(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver) -> None:
    """Broker gone: the engine's silence about the meters means nothing, so it raises
    rules_degraded through a channel that does not need the broker, and resolves it."""
    base = make_cfg(tmp_path, mosquitto, influxdb, receiver.url + "/hook", free_port())
    cfg = RulesConfig.model_validate({**base.model_dump(), "quality": {
        **base.quality.model_dump(), "degraded_after_s": 1.0}})
    run = Running(cfg)
    await run.ready(mosquitto)
    await until(lambda: run.svc.connected, "subscribed")

    def notes(kind: str) -> list[dict[str, Any]]:
        return [n for n in (json.loads(r["body"]) for r in receiver.requests)
                if n["rule"] == "rules_degraded" and n["kind"] == kind]

    await asyncio.to_thread(mosquitto.stop)
    await until(lambda: notes("firing"), "rules_degraded firing", 30)
    assert "no broker connection" in notes("firing")[0]["summary"]
    await asyncio.to_thread(mosquitto.start)
    await until(lambda: notes("resolved"), "rules_degraded resolved", 30)
    await run.close()


async def test_systemd_hears_ready_when_subscribed_and_pets_from_the_ticker(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under Type=notify + WatchdogSec (deploy/cluster/systemd/enmon-rules@.service) the
    unit waits for READY=1 and kills the engine when the pets stop: they must come from
    the loop that does the work, so a blocked loop stops them."""
    import os
    import socket

    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # pets every 0.2 s at the earliest
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    got: list[tuple[float, bytes]] = []

    def drain() -> list[bytes]:
        while True:
            try:
                got.append((time.monotonic(), sock.recv(4096)))
            except BlockingIOError:
                return [m for _, m in got]

    run = Running(make_cfg(tmp_path, mosquitto, influxdb, receiver.url + "/hook", free_port()))
    try:
        await until(lambda: any(m.startswith(b"READY=1") for m in drain()), "READY=1")
        assert run.svc.started  # READY only once subscribed
        await until(lambda: sum(m == b"WATCHDOG=1" for m in drain()) >= 2, "two pets")
        real_tick = run.svc.engine.tick

        def stuck(now: int) -> Any:  # the loop blocks for 1.5 s inside the ticker
            time.sleep(1.5)
            run.svc.engine.tick = real_tick  # type: ignore[method-assign]
            return real_tick(now)

        drain()
        before = len(got)
        run.svc.engine.tick = stuck  # type: ignore[method-assign]
        await until(lambda: sum(m == b"WATCHDOG=1" for m in drain()[before:]) >= 2,
                    "pets after the stall")
        pets = [t for t, m in got[before:] if m == b"WATCHDOG=1"]
        gaps = [b - a for a, b in zip([got[before - 1][0], *pets], pets, strict=False)]
        assert max(gaps) >= 1.4, gaps  # no pet while the loop was blocked
    finally:
        await run.close()
        sock.close()
