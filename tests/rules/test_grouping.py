"""Routing, grouping and escalation through the real notifier code against local servers.

Two buildings, two managers' channels (a WeCom robot and a webhook, both real HTTP servers on
loopback) and a director's channel that only hears escalations. Alerts come from telemetry
over a real mosquitto into a real rules service (and a real influxd for its history); the
outbox's workers deliver with the real senders. Time is compressed (``group_wait_s`` and
``escalate.after_s`` of a second or two) and every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
import yaml

from enmon import wire
from enmon.config import load_model
from enmon.errors import ConfigError
from enmon.localrun import InfluxDB1, Mosquitto, Part
from enmon.wire import Batch, DeviceMeta, Sample
from rules.config import RulesConfig
from tests.conftest import INFLUX_DB
from tests.rules.conftest import Receiver, free_port
from tests.rules.test_service import Running, until

pytestmark = pytest.mark.slow

CONSOLE = "https://ems.example.cn/console"
BUILDINGS = {"gw-a": ("office-a", ["m1", "m2", "m3"]), "gw-b": ("office-b", ["m4"])}


def rules_file(mq: Mosquitto, influx: InfluxDB1, rec: Receiver, *, api: int, wait_s: float,
               after_s: float, state: str) -> dict[str, Any]:
    return {
        "mqtt": {"host": mq.host, "port": mq.port, "client_id": "rules-grouping"},
        "influx": {"url": influx.url, "database": INFLUX_DB},
        "state_dir": state,
        "http": {"host": "127.0.0.1", "port": api},
        "ack_links": {"base_url": f"http://127.0.0.1:{api}", "secret_env": "GROUP_ACK_KEY"},
        "console_url": CONSOLE,
        "grouping": {"group_by": ["site", "building"], "group_wait_s": wait_s,
                     "group_interval_s": 0},
        "channels": [
            {"type": "wecom", "name": "mgr-a", "url_env": "GROUP_WECOM_A",
             "match": {"building": "office-a"},
             "escalate": {"after_s": after_s, "channels": ["director"]}},
            {"type": "webhook", "name": "mgr-b", "url": rec.url + "/mgr-b",
             "match": {"building": "office-b"},
             "escalate": {"after_s": after_s, "channels": ["director"]}},
            {"type": "webhook", "name": "director", "url": rec.url + "/director",
             "escalation_only": True}],
        "thresholds": [{"name": "peak_demand", "quantity": "active_power_kw", "above": 50.0,
                        "clear_below": 45.0, "for_s": 0.0, "repeat_s": 3600}],
    }


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    monkeypatch.setenv("GROUP_WECOM_A", receiver.url + "/cgi-bin/webhook/send?key=office-a")
    monkeypatch.setenv("GROUP_ACK_KEY", "g" * 32)
    receiver.reply = {"errcode": 0, "errmsg": "ok"}


def telemetry(gw: str, seq: int, ts: int, kw: float) -> bytes:
    building, devices = BUILDINGS[gw]
    return wire.encode_batch(Batch(
        site="campus", gateway=gw, seq=seq, sent_at=ts,
        devices={d: DeviceMeta(building=building, category="01A00", energy_type="electricity")
                 for d in devices},
        samples=[Sample(d, ts, {"active_power_kw": kw}) for d in devices]))


async def publish(mq: Mosquitto, *messages: tuple[str, bytes]) -> None:
    async with aiomqtt.Client(mq.host, mq.port, identifier=f"pub-{time.monotonic_ns()}") as c:
        for gw, body in messages:
            await c.publish(wire.telemetry_topic("campus", gw), body, qos=1)


def sent(rec: Receiver, path: str) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in rec.requests if r["path"] == path]


def wecom_texts(rec: Receiver) -> list[str]:
    return [b["markdown"]["content"] for b in sent(rec, "/cgi-bin/webhook/send")]


async def test_each_manager_gets_their_building_grouped_and_unacked_alerts_escalate(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver,
        env: None) -> None:
    """Three alerts firing together in office-a reach its manager's WeCom robot as ONE
    message listing each (in Chinese, with an acknowledge link and a console link per alert);
    office-b's manager gets only office-b's alert. Nobody acknowledges two of office-a's: they
    escalate once to the director's channel (已升级, how long unacknowledged); the one
    acknowledged by its signed link and office-b's, acknowledged over the API, do not."""
    api = free_port()
    cfg = RulesConfig.model_validate(rules_file(mosquitto, influxdb, receiver, api=api,
                                                wait_s=0.5, after_s=3.0,
                                                state=str(tmp_path / "state")))
    run = Running(cfg)
    await run.ready(mosquitto)
    svc = run.svc
    try:
        await until(lambda: svc.started, "rules subscribed")
        t0 = int(time.time() * 1000)
        await publish(mosquitto, ("gw-a", telemetry("gw-a", 1, t0, 60.0)),
                      ("gw-b", telemetry("gw-b", 1, t0, 70.0)))
        await until(lambda: wecom_texts(receiver) and sent(receiver, "/mgr-b"),
                    "both managers notified")
        fps = {a.labels["device"]: a.fingerprint for a in svc.book.alerts.values()}
        assert sorted(fps) == ["m1", "m2", "m3", "m4"]
        # office-b's manager: only office-b's alert, acknowledged at once over the API
        (only_b,) = sent(receiver, "/mgr-b")
        assert only_b["kind"] == "firing" and only_b["building"] == "office-b"
        assert only_b["console_url"] == f"{CONSOLE}/?site=campus&alert={fps['m4']}"
        async with aiohttp.ClientSession() as http:
            r = await http.post(f"http://127.0.0.1:{api}/alerts/{fps['m4']}/ack",
                                json={"by": "王经理"})
            assert r.status == 200
            # office-a's manager: one message, three alerts, each with its links
            (text,) = wecom_texts(receiver)
            assert text.startswith("【告警】【警告】office-a 共 3 条告警")
            assert "office-b" not in text  # (a MAC may spell "m4": look at the alerts' lines)
            assert re.findall(r"^\d\. 【警告】peak_demand：(m\d) ", text, re.M) == ["m1", "m2",
                                                                              "m3"]
            for dev in ("m1", "m2", "m3"):
                assert f"[在控制台查看此告警]({CONSOLE}/?site=campus&alert={fps[dev]})" in text
                assert f"/ack/{fps[dev]}." in text
            # m1 acknowledged from the message's signed link (the page's button)
            link = re.search(rf"\[点击确认此告警\]\((http://[^)]+/ack/{fps['m1']}\.[^)]+)\)",
                             text)
            assert link is not None
            r = await http.post(link.group(1), data={"by": "李工"})
            assert r.status == 200
        assert svc.book.alerts[fps["m1"]].acked_by == "李工 (link)"
        # m2 and m3 stay unacknowledged: escalated once each, to the director only
        await until(lambda: len(sent(receiver, "/director")) >= 2, "escalations", 15)
        await until(lambda: svc.outbox.escalations() == [], "every escalation decided", 15)
        director = sent(receiver, "/director")
        assert sorted(d["device"] for d in director) == ["m2", "m3"]
        for d in director:
            assert d["kind"] == "escalated" and d["escalated_from"] == "mgr-a"
            assert d["unacked_s"] >= 3.0
            assert d["title"].startswith("【已升级】【警告】peak_demand office-a")
            assert re.search(r"已升级：首次通知后 \d+秒 仍未确认", d["text"])
            assert f"{CONSOLE}/?site=campus&alert={d['fingerprint']}" in d["text"]
        # nothing more went to anyone: one message per manager, two escalations
        assert len(wecom_texts(receiver)) == 1 and len(sent(receiver, "/mgr-b")) == 1
        assert len(sent(receiver, "/director")) == 2
    finally:
        await run.close()


