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
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from email.message import EmailMessage
from typing import Any, Literal, Protocol

import aiohttp
from pydantic import Field

from enmon import names, summaries
from enmon.config import StrictModel
from enmon.errors import EnmonError
from enmon.i18n import DEFAULT_LANG, N_, Lang, gettext_for, local_time, normalize

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


class Escalate(StrictModel):
    """``escalate:`` of a channel (a route): who hears of an alert nobody acknowledged.

    An alert still firing and not acknowledged ``after_s`` after this channel's first
    notification of it is sent once to each of ``channels`` (the firing's escalation is kept
    in the outbox database, so a restart neither forgets nor repeats it).
    """

    after_s: float = Field(gt=0, json_schema_extra={
        "fix": "seconds after the first notification, e.g. 1800 for half an hour"})
    channels: list[str] = Field(min_length=1, json_schema_extra={
        "fix": "names of channels of this file, e.g. [wecom-director]"})


class _Channel(StrictModel):
    name: str
    min_severity: Literal["info", "warning", "critical"] = Field(
        default="info", json_schema_extra={"fix": "info, warning or critical"})

    language: Lang | None = Field(default=None, json_schema_extra={
        "fix": "zh-CN or en; default: the rules file's language:"})

    match: dict[str, str | list[str]] = Field(default_factory=dict, json_schema_extra={
        "fix": "label patterns, e.g. {building: office-1} or {site: campus, building: "
               "[lab-1, 'lab-*']}; the key rule matches the rule's code"})

    escalate: Escalate | None = Field(default=None, json_schema_extra={
        "fix": "escalate: {after_s: 1800, channels: [wecom-director]}"})
    escalation_only: bool = Field(default=False, json_schema_extra={
        "fix": "true: this channel receives only the escalations that name it"})

    def wants(self, severity: str, labels: Mapping[str, str] | None = None,
              rule: str = "") -> bool:
        """Route by severity and labels: a night-duty phone may want only critical alerts,
        a building's manager only their building (``match: {building: office-1}``).

        Every key of ``match`` must match (shell-style patterns, as silences; a list is
        any of its patterns); an alert without that label is not routed here.
        """
        if self.escalation_only:
            return False
        if SEVERITY_RANK.get(severity, 1) < SEVERITY_RANK[self.min_severity]:
            return False
        got = labels or {}
        for key, pattern in self.match.items():
            value = rule if key == "rule" else got.get(key)
            options = [pattern] if isinstance(pattern, str) else pattern
            if value is None or not any(fnmatch.fnmatchcase(value, p) for p in options):
                return False
        return True


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
    """SMTP with STARTTLS (port 587) or implicit TLS (port 465, "SMTPS": the default of QQ,
    163 and Aliyun mail)."""

    type: Literal["email"] = "email"
    host: str
    port: int = 587
    starttls: bool = True
    implicit_tls: bool | None = Field(default=None, json_schema_extra={
        "fix": "true for SMTPS (TLS from the first byte); default: true on port 465"})
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

# a notification queued before it carried its site's zone (older outbox rows): the zone
# of the Chinese sites this product is for, never the server's own
DEFAULT_TZ = "Asia/Shanghai"

_TITLES = {
    "firing": N_("[FIRING] [%(severity)s] %(rule)s %(where)s"),
    "repeat": N_("[STILL FIRING] [%(severity)s] %(rule)s %(where)s"),
    "resolved": N_("[RESOLVED] [%(severity)s] %(rule)s %(where)s"),
    "escalated": N_("[ESCALATED] [%(severity)s] %(rule)s %(where)s"),
}
_GROUP_TITLE = N_("[FIRING] [%(severity)s] %(count)s alerts %(where)s")
_LABEL_ORDER = ("site", "building", "gateway", "device", "category", "energy_type", "quantity",
                "boiler", "budget", "service")


def _lang(lang: str | None) -> Lang:
    return normalize(lang) or DEFAULT_LANG


def _where(labels: Mapping[str, str]) -> str:
    return labels.get("building") or labels.get("device") or labels.get("site", "")


def title(n: dict[str, Any], lang: str | None = None) -> str:
    """One line: state, severity, the rule's name and where, in the reader's language; for a
    group (``kind: group``, :func:`group_message`) how many alerts and where."""
    lg = _lang(lang)
    _ = gettext_for(lg)
    severity = names.name(names.SEVERITIES, n["severity"], lg)
    if n["kind"] == "group":
        return _(_GROUP_TITLE, severity=severity, count=len(n["alerts"]),
                 where=_where(n["labels"])).strip()
    return _(_TITLES[n["kind"]], severity=severity,
             rule=names.name(names.RULES, n["rule"], lg), where=_where(n["labels"])).strip()


