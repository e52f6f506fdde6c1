"""The rules process: follow telemetry and gateway status, run scheduled checks, keep alerts.

Wiring only; the decisions are in ``rules.engine`` (pure) and ``rules.lifecycle``.

Durability: every outcome of the alert book is committed to the outbox database
in one SQLite transaction together with the book's new state. Alert history rows
(InfluxDB ``alert``), MQTT alert messages and user notifications are all outbox
channels, so InfluxDB, the broker or a robot being down delays them but never
loses them, and a restart (even ``kill -9``) neither re-notifies nor forgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import asdict
from typing import Any

import aiohttp
import aiomqtt
from aiohttp import web
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from energy.site import load_site
from enmon import wire
from enmon.errors import EnmonError, SinkError, WireError
from enmon.influx import InfluxQL, Writer, make_writer
from enmon.lineproto import line
from enmon.systemd import Watchdog, sd_notify
from rules import acklink
from rules.channels import (
    MqttChannel,
    NotifyError,
    Sender,
    console_link,
    escalation,
    group_key,
    make_senders,
    message,
)
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook, Change, Outcome, Silence, State
from rules.outbox import STOP_GRACE_S, Escalation, Hold, Outbox
from rules.scheduled import Scheduler, sites_summary

log = logging.getLogger("enmon.rules")

ALERT_DB = "_alert_db"
ALERT_MQTT = "_alert_mqtt"


def now_ms() -> int:
    return int(time.time() * 1000)


def change_dict(c: Change) -> dict[str, Any]:
    return asdict(c)


def alert_line(c: dict[str, Any]) -> str:
    """One row of the ``alert`` measurement (the state is a tag so no change overwrites another)."""
    labels = c["labels"]
    tags = {"site": labels.get("site", ""), "rule": c["rule"], "severity": c["severity"],
            "state": c["new"], "fingerprint": c["fingerprint"],
            **{k: labels.get(k, "") for k in ("building", "gateway", "device", "boiler", "quantity",
                                                "budget")}}
    fields: dict[str, float | int | str | bool] = {"old_state": c["old"], "summary": c["summary"]}
    if c.get("value") is not None:
        fields["value"] = float(c["value"])
    if c.get("acked_by"):
        fields["acked_by"] = c["acked_by"]
    if c.get("summary_id"):  # what the summary says as data (enmon.summaries), for every language
        fields["summary_id"] = c["summary_id"]
        fields["summary_args"] = json.dumps(c.get("summary_args") or {}, ensure_ascii=False)
    return line("alert", tags, fields, int(c["ts"]))



def subscriptions(sites: list[str]) -> list[str]:
    """The topics one rules process follows: only its own sites when it has site files.

    This is what partitions rules by site (deploy/cluster): each process reads the
    telemetry and gateway status of the sites it evaluates, nothing else.
    """
    if not sites:
        return [wire.TELEMETRY_FILTER, wire.STATUS_FILTER]
    return [t for site in sorted(set(sites)) for t in (
        f"{wire.TOPIC_ROOT}/{site}/+/telemetry", f"{wire.TOPIC_ROOT}/{site}/+/status")]



class AlertDbSender:
    name = ALERT_DB

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    async def send(self, note: dict[str, Any]) -> None:
        try:
            await self.writer.write([alert_line(note)])
        except SinkError as exc:
            raise NotifyError(f"alert history: {exc}", retryable=exc.retryable) from exc


class ChangeMqttSender:
    name = ALERT_MQTT

    def __init__(self, client: aiomqtt.Client, connected: Any = lambda: True) -> None:
        self.client = client
        self.connected = connected

    async def send(self, note: dict[str, Any]) -> None:
        topic = wire.alert_topic(note["labels"].get("site", "unknown"), note["rule"])
        if not self.connected():
            raise NotifyError("alert mqtt: broker not connected")
        try:
            await self.client.publish(topic, wire.dumps(note), qos=1)
        except aiomqtt.MqttError as exc:
            raise NotifyError(f"alert mqtt: {exc}") from exc


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def api_token(cfg: RulesConfig) -> str | None:
    """The alert API's bearer token, failing closed.

    A configured ``token_env`` whose variable is missing or empty refuses to start (it
    would otherwise serve unauthenticated); so does an API on a non-loopback address
    without a token.
    """
    import os

    h = cfg.http
    if h is None:
        return None
    if h.token_env:
        token = os.environ.get(h.token_env, "")
        if not token:
            raise EnmonError(f"http.token_env: the variable {h.token_env} is not set or empty; "
                             "set it (the API would otherwise accept anyone) or remove "
                             "token_env for a loopback-only API")
        return token
    if h.host not in _LOOPBACK:
        raise EnmonError(f"http.host {h.host!r} is reachable from other machines but no "
                         "token is configured: set http.token_env (a bearer token from the "
                         "environment) or listen on 127.0.0.1")
    return None


class EngineDied(EnmonError):
    """A part of the running engine ended on its own; the process must not go on deaf."""


class RulesService:
    """Holds the engine, the outbox and the clients of one rules process."""

    def __init__(self, cfg: RulesConfig) -> None:
        self.cfg = cfg
        self.sites = [load_site(p) for p in cfg.sites]
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(cfg.state_dir / "outbox.db", {})
        self.connected = False  # subscribed to the broker right now
        self.started = False  # subscribed once: the process is watching
        self.down_since: float | None = time.monotonic()  # broker not (yet) connected
        self.failed_passes = 0  # scheduled passes failed in a row
        self.message_errors = 0
        # systemd's WatchdogSec: pets come from the 1 s ticker, so a blocked event loop (a
        # stuck call, a deadlock) stops them and systemd restarts the engine
        self.watchdog = Watchdog()
        saved = self.outbox.load_state()
        self.book = AlertBook.from_dict(saved) if saved else AlertBook()
        self.engine = Engine(cfg, self.sites, self.book, started_ms=now_ms())
        self.user_channels = [c.name for c in cfg.all_channels()]
        self.channel_cfg = {c.name: c for c in cfg.all_channels()}
        self.site_tz = {s.site: str(s.timezone) for s in self.sites}
        self.meter_of = {(s.site, m.gateway, m.device): m for s in self.sites
                         for _, m in s.meters()}

    def _tz(self, labels: dict[str, str]) -> str:
        """The zone a notification's times are written in: its site's, else the config's."""
        return self.site_tz.get(labels.get("site", ""), self.cfg.timezone)

    def _meter(self, labels: dict[str, str]) -> dict[str, str] | None:
        """What the site file says of the alert's meter: its sub-item and energy type."""
        m = self.meter_of.get((labels.get("site", ""), labels.get("gateway", ""),
                               labels.get("device", "")))
        return {"category": m.category, "energy_type": m.energy_type} if m else None

    def _ack_url(self, n: Any) -> str | None:
        """The signed one-click acknowledge link of a firing (``ack_links:``), if configured."""
        links = self.cfg.ack_links
        if links is None or n.kind == "resolved" or n.fired_at is None:
            return None
        try:
            return acklink.link(links, n.fingerprint, int(n.fired_at))
        except ValueError as exc:  # no key in the environment: the CLI hint instead
            log.warning("event=ack_link_unavailable error=%r", str(exc))
            return None

    def _console_url(self, labels: dict[str, str], fingerprint: str) -> str | None:
        """The alert's page in the console (``console_url:``), if configured."""
        base = self.cfg.console_url
        return console_link(base, labels, fingerprint) if base else None

    def apply(self, out: Outcome) -> None:
        """Commit an outcome: history, MQTT and notifications queued with the new state.

        A firing for a channel is held for its group when the rules file has ``grouping:``
        (``rules.outbox``: released as one message), and schedules the escalations of the
        channels that have ``escalate:``; an acknowledgement drops the alert's escalations.
        """
        if not out.changes and not out.notifications:
            return
        items: list[tuple[str, dict[str, Any]]] = []
        held: list[Hold] = []
        escalations: list[Escalation] = []
        grouping = self.cfg.grouping
        for c in out.changes:
            d = change_dict(c)
            items += [(ALERT_DB, d), (ALERT_MQTT, d)]
            log.info("event=alert_change rule=%s fingerprint=%s old=%s new=%s %s", c.rule,
                     c.fingerprint, c.old, c.new,
                     " ".join(f"{k}={v}" for k, v in sorted(c.labels.items())))
        for n in out.notifications:
            msg = message(n, tz=self._tz(n.labels), meter=self._meter(n.labels),
                          ack_url=self._ack_url(n),
                          console_url=self._console_url(n.labels, n.fingerprint))
            chosen = [ch for ch in self.user_channels
                      if self.channel_cfg[ch].wants(n.severity, n.labels, n.rule)]
            for ch in chosen:
                cfg = self.channel_cfg[ch]
                if (grouping is not None and n.kind == "firing"
                        and not isinstance(cfg, MqttChannel)):
                    held.append(Hold(ch, group_key(n.labels, grouping.group_by), msg,
                                     grouping.group_wait_s, grouping.group_interval_s))
                else:
                    items.append((ch, msg))
                if cfg.escalate is not None and n.kind == "firing" and n.fired_at is not None:
                    escalations += [Escalation(n.fingerprint, int(n.fired_at), target, ch,
                                               cfg.escalate.after_s, msg)
                                    for target in cfg.escalate.channels]
            log.info("event=alert_notify rule=%s fingerprint=%s kind=%s channels=%d", n.rule,
                     n.fingerprint, n.kind, len(chosen))
        acked = [c.fingerprint for c in out.changes if c.new == "acknowledged"]
        self.outbox.commit(items, self.book.to_dict(), held=held, escalations=escalations,
                           cancel=acked)

    def escalate(self, now: int) -> int:
        """Send the escalations that fell due; returns how many messages were queued.

        Each is wanted only while its firing (same ``fired_at``) is still firing and not
        acknowledged: otherwise it is dropped. While the alert is silenced it waits (the
        silence ending with the alert still unacknowledged escalates it then). Messages and
        the escalation's removal are one transaction: sent once, also across a restart.
        """
        items: list[tuple[str, dict[str, Any]]] = []
        done: list[tuple[str, int, str]] = []
        for e in self.outbox.due_escalations():
            a = self.book.alerts.get(e.fingerprint)
            if a is not None and a.state == State.FIRING and a.fired_at == e.fired_at and (
                    a.acked_by is None):
                if self.book.muted(a, now):
                    continue
                unacked = max(0.0, self.outbox.clock() - e.notified_at)
                note = escalation(e.note, unacked_s=unacked, source=e.source)
                if self.cfg.ack_links is not None and a.fired_at is not None:
                    try:  # a fresh link: the firing's may expire before anyone escalates
                        note["ack_url"] = acklink.link(self.cfg.ack_links, a.fingerprint,
                                                       int(a.fired_at))
                    except ValueError as exc:
                        log.warning("event=ack_link_unavailable error=%r", str(exc))
                items.append((e.target, note))
                log.info("event=alert_escalated fingerprint=%s rule=%s from=%s to=%s "
                         "unacked_s=%.0f", a.fingerprint, a.rule, e.source, e.target, unacked)
            else:
                log.info("event=escalation_dropped fingerprint=%s to=%s state=%s acked=%s",
                         e.fingerprint, e.target, a.state.value if a else "gone",
                         bool(a and a.acked_by))
            done.append((e.fingerprint, e.fired_at, e.target))
        if done:
            self.outbox.commit(items, None, escalated=done)
        return len(items)

    # ------------------------------------------------------------------ HTTP API

    def api(self) -> web.Application:
        token = api_token(self.cfg)
        expected = f"Bearer {token}".encode() if token else b""

        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            # with a token, every route but the health check needs it (reads too: the alert
            # book names buildings and people); compared in constant time
            if token and request.path != "/healthz" and not request.path.startswith("/ack/"):
                got = request.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(got, expected):
                    log.warning("event=api_unauthorized method=%s path=%s peer=%s",
                                request.method, wire.safe_text(request.path, 100),
                                request.remote)
                    return web.json_response({"error": "unauthorized"}, status=401)
            resp: web.StreamResponse = await handler(request)
            return resp

        async def alerts(_: web.Request) -> web.Response:
            return web.json_response([{**asdict(a), "state": a.state.value}
                                      for a in self.book.alerts.values()])

        async def ack(request: web.Request) -> web.Response:
            body = await _json(request)
            by = str(body.get("by") or "http")
            try:
                out = self.book.ack(request.match_info["fp"], by=by, now=now_ms())
            except KeyError as exc:
                return web.json_response({"error": str(exc.args[0])}, status=404)
            self.apply(out)
            return web.json_response({"acknowledged": out.changes[0].fingerprint, "by": by})

        async def silence(request: web.Request) -> web.Response:
            body = await _json(request)
            match = body.get("match")
            if not isinstance(match, dict) or not match:
                return web.json_response({"error": "match: a non-empty {label: pattern} object"},
                                         status=400)
            start = int(body.get("starts") or now_ms())
            ends = body.get("ends") or start + int(float(body.get("duration_s", 3600)) * 1000)
            s = Silence(str(body.get("id") or uuid.uuid4().hex[:12]),
                        {str(k): str(v) for k, v in match.items()}, start, int(ends),
                        str(body.get("comment", "")), str(body.get("by", "http")))
            self.book.add_silence(s)
            self.outbox.commit([], self.book.to_dict())
            log.info("event=silence_added id=%s ends=%d match=%s", s.id, s.ends, s.matchers)
            return web.json_response(asdict(s))

        async def unsilence(request: web.Request) -> web.Response:
            if self.book.silences.pop(request.match_info["sid"], None) is None:
                return web.json_response({"error": "no such silence"}, status=404)
            self.outbox.commit([], self.book.to_dict())
            return web.json_response({"removed": request.match_info["sid"]})

        async def health(_: web.Request) -> web.Response:
            # not "ok" while it hears nothing: a deaf engine would let every meter go quiet
            return web.json_response({"ok": self.connected, "mqtt_connected": self.connected,
                                      "message_errors": self.message_errors,
                                      "outbox": self.outbox.counts()},
                                     status=200 if self.connected else 503)

        app = web.Application(middlewares=[auth])
        if self.cfg.ack_links is not None:  # the signed link is its own authorisation
            acklink.add_routes(app, self.cfg.ack_links, self.book, self.apply, self._tz)
        app.router.add_get("/alerts", alerts)
        app.router.add_post("/alerts/{fp}/ack", ack)
        app.router.add_post("/silences", silence)
        app.router.add_delete("/silences/{sid}", unsilence)
        app.router.add_get("/healthz", health)
        return app

    # ------------------------------------------------------------------ loops

    async def _messages(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
            topic = str(msg.topic)
            try:
                if topic.endswith("/status"):
                    site, gw, _ = wire.parse_topic(topic)
                    state = str(wire.loads(payload).get("state", ""))
                    self.apply(self.engine.on_status(site, gw, state, now_ms()))
                    continue
                batch = wire.parse_batch(payload, topic=topic).batch
            except (WireError, ValueError, AttributeError):
                continue  # ingest records rejects; rules only act on valid data
            try:
                self.apply(self.engine.on_batch(batch))
            except Exception as exc:  # one message must not silence the engine for all
                self.message_errors += 1
                log.error("event=message_failed topic=%r error=%r", wire.safe_text(topic),
                          wire.safe_text(exc))
            if stop.is_set():
                return

    async def _follow(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Stay subscribed: reconnect after a broker restart or a network cut, forever.

        The session is persistent (fixed client id, ``clean_start`` off, a session expiry),
        so the broker queues what arrives while we are away and hands it over on reconnect:
        thresholds and data-quality checks evaluate it then.
        """
        delay = 0.5
        while not stop.is_set():
            try:
                async with client:
                    for topic in subscriptions([site.site for site in self.sites]):
                        await client.subscribe(topic, qos=1)
                    self.connected = True
                    self.down_since = None
                    log.info("event=mqtt_connected host=%s port=%d", self.cfg.mqtt.host,
                             self.cfg.mqtt.port)
                    if not self.started:
                        # "started" = subscribed: from here on nothing published is missed
                        self.started = True
                        log.info("event=rules_started thresholds=%d channels=%d %s "
                                 "alerts_restored=%d", len(self.cfg.thresholds),
                                 len(self.user_channels), sites_summary(self.sites),
                                 len(self.book.active()))
                        sd_notify("READY=1\nSTATUS=watching")  # Type=notify: started = heard
                    delay = 0.5
                    await self._messages(client, stop)
            except aiomqtt.MqttError as exc:
                log.warning("event=mqtt_disconnected error=%r retry_s=%.1f",
                            wire.safe_text(exc), delay)
            finally:
                if self.connected or self.down_since is None:
                    self.down_since = time.monotonic()
                self.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)

    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.apply(self.engine.tick(now_ms()))
            self.escalate(now_ms())
            down = (0.0 if self.connected or self.down_since is None
                    else time.monotonic() - self.down_since)
            self.apply(self.engine.on_self(mqtt_down_s=down, failed_passes=self.failed_passes,
                                           now=now_ms()))
            self.watchdog.alive()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _scheduler(self, sched: Scheduler, stop: asyncio.Event) -> None:
        if not self.sites:
            await stop.wait()  # nothing to schedule; ending would look like a dead task
            return
        while not stop.is_set():
            try:
                out, _ = await sched.run_pass(now_ms())
                self.apply(out)
                self.failed_passes = 0
            except Exception as exc:  # InfluxDB down: try again next interval
                self.failed_passes += 1
                log.warning("event=scheduled_pass_failed error=%r in_a_row=%d", exc,
                            self.failed_passes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.schedule.interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        api_token(cfg)  # fail closed before anything starts
        writer = make_writer(cfg.influx)
        query = InfluxQL(cfg.influx)
        m = cfg.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = m.session_expiry_s
        client = aiomqtt.Client(m.host, m.port, identifier=m.client_id or "enmon-rules",
                                username=m.username, password=m.password(),
                                protocol=aiomqtt.ProtocolVersion.V5, tls_context=m.tls_context(),
                                clean_start=False, properties=props)
        runner: web.AppRunner | None = None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def publish(topic: str, body: bytes) -> None:
                if not self.connected:
                    raise NotifyError("MQTT broker not connected", retryable=True)
                await client.publish(topic, body, qos=1)

            senders: dict[str, Sender] = make_senders(cfg.all_channels(), http, publish,
                                                       language=cfg.language)
            senders[ALERT_DB] = AlertDbSender(writer)
            senders[ALERT_MQTT] = ChangeMqttSender(client, lambda: self.connected)
            self.outbox.senders = senders
            if cfg.http is not None:
                runner = web.AppRunner(self.api())
                await runner.setup()
                try:
                    await web.TCPSite(runner, cfg.http.host, cfg.http.port).start()
                    log.info("event=api_listening host=%s port=%d", cfg.http.host, cfg.http.port)
                except OSError as exc:
                    log.error("event=api_failed host=%s port=%d error=%r", cfg.http.host,
                              cfg.http.port, exc)
            sched = Scheduler(self.engine, query, writer,
                              settle_s=cfg.schedule.rollup_settle_s)
            tasks = {asyncio.create_task(self.outbox.run(stop), name="outbox"),
                     asyncio.create_task(self._follow(client, stop), name="mqtt"),
                     asyncio.create_task(self._ticker(stop), name="ticker"),
                     asyncio.create_task(self._scheduler(sched, stop), name="scheduler")}
            stopper = asyncio.create_task(stop.wait(), name="stop")
            died: BaseException | None = None
            try:
                done, _ = await asyncio.wait({stopper, *tasks},
                                             return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t is not stopper and not stop.is_set():
                        # a part of the engine ended on its own: do not run on deaf or
                        # blind — exit non-zero so systemd (Restart=) starts us afresh
                        died = t.exception() or RuntimeError(f"task {t.get_name()} ended")
                        log.error("event=task_died task=%s error=%r", t.get_name(), died)
            finally:
                stop.set()
                # the outbox first, while the broker connection and the HTTP client are
                # still up: it finishes a send on the wire instead of leaving it queued
                # for the next start to deliver again (bounded by its stop grace)
                outbox_task = next(t for t in tasks if t.get_name() == "outbox")
                await asyncio.wait({outbox_task}, timeout=STOP_GRACE_S + 1.0)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, stopper, return_exceptions=True)
                if runner is not None:
                    await runner.cleanup()
        await writer.close()
        await query.close()
        self.outbox.close()
        log.info("event=rules_stopped at=%d", int(time.time()))
        if died is not None:
            raise EngineDied(f"the rule engine's {died!r} ended it; restart it "
                             "(systemd Restart=on-failure does)")


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def run(cfg: RulesConfig, stop: asyncio.Event) -> None:
    await RulesService(cfg).run(stop)