async def test_kill_9_keeps_a_held_group_and_a_scheduled_escalation(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, receiver: Receiver,
        env: None) -> None:
    """``enmon rules run`` is killed (SIGKILL) while office-a's three firings are held for
    their group and their escalations are scheduled: after the restart the group arrives as
    one message, once, and each alert escalates once — from what was on disk."""
    api = free_port()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules_file(
        mosquitto, influxdb, receiver, api=api, wait_s=2.0, after_s=4.0, state="state"),
        allow_unicode=True), encoding="utf-8")
    db = tmp_path / "state" / "outbox.db"
    part = Part(name="rules", args=["rules", "run", "-c", str(tmp_path / "rules.yaml")],
                workdir=tmp_path)

    def count(table: str) -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return int(c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    try:
        part.start()
        await until(lambda: "event=rules_started" in part.log_tail(20_000), "rules started", 30)
        await publish(mosquitto, ("gw-a", telemetry("gw-a", 1, int(time.time() * 1000), 60.0)))
        await until(lambda: count("grouped") == 3 and count("escalation") == 3,
                    "three firings held and their escalations scheduled", 10)
        part.kill()  # SIGKILL inside group_wait: nothing was sent yet
        assert wecom_texts(receiver) == []

        part.start()
        await until(lambda: wecom_texts(receiver), "the group after the restart", 30)
        await until(lambda: len(sent(receiver, "/director")) >= 3, "escalations", 30)
        await until(lambda: count("escalation") == 0 and count("grouped") == 0,
                    "nothing left to decide", 10)
        (text,) = wecom_texts(receiver)
        assert text.startswith("【告警】【警告】office-a 共 3 条告警")
        assert sorted(d["device"] for d in sent(receiver, "/director")) == ["m1", "m2", "m3"]
        assert all(d["kind"] == "escalated" for d in sent(receiver, "/director"))
        assert len(wecom_texts(receiver)) == 1  # the held group was sent once, not twice
    finally:
        part.stop()


def test_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    """A misspelt escalation channel, a bad console URL and a negative wait, each refused
    with its key and what to write instead."""
    def refused(doc: dict[str, Any]) -> str:
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump(doc), encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_model(RulesConfig, p)
        return str(e.value)

    hooks: list[dict[str, Any]] = [
        {"type": "webhook", "name": "mgr", "url": "http://127.0.0.1:9/a",
         "escalate": {"after_s": 60, "channels": ["directr"]}},
        {"type": "webhook", "name": "director", "url": "http://127.0.0.1:9/b"}]
    msg = refused({"channels": hooks})
    assert "r.yaml:1: channels: Value error, mgr: escalate.channels: no channel 'directr'" in msg
    assert "did you mean 'director'?" in msg
    msg = refused({"console_url": "ems.example.cn/console?x=1"})
    assert "console_url" in msg and "https://ems.example.cn/console" in msg
    msg = refused({"grouping": {"group_wait_s": -1}})
    assert "grouping.group_wait_s" in msg and "seconds to wait" in msg
    msg = refused({"channels": [{**hooks[1], "escalate": {"after_s": 0,
                                                           "channels": ["director"]}}]})
    assert "escalate.after_s: Input should be greater than 0" in msg


async def test_a_big_group_fits_the_wecom_robot(receiver: Receiver, env: None) -> None:
    """WeCom refuses markdown over 4096 bytes (errcode 40058, not retryable: the group would be
    dead): forty alerts at once list those that fit and say how many more there are."""
    from rules.channels import WeComChannel, group_key, group_message, make_senders

    notes: list[dict[str, Any]] = [{
        "kind": "firing", "ts": 1_763_726_400_000, "fingerprint": f"{i:016x}",
              "rule": "meter_offline", "severity": "warning", "fired_at": 1_763_726_400_000,
              "labels": {"site": "campus", "building": "office-a", "device": f"m{i}"},
              "summary": "", "summary_id": "meter_offline",
              "summary_args": {"device": f"m{i}", "duration": 930},
              "ack_url": f"http://127.0.0.1:1/ack/{i:016x}.1.2." + "x" * 43,
              "console_url": f"{CONSOLE}/?site=campus&alert={i:016x}"} for i in range(40)]
    group = group_message(notes, group_key(notes[0]["labels"], ["site", "building"]))
    async with aiohttp.ClientSession() as http:
        wx = make_senders([WeComChannel(name="wx", url_env="GROUP_WECOM_A")], http)["wx"]
        await wx.send(group)
    (content,) = wecom_texts(receiver)
    assert len(content.encode()) <= 4096 and content.startswith("【告警】【警告】office-a 共 40 条")
    shown = len(re.findall(r"^\d+\. 【警告】表计离线：", content, re.M))
    assert 5 < shown < 40 and content.endswith(f"…另有 {40 - shown} 条告警，请在控制台查看")