def _label_value(key: str, value: str, lang: Lang) -> str:
    if key == "category":
        return names.category(value, lang)
    if key == "energy_type":
        return names.name(names.ENERGY_TYPES, value, lang)
    if key == "quantity":
        return names.quantity(value, lang)
    return value


def _labels_line(n: Mapping[str, Any], lg: Lang, skip: frozenset[str] = frozenset()) -> str:
    _ = gettext_for(lg)
    shown = {**n["labels"], **{k: str(v) for k, v in (n.get("meter") or {}).items() if v}}
    keys = sorted((k for k in shown if k not in skip),
                  key=lambda k: (_LABEL_ORDER.index(k) if k in _LABEL_ORDER else 99, k))
    return _("; ").join(_("%(key)s: %(value)s", key=names.name(names.LABEL_KEYS, k, lg),
                          value=_label_value(k, shown[k], lg)) for k in keys)


def _links(n: Mapping[str, Any], lg: Lang, markdown: bool) -> list[str]:
    """How to act on an alert: its signed acknowledge link (or the CLI command) for a live
    alert, and its page in the console (``console_url``) for every notification."""
    _ = gettext_for(lg)
    out: list[str] = []
    if n["kind"] != "resolved":
        url = n.get("ack_url")
        if url and markdown:
            out.append(_("[Acknowledge this alert](%(url)s)", url=url))
        elif url:
            out.append(_("acknowledge: %(url)s", url=url))
        else:
            out.append(_("acknowledge: enmon rules ack %(fingerprint)s",
                         fingerprint=n["fingerprint"]))
    console = n.get("console_url")
    if console and markdown:
        out.append(_("[View this alert in the console](%(url)s)", url=console))
    elif console:
        out.append(_("console: %(url)s", url=console))
    return out


def _times(n: Mapping[str, Any], lg: Lang, tz: str) -> list[str]:
    _ = gettext_for(lg)
    fired = n.get("fired_at")
    if n["kind"] == "resolved":
        out = [_("fired at: %(time)s", time=local_time(int(fired), tz))] if fired else []
        return [*out, _("resolved at: %(time)s", time=local_time(int(n["ts"]), tz))]
    out = [_("fired at: %(time)s", time=local_time(int(fired or n["ts"]), tz))]
    if n["kind"] == "escalated":
        out.append(_("escalated: not acknowledged %(duration)s after the first notification",
                     duration=summaries.duration(float(n.get("unacked_s") or 0), lg)))
    return out


def text(n: dict[str, Any], lang: str | None = None, *, markdown: bool = False,
         max_bytes: int | None = None) -> str:
    """Plain text a facility manager reads on a phone: what, where, since when, how to ack.

    Times are in the site's zone with its offset (``2026-12-02 13:26 +08:00``), as the
    console shows them; codes (rules, sub-items, energy types, quantities) by their names.
    A firing alert is acknowledged by its signed link (``ack_url``, ``rules.acklink``) when
    the rules file has ``ack_links:`` — one tap in WeCom, DingTalk or Feishu; ``markdown``
    writes it as a markdown link (the robots' markdown messages) — else by the CLI command.
    With ``console_url:`` every alert also links to its page in the console. A group
    (:func:`group_message`) lists each of its alerts under the labels they share; with
    ``max_bytes`` (a robot's message limit, UTF-8) it lists as many as fit and says how many
    more there are, never a message the robot refuses.
    """
    lg = _lang(lang)
    if n["kind"] == "group":
        return _group_text(n, lg, markdown, max_bytes)
    tz = str(n.get("tz") or DEFAULT_TZ)
    lines = [title(n, lg), summaries.text_of(n, lg, tz=tz), _labels_line(n, lg),
             *_times(n, lg, tz), *_links(n, lg, markdown)]
    return "\n".join(x for x in lines if x)


def _group_text(g: dict[str, Any], lg: Lang, markdown: bool,
                max_bytes: int | None = None) -> str:
    _ = gettext_for(lg)
    shared = frozenset(g["labels"])
    head = "\n".join(x for x in (title(g, lg), _labels_line(g, lg)) if x)
    blocks: list[str] = []
    for i, n in enumerate(g["alerts"], 1):
        tz = str(n.get("tz") or DEFAULT_TZ)
        first = _("%(index)s. [%(severity)s] %(rule)s: %(summary)s", index=i,
                  severity=names.name(names.SEVERITIES, n["severity"], lg),
                  rule=names.name(names.RULES, n["rule"], lg),
                  summary=summaries.text_of(n, lg, tz=tz))
        own = [_labels_line(n, lg, shared), *_times(n, lg, tz), *_links(n, lg, markdown)]
        blocks.append("\n".join([first, *("    " + x for x in own if x)]))
    if max_bytes is not None:
        while blocks:
            rest = len(g["alerts"]) - len(blocks)
            more = [_("… and %(count)s more alerts: see the console", count=rest)] if rest else []
            if len("\n".join([head, *blocks, *more]).encode()) <= max_bytes:
                break
            blocks.pop()
        if len(blocks) < len(g["alerts"]):
            blocks.append(_("… and %(count)s more alerts: see the console",
                            count=len(g["alerts"]) - len(blocks)))
    return "\n".join([head, *blocks])


