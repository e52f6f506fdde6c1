"""Notifier channels against a local HTTP receiver and a local SMTP server; the outbox."""

from __future__ import annotations

import asyncio
import base64
import email.header
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rules.channels import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    NotifyError,
    WebhookChannel,
    WeComChannel,
    make_senders,
)
from rules.outbox import Outbox
from tests.rules.conftest import Receiver, Smtp, free_port
from tests.support import wait_until

NOTE: dict[str, Any] = {
    "kind": "firing", "ts": 1_763_726_400_000, "fingerprint": "0123456789abcdef",
    "rule": "quota_early_warning", "labels": {"site": "campus", "building": "office-1"},
    "severity": "warning", "value": 912_345.0, "fired_at": 1_763_726_400_000,
    "summary": "projected 912 345 kWh > quota 850 000 kWh",
}


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def test_webhook_body_is_hmac_signed(receiver: Receiver, http: aiohttp.ClientSession,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", "s3cret")
    hook = WebhookChannel(name="ops", url=receiver.url + "/hook", secret_env="HOOK_KEY")
    s = make_senders([hook], http)
    await s["ops"].send(NOTE)
    req = receiver.requests[0]
    ts = req["headers"]["X-Enmon-Timestamp"]
    expect = hmac.new(b"s3cret", ts.encode() + b"." + req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["X-Enmon-Signature"] == "sha256=" + expect
    assert json.loads(req["body"])["fingerprint"] == NOTE["fingerprint"]
    # a tampered body would not verify
    bad = hmac.new(b"s3cret", ts.encode() + b"." + req["body"] + b" ", hashlib.sha256).hexdigest()
    assert bad != expect


async def test_wecom_robot_markdown(receiver: Receiver, http: aiohttp.ClientSession,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECOM_URL", receiver.url + "/cgi-bin/webhook/send?key=abc")
    receiver.reply = {"errcode": 0, "errmsg": "ok"}
    await make_senders([WeComChannel(name="wx", url_env="WECOM_URL")], http)["wx"].send(NOTE)
    req = receiver.requests[0]
    body = json.loads(req["body"])
    assert req["query"]["key"] == "abc" and body["msgtype"] == "markdown"
    assert "office-1" in body["markdown"]["content"]
    assert "enmon rules ack 0123456789abcdef" in body["markdown"]["content"]


async def test_robot_error_code_is_a_failure(receiver: Receiver, http: aiohttp.ClientSession,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WECOM_URL", receiver.url + "/send?key=wrong")
    receiver.reply = {"errcode": 93000, "errmsg": "invalid webhook url"}
    with pytest.raises(NotifyError) as e:
        await make_senders([WeComChannel(name="wx", url_env="WECOM_URL")], http)["wx"].send(NOTE)
    assert not e.value.retryable and "93000" in str(e.value)


async def test_dingtalk_signed_request(receiver: Receiver, http: aiohttp.ClientSession,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_URL", receiver.url + "/robot/send?access_token=tok")
    monkeypatch.setenv("DD_SECRET", "SECabc")
    receiver.reply = {"errcode": 0}
    await make_senders([DingTalkChannel(name="dd", url_env="DD_URL", secret_env="DD_SECRET")],
                       http)["dd"].send(NOTE)
    q = receiver.requests[0]["query"]  # aiohttp has already URL-decoded the sign
    ts = q["timestamp"]
    # DingTalk: sign = base64(HmacSHA256(key=secret, msg=timestamp + "\n" + secret))
    expect = base64.b64encode(hmac.new(b"SECabc", f"{ts}\nSECabc".encode(),
                                       hashlib.sha256).digest()).decode()
    assert q["sign"] == expect and q["access_token"] == "tok"
    assert abs(int(ts) - time.time() * 1000) < 60_000
    assert json.loads(receiver.requests[0]["body"])["msgtype"] == "markdown"


async def test_feishu_signed_request(receiver: Receiver, http: aiohttp.ClientSession,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_URL", receiver.url + "/open-apis/bot/v2/hook/xyz")
    monkeypatch.setenv("FS_SECRET", "fs-secret")
    receiver.reply = {"code": 0, "msg": "success"}
    await make_senders([FeishuChannel(name="fs", url_env="FS_URL", secret_env="FS_SECRET")],
                       http)["fs"].send(NOTE)
    body = json.loads(receiver.requests[0]["body"])
    # Feishu: sign = base64(HmacSHA256(key=timestamp + "\n" + secret, msg=""))
    key = f"{body['timestamp']}\nfs-secret".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "text" and "能耗限额预警" in body["content"]["text"]


async def test_email_over_starttls(smtp_server: Smtp, http: aiohttp.ClientSession) -> None:
    ch = EmailChannel(name="mail", host=smtp_server.host, port=smtp_server.port,
                      ca_file=smtp_server.cafile, sender="enmon@campus.example",
                      to=["fm@campus.example"])
    await make_senders([ch], http, language="en")["mail"].send(NOTE)
    assert len(smtp_server.messages) == 1
    m = smtp_server.messages[0]
    assert m["Subject"] == "[FIRING] [warning] quota early warning office-1"
    assert "projected 912 345 kWh" in m.get_payload()


def _zh(payload: str) -> None:
    # Asia/Shanghai by default: 1_763_726_400_000 is 2025-11-21 12:00 UTC = 20:00 +08:00
    assert "告警时间：2025-11-21 20:00 +08:00" in payload
    assert "能耗限额预警" in payload and "建筑：office-1" in payload
    assert "确认：enmon rules ack 0123456789abcdef" in payload


async def test_email_is_chinese_by_default_in_site_time(smtp_server: Smtp,
                                                        http: aiohttp.ClientSession) -> None:
    ch = EmailChannel(name="mail", host=smtp_server.host, port=smtp_server.port,
                      ca_file=smtp_server.cafile, sender="enmon@campus.example",
                      to=["fm@campus.example"])
    await make_senders([ch], http)["mail"].send(NOTE)
    m = smtp_server.messages[0]
    subject = str(email.header.make_header(email.header.decode_header(m["Subject"])))
    assert subject == "【告警】【警告】能耗限额预警 office-1"
    _zh(m.get_payload(decode=True).decode())


async def test_times_follow_the_site_zone_not_the_server(receiver: Receiver,
                                                        http: aiohttp.ClientSession,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # the server's own zone must not leak in
    time.tzset()
    try:
        monkeypatch.setenv("WECOM_URL", receiver.url + "/send?key=abc")
        receiver.reply = {"errcode": 0}
        note = {**NOTE, "tz": "Asia/Urumqi",
                "meter": {"category": "01A00", "energy_type": "electricity"}}
        await make_senders([WeComChannel(name="wx", url_env="WECOM_URL")], http)["wx"].send(note)
        content = json.loads(receiver.requests[0]["body"])["markdown"]["content"]
        assert "告警时间：2025-11-21 18:00 +06:00" in content
        assert "分项：照明插座用电 (01A00)" in content and "能源类型：电" in content
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def test_a_channel_may_speak_english(receiver: Receiver, http: aiohttp.ClientSession,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_URL", receiver.url + "/hook")
    receiver.reply = {"code": 0}
    fs = FeishuChannel(name="fs", url_env="FS_URL", language="en")
    await make_senders([fs], http)["fs"].send(NOTE)
    body = json.loads(receiver.requests[0]["body"])["content"]["text"]
    assert body.startswith("[FIRING] [warning] quota early warning office-1")
    assert "fired at: 2025-11-21 20:00 +08:00" in body


async def test_email_over_implicit_tls_port(smtps_server: Smtp,
                                            http: aiohttp.ClientSession) -> None:
    ch = EmailChannel(name="mail", host=smtps_server.host, port=smtps_server.port,
                      implicit_tls=True, ca_file=smtps_server.cafile,
                      sender="enmon@campus.example", to=["fm@campus.example"])
    await make_senders([ch], http)["mail"].send(NOTE)
    assert len(smtps_server.messages) == 1
    _zh(smtps_server.messages[0].get_payload(decode=True).decode())


async def test_email_refuses_plaintext_when_starttls_is_off(smtp_server: Smtp,
                                                            http: aiohttp.ClientSession) -> None:
    ch = EmailChannel(name="mail", host=smtp_server.host, port=smtp_server.port, starttls=False,
                      sender="enmon@campus.example", to=["fm@campus.example"])
    with pytest.raises(NotifyError):
        await make_senders([ch], http)["mail"].send(NOTE)  # the server demands STARTTLS
    assert smtp_server.messages == []


async def test_outbox_one_failing_channel_never_blocks_the_others(
        receiver: Receiver, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    dead_port = free_port()  # nothing listens here: connection refused
    senders = make_senders([
        WebhookChannel(name="good", url=receiver.url + "/good"),
        WebhookChannel(name="down", url=f"http://127.0.0.1:{dead_port}/x"),
    ], http)
    box = Outbox(tmp_path / "outbox.db", senders, base_delay_s=0.05, max_delay_s=0.2)
    stop = asyncio.Event()
    runner = asyncio.create_task(box.run(stop))
    for i in range(5):
        box.enqueue({**NOTE, "ts": NOTE["ts"] + i})
    await receiver.wait_for(5)
    assert [json.loads(r["body"])["ts"] - NOTE["ts"] for r in receiver.requests] == [0, 1, 2, 3, 4]
    await asyncio.to_thread(wait_until, lambda: box.failures.get("down", 0) >= 3, 20,
                            "retries on the dead channel")
    assert box.counts()["down"]["pending"] == 5  # kept, in order, still retrying
    stop.set()
    await runner
    box.close()


async def test_outbox_survives_restart_and_delivers_after_recovery(
        receiver: Receiver, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    senders = make_senders([WebhookChannel(name="hook", url=receiver.url + "/h")], http)
    receiver.status = 503
    box = Outbox(tmp_path / "outbox.db", senders, base_delay_s=0.05, max_delay_s=0.1)
    box.enqueue(NOTE)
    stop = asyncio.Event()
    runner = asyncio.create_task(box.run(stop))
    await receiver.wait_for(2)  # refused twice: retried with backoff
    stop.set()
    await runner
    box.close()
    # the process restarts; the receiver is healthy again
    receiver.status = 200
    n_before = len(receiver.requests)
    box2 = Outbox(tmp_path / "outbox.db", senders, base_delay_s=0.05, max_delay_s=0.1)
    assert box2.counts()["hook"]["pending"] == 1
    stop2 = asyncio.Event()
    runner2 = asyncio.create_task(box2.run(stop2))
    await asyncio.to_thread(wait_until, lambda: box2.delivered["hook"] == 1, 20, "delivery")
    stop2.set()
    await runner2
    assert box2.counts() == {}
    assert len(receiver.requests) == n_before + 1
    box2.close()


async def test_outbox_moves_a_refused_message_to_dead(receiver: Receiver,
                                                      http: aiohttp.ClientSession,
                                                      tmp_path: Path) -> None:
    receiver.status = 400  # our request's fault: retrying cannot help
    senders = make_senders([WebhookChannel(name="h", url=receiver.url)], http)
    box = Outbox(tmp_path / "o.db", senders)
    box.enqueue(NOTE)
    assert await box.deliver_once("h") == 0.0
    dead = box.rows("dead")
    assert len(dead) == 1 and "HTTP 400" in dead[0]["last_error"]
    box.close()



async def test_wecom_acknowledge_link_is_signed_expiring_and_for_one_firing(
        receiver: Receiver, http: aiohttp.ClientSession, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The link in the robot message opens a Chinese confirmation page; only its button
    acknowledges (through the lifecycle, recorded like every ack). A changed token, another
    key, an expired link and a link of an earlier firing of the same alert are refused;
    the API's bearer token is not needed for the link and still is for the rest."""
    import re

    from aiohttp import web

    from enmon.localrun import free_port as port_of
    from enmon.summaries import Summary
    from rules import acklink
    from rules.config import RulesConfig
    from rules.service import RulesService

    monkeypatch.setenv("WECOM_URL", receiver.url + "/cgi-bin/webhook/send?key=abc")
    monkeypatch.setenv("ACK_KEY", "k" * 32)
    monkeypatch.setenv("API_TOKEN", "t0ken")
    receiver.reply = {"errcode": 0, "errmsg": "ok"}
    port = port_of()
    cfg = RulesConfig.model_validate({
        "state_dir": str(tmp_path / "s"), "http": {"token_env": "API_TOKEN"},
        "channels": [{"type": "wecom", "name": "wx", "url_env": "WECOM_URL"}],
        "ack_links": {"base_url": f"http://127.0.0.1:{port}/", "secret_env": "ACK_KEY"}})
    svc = RulesService(cfg)
    svc.outbox.senders = make_senders(cfg.all_channels(), http)
    runner = web.AppRunner(svc.api())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    labels = {"site": "campus", "building": "office-1", "device": "m1"}
    now = int(time.time() * 1000)

    def fire(at: int) -> str:
        svc.apply(svc.book.observe(rule="meter_offline", labels=labels, active=True, now=at,
                                   severity="critical", summary=Summary(
                                       "meter_offline", {"device": "m1", "duration": 930})))
        return next(iter(svc.book.alerts))

    try:
        fp = fire(now)
        assert await svc.outbox.deliver_once("wx") == 0.0
        content = json.loads(receiver.requests[-1]["body"])["markdown"]["content"]
        assert "m1 已 15分30秒 无读数" in content  # the summary in Chinese, in the message
        found = re.search(r"\[点击确认此告警\]\((http://[^)]+)\)", content)
        assert found is not None and "enmon rules ack" not in content
        url = found.group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/ack/{fp}.")
        page = await http.get(url)  # opening (a preview, too) acknowledges nothing
        body = await page.text()
        assert page.status == 200 and "确认此告警？" in body and "m1 已 15分30秒 无读数" in body
        assert svc.book.alerts[fp].acked_by is None
        # tampered: another alert's fingerprint in a token signed for this one; another key
        token = url.rsplit("/", 1)[1]
        other = token.replace(fp, "f" * 16)
        forged = acklink.sign("x" * 32, fp, int(svc.book.alerts[fp].fired_at or 0),
                              int(time.time()) + 3600)
        expired = acklink.sign("k" * 32, fp, int(svc.book.alerts[fp].fired_at or 0),
                               int(time.time()) - 1)
        base = f"http://127.0.0.1:{port}/ack/"
        for bad, words in ((other, "链接被改动过"), (forged, "链接被改动过"),
                           (expired, "已过期"), ("garbage", "此确认链接无效")):
            r = await http.post(base + bad, data={"by": "mallory"})
            assert r.status == 403 and words in await r.text(), bad
        assert svc.book.alerts[fp].acked_by is None
        # the button: acknowledged through the lifecycle, by the name given
        r = await http.post(url, data={"by": "李工"})
        assert r.status == 200 and "已由 李工 (link) 确认" in await r.text()
        assert svc.book.alerts[fp].acked_by == "李工 (link)"
        # the rest of the API still wants its bearer token
        r = await http.get(f"http://127.0.0.1:{port}/alerts")
        assert r.status == 401
        # resolved and fired again: the old link does not acknowledge the new firing
        svc.apply(svc.book.observe(rule="meter_offline", labels=labels, active=False,
                                   now=now + 1000))
        fire(now + 2000)
        r = await http.post(url, data={"by": "li"})
        assert r.status == 410 and "再次触发" in await r.text()
        assert svc.book.alerts[fp].acked_by is None
        r = await http.get(url, headers={"Accept-Language": "en-US,en;q=0.9"})
        assert r.status == 410 and "fired again since the link was sent" in await r.text()
    finally:
        await runner.cleanup()
        svc.outbox.close()
