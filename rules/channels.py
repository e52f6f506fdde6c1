"""Notification channels: webhook (HMAC), WeCom, DingTalk (signed), Feishu, e-mail, MQTT.

Each channel turns one notification (a plain dict, see :func:`message`) into the
request its receiver expects and raises :class:`NotifyError` when delivery failed,
saying whether trying again can help. Retries, backoff and isolation between
channels are the outbox's job (``rules.outbox``), not the channel's: a channel
makes exactly one attempt.

Secrets (HMAC keys, robot URLs that embed an access token, SMTP passwords) are
named by environment variable in the config and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any, Literal, Protocol

import aiohttp
from pydantic import Field

from enmon.config import StrictModel
from enmon.errors import EnmonError

log = logging.getLogger("enmon.rules.notify")


class NotifyError(EnmonError):
    """A notification could not be delivered by one channel."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


def _env(name: str | None, what: str) -> str:
    if not name:
        return ""
    value = os.environ.get(name)
    if value is None:
        raise NotifyError(f"{what}: environment variable {name} is not set", retryable=False)
    return value


# --------------------------------------------------------------------------- config

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class _Channel(StrictModel):
    name: str
    min_severity: Literal["info", "warning", "critical"] = Field(
        default="info", json_schema_extra={"fix": "info, warning or critical"})

    def wants(self, severity: str) -> bool:
        """Route by severity: a night-duty phone may want only critical alerts."""
        return SEVERITY_RANK.get(severity, 1) >= SEVERITY_RANK[self.min_severity]


class WebhookChannel(_Channel):
    type: Literal["webhook"] = "webhook"
    url: str
    secret_env: str | None = Field(default=None, json_schema_extra={
        "fix": "the environment variable holding the HMAC key"})


class WeComChannel(_Channel):
    """WeCom (企业微信) group robot; its URL holds the robot key, so it comes from the env."""

    type: Literal["wecom"] = "wecom"
    url_env: str


class DingTalkChannel(_Channel):
    """DingTalk (钉钉) custom robot with the "加签" (signed) security setting."""

    type: Literal["dingtalk"] = "dingtalk"
    url_env: str
    secret_env: str | None = None


class FeishuChannel(_Channel):
    """Feishu / Lark (飞书) custom bot, optionally with signature verification."""

    type: Literal["feishu"] = "feishu"
    url_env: str
    secret_env: str | None = None


class EmailChannel(_Channel):
    type: Literal["email"] = "email"
    host: str
    port: int = 587
    starttls: bool = True
    ca_file: str | None = None
    username: str | None = None
    password_env: str | None = None
    sender: str
    to: list[str] = Field(min_length=1)
    timeout_s: float = 15.0


class MqttChannel(_Channel):
    """Publish notifications on ``enmon/v1/{site}/alerts/{rule}`` (besides every state change)."""

    type: Literal["mqtt"] = "mqtt"


ChannelConfig = (WebhookChannel | WeComChannel | DingTalkChannel | FeishuChannel | EmailChannel
                 | MqttChannel)


# --------------------------------------------------------------------------- message text


def title(n: dict[str, Any]) -> str:
    state = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}[n["kind"]]
    where = n["labels"].get("building") or n["labels"].get("device") or n["labels"].get("site", "")
    return f"[{state}] [{n['severity']}] {n['rule']} {where}".strip()


def text(n: dict[str, Any]) -> str:
    """Plain text a facility manager reads on a phone: what, where, since when, how to ack."""
    labels = ", ".join(f"{k}={v}" for k, v in sorted(n["labels"].items()))
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(n["ts"] / 1000))
    lines = [title(n), n.get("summary") or "", f"labels: {labels}", f"at: {when}"]
    if n["kind"] != "resolved":
        lines.append(f"ack: enmon rules ack {n['fingerprint']}")
    return "\n".join(x for x in lines if x)


def message(note: Any) -> dict[str, Any]:
    """A lifecycle Notification as the JSON the channels and the outbox carry.

    The labels are also copied to the top level (``site``, ``device``, ``building`` …)
    and ``state`` is ``firing`` or ``resolved``, so a receiver can route on plain keys.
    """
    return {
        **{k: v for k, v in note.labels.items() if k not in _RESERVED},
        "kind": note.kind, "state": "resolved" if note.kind == "resolved" else "firing",
        "ts": note.ts, "fingerprint": note.fingerprint, "rule": note.rule,
        "labels": dict(note.labels), "severity": note.severity, "value": note.value,
        "summary": note.summary, "fired_at": note.fired_at, "since_ms": note.since,
    }


_RESERVED = {"kind", "state", "ts", "fingerprint", "rule", "labels", "severity", "value",
             "summary", "fired_at", "since_ms"}