def group_key(labels: Mapping[str, str], group_by: Iterable[str]) -> str:
    """The group an alert's notification joins: its values of the ``group_by`` labels (a
    missing label is the empty value, as in Alertmanager), as canonical JSON."""
    return json.dumps({k: labels.get(k, "") for k in group_by}, sort_keys=True,
                      ensure_ascii=False)


def group_message(notes: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Notifications of one group (same ``group_by`` labels, fired within ``group_wait_s``) as
    ONE notification (``kind: group``) listing each, in the order they fired.

    The shared labels (those of the key that are set) are the group's ``labels`` and copied
    to the top level like a single notification's; ``severity`` is the highest of the group;
    ``fingerprint`` names the group (its alerts' fingerprints hashed), for e-mail Message-IDs.
    A group of one is that notification itself.
    """
    if len(notes) == 1:
        return notes[0]
    shared = {k: v for k, v in json.loads(key).items() if v}
    fps = sorted(str(n["fingerprint"]) for n in notes)
    worst = max((str(n["severity"]) for n in notes), key=lambda s: SEVERITY_RANK.get(s, 1))
    return {**shared, "kind": "group", "state": "firing", "labels": shared,
            "ts": max(int(n["ts"]) for n in notes), "severity": worst,
            "fingerprint": hashlib.sha256("\x00".join(fps).encode()).hexdigest()[:16],
            "rule": "", "alerts": notes, "tz": notes[0].get("tz") or DEFAULT_TZ}


def escalation(note: dict[str, Any], *, unacked_s: float, source: str) -> dict[str, Any]:
    """The escalation of a firing notification (``escalate:``): the same alert, ``kind:
    escalated``, saying how long it has gone unacknowledged since ``source`` was told."""
    return {**note, "kind": "escalated", "unacked_s": round(unacked_s, 3),
            "escalated_from": source}


def console_link(base: str, labels: Mapping[str, str], fingerprint: str) -> str:
    """The alert's page in the console: ``{console_url}/?site=…&alert=<fingerprint>``."""
    query = urllib.parse.urlencode({"site": labels.get("site", ""), "alert": fingerprint})
    return f"{base.rstrip('/')}/?{query}"


def message(note: Any, *, tz: str | None = None, meter: dict[str, str] | None = None,
            ack_url: str | None = None, console_url: str | None = None) -> dict[str, Any]:
    """A lifecycle Notification as the JSON the channels and the outbox carry.

    The labels are also copied to the top level (``site``, ``device``, ``building`` …)
    and ``state`` is ``firing`` or ``resolved``, so a receiver can route on plain keys.
    ``summary`` is the English text, ``summary_id`` and ``summary_args`` the same as data
    (``enmon.summaries``), from which :func:`text` writes it in the channel's language.
    ``tz`` is the site's time zone (times are written in it); ``meter`` what the site file
    says of the alert's meter (``category``, ``energy_type``), which the labels — the
    alert's identity — do not carry; ``ack_url`` the signed acknowledge link of a firing
    (``rules.acklink.link``); ``console_url`` the alert's page in the console
    (:func:`console_link`).
    """
    extra: dict[str, Any] = {"tz": tz or DEFAULT_TZ}
    if meter:
        extra["meter"] = dict(meter)
    if ack_url and note.kind != "resolved":
        extra["ack_url"] = ack_url
    if console_url:
        extra["console_url"] = console_url
    return {
        **extra,
        **{k: v for k, v in note.labels.items() if k not in _RESERVED},
        "kind": note.kind, "state": "resolved" if note.kind == "resolved" else "firing",
        "ts": note.ts, "fingerprint": note.fingerprint, "rule": note.rule,
        "labels": dict(note.labels), "severity": note.severity, "value": note.value,
        "summary": note.summary, "fired_at": note.fired_at, "since_ms": note.since,
        "summary_id": note.summary_id, "summary_args": note.summary_args,
    }


_RESERVED = {"kind", "state", "ts", "fingerprint", "rule", "labels", "severity", "value",
             "summary", "fired_at", "since_ms", "tz", "meter", "summary_id", "summary_args",
             "ack_url", "console_url", "alerts", "unacked_s", "escalated_from"}


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
    def __init__(self, cfg: WebhookChannel, session: aiohttp.ClientSession,
                 lang: Lang = DEFAULT_LANG) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session
        self.lang: Lang = cfg.language or lang

    async def send(self, note: dict[str, Any]) -> None:
        # the note as data for programs, and its text in the channel's language for people
        body = json.dumps({**note, "title": title(note, self.lang), "text": text(note, self.lang)},
                          ensure_ascii=False, sort_keys=True).encode()
        ts = str(int(time.time()))
        headers = {"X-Enmon-Timestamp": ts, "X-Enmon-Event": note["kind"]}
        secret = _env(self.cfg.secret_env, f"webhook {self.name}")
        if secret:
            headers["X-Enmon-Signature"] = webhook_signature(secret, ts, body)
        await _post(self.session, self.cfg.url, body, headers, f"webhook {self.name}")


WECOM_MAX_BYTES = 4096


class WeComSender:
    def __init__(self, cfg: WeComChannel, session: aiohttp.ClientSession,
                 lang: Lang = DEFAULT_LANG) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session
        self.lang: Lang = cfg.language or lang

    async def send(self, note: dict[str, Any]) -> None:
        url = _env(self.cfg.url_env, f"wecom {self.name}")
        # WeCom refuses (errcode 40058) markdown content over 4096 bytes
        body = {"msgtype": "markdown", "markdown": {
            "content": text(note, self.lang, markdown=True, max_bytes=WECOM_MAX_BYTES)}}
        reply = await _post(self.session, url, json.dumps(body, ensure_ascii=False).encode(), {},
                            f"wecom {self.name}")
        _robot_ok(reply, "errcode", f"wecom {self.name}")


class DingTalkSender:
    def __init__(self, cfg: DingTalkChannel, session: aiohttp.ClientSession,
                 lang: Lang = DEFAULT_LANG) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session
        self.lang: Lang = cfg.language or lang

    async def send(self, note: dict[str, Any]) -> None:
        url = _env(self.cfg.url_env, f"dingtalk {self.name}")
        secret = _env(self.cfg.secret_env, f"dingtalk {self.name}")
        if secret:
            ts = int(time.time() * 1000)
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={dingtalk_sign(secret, ts)}"
        body = {"msgtype": "markdown",
                "markdown": {"title": title(note, self.lang),
                             "text": text(note, self.lang, markdown=True)}}
        reply = await _post(self.session, url, json.dumps(body, ensure_ascii=False).encode(), {},
                            f"dingtalk {self.name}")
        _robot_ok(reply, "errcode", f"dingtalk {self.name}")


class FeishuSender:
    def __init__(self, cfg: FeishuChannel, session: aiohttp.ClientSession,
                 lang: Lang = DEFAULT_LANG) -> None:
        self.name, self.cfg, self.session = cfg.name, cfg, session
        self.lang: Lang = cfg.language or lang

    async def send(self, note: dict[str, Any]) -> None:
        url = _env(self.cfg.url_env, f"feishu {self.name}")
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text(note, self.lang)}}
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
    def __init__(self, cfg: EmailChannel, lang: Lang = DEFAULT_LANG) -> None:
        self.name, self.cfg = cfg.name, cfg
        self.lang: Lang = cfg.language or lang

    async def send(self, note: dict[str, Any]) -> None:
        import asyncio

        msg = EmailMessage()
        msg["Subject"] = title(note, self.lang)
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.to)
        msg["Message-ID"] = f"<{note['fingerprint']}.{note['kind']}.{note['ts']}@enmon>"
        msg.set_content(text(note, self.lang))
        await asyncio.to_thread(self._send_blocking, msg)

    def _send_blocking(self, msg: EmailMessage) -> None:
        c = self.cfg
        implicit = c.port == 465 if c.implicit_tls is None else c.implicit_tls
        try:
            ctx = ssl.create_default_context(cafile=c.ca_file)
            smtp = (smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=ctx)
                    if implicit else smtplib.SMTP(c.host, c.port, timeout=c.timeout_s))
            with smtp:
                if c.starttls and not implicit:
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
                 publish: Callable[[str, bytes], Awaitable[None]] | None = None,
                 *, language: Lang = DEFAULT_LANG) -> dict[str, Sender]:
    """One sender per channel; ``language`` is the default of channels without their own."""
    out: dict[str, Sender] = {}
    for c in channels:
        s: Sender
        if isinstance(c, WebhookChannel):
            s = WebhookSender(c, session, language)
        elif isinstance(c, WeComChannel):
            s = WeComSender(c, session, language)
        elif isinstance(c, DingTalkChannel):
            s = DingTalkSender(c, session, language)
        elif isinstance(c, FeishuChannel):
            s = FeishuSender(c, session, language)
        elif isinstance(c, EmailChannel):
            s = EmailSender(c, language)
        else:
            if publish is None:
                raise NotifyError("mqtt channel needs the service's MQTT client", retryable=False)
            s = MqttSender(c, publish)
        out[c.name] = s
    return out