# --------------------------------------------------------------------------- signing


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over ``timestamp + "." + body`` (the timestamp stops replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot 加签: base64(HMAC-SHA256(key=secret, msg=f"{ts}\\n{secret}")), URL-encoded."""
    msg = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu bot signature: base64(HMAC-SHA256(key=f"{ts}\\n{secret}", msg=b""))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


# --------------------------------------------------------------------------- senders


class Sender(Protocol):
    name: str

    async def send(self, note: dict[str, Any]) -> None: ...


async def _post(session: aiohttp.ClientSession, url: str, body: bytes,
                headers: dict[str, str], what: str) -> Any:
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                          **headers}) as r:
            status = r.status
            reply = await r.text()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise NotifyError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if status >= 300:
        # 4xx other than throttling is our request's fault: retrying the same body won't help
        raise NotifyError(f"{what}: HTTP {status}: {reply[:200]}",
                          retryable=status >= 500 or status in (408, 429))
    try:
        return json.loads(reply) if reply.strip() else {}
    except ValueError:
        return {}


class WebhookSender:
    def __init__(self, cfg: WebhookChannel, session: aiohttp.ClientSession) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session

    async def send(self, note: dict[str, Any]) -> None:
        body = json.dumps(note, ensure_ascii=False, sort_keys=True).encode()
        ts = str(int(time.time()))
        headers = {"X-Enmon-Timestamp": ts, "X-Enmon-Event": note["kind"]}
        secret = _env(self.cfg.secret_env, f"webhook {self.name}")
        if secret:
            headers["X-Enmon-Signature"] = webhook_signature(secret, ts, body)
        await _post(self.session, self.cfg.url, body, headers, f"webhook {self.name}")


class WeComSender:
    def __init__(self, cfg: WeComChannel, session: aiohttp.ClientSession) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session

    async def send(self, note: dict[str, Any]) -> None:
        url = _env(self.cfg.url_env, f"wecom {self.name}")
        body = {"msgtype": "markdown", "markdown": {"content": text(note)}}
        reply = await _post(self.session, url, json.dumps(body, ensure_ascii=False).encode(), {},
                            f"wecom {self.name}")
        _robot_ok(reply, "errcode", f"wecom {self.name}")


class DingTalkSender:
    def __init__(self, cfg: DingTalkChannel, session: aiohttp.ClientSession) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session

    async def send(self, note: dict[str, Any]) -> None:
        url = _env(self.cfg.url_env, f"dingtalk {self.name}")
        secret = _env(self.cfg.secret_env, f"dingtalk {self.name}")
        if secret:
            ts = int(time.time() * 1000)
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={dingtalk_sign(secret, ts)}"
        body = {"msgtype": "markdown", "markdown": {"title": title(note), "text": text(note)}}
        reply = await _post(self.session, url, json.dumps(body, ensure_ascii=False).encode(), {},
                            f"dingtalk {self.name}")
        _robot_ok(reply, "errcode", f"dingtalk {self.name}")


class FeishuSender:
    def __init__(self, cfg: FeishuChannel, session: aiohttp.ClientSession) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session

    async def send(self, note: dict[str, Any]) -> None:
        url = _env(self.cfg.url_env, f"feishu {self.name}")
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text(note)}}
        secret = _env(self.cfg.secret_env, f"feishu {self.name}")
        if secret:
            ts = int(time.time())
            body.update(timestamp=str(ts), sign=feishu_sign(secret, ts))
        reply = await _post(self.session, url, json.dumps(body, ensure_ascii=False).encode(), {},
                            f"feishu {self.name}")
        _robot_ok(reply, "code", f"feishu {self.name}")


def _robot_ok(reply: Any, key: str, what: str) -> None:
    """Robots answer HTTP 200 with an error code in the body; 0 means delivered."""
    if isinstance(reply, dict) and reply.get(key, 0) not in (0, None):
        # e.g. WeCom 45009 / DingTalk 130101 = rate limited: worth retrying; others are not
        code = reply.get(key)
        retryable = code in (45009, 130101, 11232, 9499)
        why = reply.get("errmsg") or reply.get("msg", "")
        raise NotifyError(f"{what}: robot refused: {key}={code} {why}", retryable=retryable)


class EmailSender:
    def __init__(self, cfg: EmailChannel) -> None:
        self.name, self.cfg = cfg.name, cfg

    async def send(self, note: dict[str, Any]) -> None:
        import asyncio

        msg = EmailMessage()
        msg["Subject"] = title(note)
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.to)
        msg["Message-ID"] = f"<{note['fingerprint']}.{note['kind']}.{note['ts']}@enmon>"
        msg.set_content(text(note))
        await asyncio.to_thread(self._send_blocking, msg)

    def _send_blocking(self, msg: EmailMessage) -> None:
        c = self.cfg
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
                if c.starttls:
                    ctx = ssl.create_default_context(cafile=c.ca_file)
                    smtp.starttls(context=ctx)
                if c.username:
                    smtp.login(c.username, _env(c.password_env, f"email {self.name}"))
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(f"email {self.name}: SMTP {exc.smtp_code}",
                              retryable=400 <= exc.smtp_code < 500) from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise NotifyError(f"email {self.name}: {type(exc).__name__}: {exc}") from exc


class MqttSender:
    """Publishes through the service's MQTT client (a callable), so no second connection."""

    def __init__(self, cfg: MqttChannel, publish: Callable[[str, bytes], Awaitable[None]]) -> None:
        self.name, self.publish = cfg.name, publish

    async def send(self, note: dict[str, Any]) -> None:
        from enmon import wire

        topic = wire.alert_topic(note["labels"].get("site", "unknown"), note["rule"])
        try:
            await self.publish(topic, wire.dumps({"notification": note}))
        except Exception as exc:  # aiomqtt raises MqttError subclasses; all are retryable here
            raise NotifyError(f"mqtt {self.name}: {type(exc).__name__}: {exc}") from exc


def make_senders(channels: list[ChannelConfig], session: aiohttp.ClientSession,
                 publish: Callable[[str, bytes], Awaitable[None]] | None = None
                 ) -> dict[str, Sender]:
    out: dict[str, Sender] = {}
    for c in channels:
        s: Sender
        if isinstance(c, WebhookChannel):
            s = WebhookSender(c, session)
        elif isinstance(c, WeComChannel):
            s = WeComSender(c, session)
        elif isinstance(c, DingTalkChannel):
            s = DingTalkSender(c, session)
        elif isinstance(c, FeishuChannel):
            s = FeishuSender(c, session)
        elif isinstance(c, EmailChannel):
            s = EmailSender(c)
        else:
            if publish is None:
                raise NotifyError("mqtt channel needs the service's MQTT client", retryable=False)
            s = MqttSender(c, publish)
        out[c.name] = s
    return out
