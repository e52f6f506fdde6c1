"""Device commands from the API: signed here, published to the gateway, on the record.

An operator asks ``POST /api/v1/sites/{site}/gateways/{gateway}/commands`` for one device
write; the API signs it with its command key (:func:`gateway.commands.new_command`, the
gateway's own format and rules, so the API can never send what a gateway would not
parse), publishes it with QoS 1 on ``enmon/v1/{site}/{gateway}/command`` as the broker's
``api`` identity and answers with the command id. The gateway checks it against the
device's profile and allow-list, writes, reads back and answers on ``…/command/result``;
ingest stores that answer in ``command``. This module keeps the other half of the record:
every request as a ``command_request`` point — who asked (the token's name and role), what
(device, kind, target, value, lifetime, key id) and when — joined with its result when the
list is read.

Nothing is half done:

* the broker is connected (and the login accepted) *before* anything is written, so a
  broker that is down answers 503 with no record and no command;
* the request is recorded (``state=sending``) *before* it is published, so no command
  leaves without its requester on the record; a database that is down answers 503 and
  nothing is sent;
* each command has its own MQTT connection (clean start, no session kept), closed after
  the broker's PUBACK or the failure: a command that was not confirmed is never resent
  later by a client library's queue. The point's ``state`` becomes ``sent``,
  ``not_sent`` (the broker refused it) or ``unconfirmed`` (no PUBACK in time: it may
  have reached the broker, and can act until it expires; the gateway's answer, if any,
  says). Connections are one at a time: the broker binds the client id to the ``api``
  user name, so two at once would take each other's session.

The secret is read once at start from a file that only its owner may read (0600) or from
an environment variable; it is never in the YAML, a response or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from enmon.errors import ConfigError, SinkError
from enmon.influx import quote
from enmon.lineproto import line, parse_series_key
from gateway import commands as gc
from inspector.config import CommandBroker, CommandSigning
from inspector.i18n import N_, Lang, gettext_for

log = logging.getLogger("inspector.commands")

MEASUREMENT = "command_request"
RESULTS = "command"  # where ingest stores the gateways' answers (ingest/command_results.py)
# a gateway answers within a command's lifetime; the window a list looks for answers in
# beyond its own range (clock skew between the gateway and the API included)
ANSWER_WINDOW_MS = 86_400_000 + 3_600_000
LIST_LIMIT = 1000
NO_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason 0x10 "No matching subscribers"
STATES = ("sending", "sent", "not_sent", "unconfirmed")
DATABASE_DOWN = N_("the database is unavailable, so the request cannot be recorded; nothing "
                   "was sent, try again")
OUTCOME_TEXT = {
    "ok": N_("done and read back"),
    "refused": N_("refused by the gateway"),
    "failed": N_("failed at the device"),
    "pending": N_("waiting for the gateway's answer"),
    "no_answer": N_("expired without an answer"),
    "not_sent": N_("not sent"),
}


class CommandError(Exception):
    """A request the API does not send (the response's status), and why.

    ``message`` is a catalog msgid with named placeholders, translated for the reader by
    :meth:`text`; ``field`` names the body field to change (422), if any."""

    def __init__(self, status: int, message: str, field: str = "", **params: Any) -> None:
        self.status, self.message, self.field, self.params = status, message, field, params
        super().__init__(self.text("en"))

    def text(self, lang: Lang) -> str:
        return str(gettext_for(lang)(self.message, **self.params))


@dataclass(frozen=True)
class Signer:
    """The key commands are signed with (the secret is kept out of ``repr``)."""

    key_id: str
    secret: bytes = field(repr=False)


def load_signer(cfg: CommandSigning) -> Signer:
    """The command key, read now (at start: a bad key stops the API, not a command).

    Raises:
        ConfigError: the file may be read by others than its owner, is unreadable, or the
        secret is missing or shorter than 16 bytes.
    """
    key = cfg.key
    if key.file is not None:
        try:
            mode = key.file.stat().st_mode
        except OSError as exc:
            raise ConfigError(str(key.file), "commands.key.file",
                              f"cannot read: {exc.strerror}",
                              "give the path of the command key's file") from None
        if mode & 0o077:
            raise ConfigError(str(key.file), "commands.key.file",
                              f"the key file may be read by others (mode {mode & 0o777:o})",
                              f"chmod 600 {key.file}")
    return Signer(key.id, gc.read_secret(key.file, key.env, what="commands.key"))


# --------------------------------------------------------------------------- requests


def decimal_text(value: object) -> str | None:
    """A request's value as the decimal string a command carries (``21.5``, ``15``); a
    string as given (``on``, ``now``: the kind decides); None left out.

    Raises:
        CommandError: not a number or a decimal string (422, field ``value``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CommandError(422, N_("value: give the new value as a number or a decimal "
                                   "string, e.g. 15 or \"21.5\""), "value")
    if isinstance(value, str):
        return value
    try:
        text = format(Decimal(repr(value)), "f")
    except InvalidOperation:
        raise CommandError(422, N_("value: give the new value as a number or a decimal "
                                   "string, e.g. 15 or \"21.5\""), "value") from None
    return text.rstrip("0").rstrip(".") if "." in text else text


# which body field holds what the command's own check found wrong (its messages begin
# "{field} missing or not of the form …" or "action must be one of …")
_FIELD = {"device": "device", "target": "target", "value": "value", "action": "kind"}
_FIX = {
    "device": N_("device %(device)s: a device name from the gateway's config (letters, "
                 "digits, _ and -, at most 64)"),
    "target": N_("target %(target)s: the name of a writable point of the device's profile, "
                 "e.g. demand_period_min (lower case, digits and _)"),
    "value": N_("value %(value)s: a decimal number such as 15, -3 or 21.5 (at most 18 digits "
                "before and 12 after the point, no exponent), or what the kind takes (a "
                "coil: on/off; a time sync: now)"),
    "kind": N_("kind %(kind)s: use one of %(kinds)s"),
}


def build(signer: Signer, *, site: str, gateway: str, device: str, kind: str,
          target: str | None, value: str | None, lifetime_s: int, now: float
          ) -> dict[str, Any]:
    """The signed command, by the gateway's own rules (:func:`gateway.commands.new_command`).

    The kinds and their fields are the gateway's (gateway/README.md "Command kinds"): the
    API passes them through, so a kind added there needs nothing here. ``target`` and
    ``value`` may be left out where the kind fixes them (``time_sync``).

    Raises:
        CommandError: a field the gateway would refuse as malformed (422, naming it).
    """
    args: dict[str, Any] = dict(key_id=signer.key_id, site=site, gateway=gateway,
                                device=device, target=target, value=value, ttl_s=lifetime_s,
                                now=now, action=kind)
    try:
        return gc.new_command(signer.secret, **args)
    except ValueError as exc:
        problem = str(exc)
        if "needs a target and a value" in problem:
            missing = "target" if target is None else "value"
            raise CommandError(422, N_("%(name)s: a command of kind %(kind)s needs it"),
                               missing, name=missing, kind=kind[:32]) from None
        name = problem.split(" ", 1)[0]
        body_field = _FIELD.get(name)
        if body_field is None or not (" missing or not of the form " in problem
                                      or problem.startswith("action must be one of")):
            # any other rule of the kind's (a time sync's fixed target): the gateway's words
            raise CommandError(422, N_("the command breaks a rule of its kind %(kind)s: "
                                       "%(problem)s (see the gateway's command kinds)"),
                               "kind", kind=kind[:32], problem=problem[:200]) from None
        shown = {"device": device, "target": target, "value": value, "kind": kind}
        raise CommandError(422, _FIX[body_field], body_field,
                           **{body_field: str(shown[body_field])[:64],
                              "kinds": ", ".join(sorted(gc.ACTIONS))}) from None


async def known_devices(store: Any, site: str, gateway: str, site_model: Any = None
                        ) -> set[str]:
    """The devices of ``gateway`` the API knows: in the site file or reporting readings."""
    found: set[str] = set()
    if site_model is not None:
        found |= {m.device for _, m in site_model.meters() if m.gateway == gateway}
    series = await store.q.query(f'SHOW SERIES FROM "meter" WHERE site = {quote(site)} '
                                 f"AND gateway = {quote(gateway)}")
    for s in series:
        for (key,) in s.get("values", []):
            dev = parse_series_key(str(key)).get("device")
            if dev:
                found.add(dev)
    return found


def request_line(cmd: dict[str, Any], *, ts_ms: int, requested_by: str, role: str,
                 state: str, error: str = "") -> str:
    """The ``command_request`` point of one request; the same tags and time each time its
    state changes, so the later write overwrites the earlier one."""
    return line(MEASUREMENT, {"site": cmd["site"], "gateway": cmd["gateway"],
                              "device": cmd["device"]},
                {"command_id": cmd["id"], "requested_by": requested_by, "role": role,
                 "kind": cmd["action"], "target": cmd["target"], "value": cmd["value"],
                 "issued_at": int(cmd["issued_at"]), "expires_at": int(cmd["expires_at"]),
                 "key_id": cmd["key_id"], "state": state, "error": error}, ts_ms)


# --------------------------------------------------------------------------- the broker


class BrokerDown(Exception):
    """The command was not (surely) published: ``kind`` is ``unreachable``, ``login_refused``,
    ``publish_refused`` or ``unconfirmed`` (sent, no PUBACK in time)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


class Connection:
    """One MQTT 5 connection for one command (paho, its network thread), blocking calls.

    Clean start and no session: when it is closed, whatever it did not get confirmed is
    gone with it, never sent later."""

    def __init__(self, m: CommandBroker) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.m = m
        self._connack: threading.Event = threading.Event()
        self._puback: threading.Event = threading.Event()
        self._rc: Any = None
        self._acks: dict[int, Any] = {}  # mid → the PUBACK's reason code
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5,
                                  client_id=m.client_id or f"enmon-api-{os.urandom(4).hex()}")
        if m.username:
            self.client.username_pw_set(m.username, m.password())
        ctx = m.tls_context()
        if ctx is not None:
            self.client.tls_set_context(ctx)
        self.client.connect_timeout = m.timeout_s
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def _on_connect(self, _c: Any, _u: object, _f: object, rc: Any, _p: object) -> None:
        self._rc = rc
        self._connack.set()

    def _on_disconnect(self, _c: Any, _u: object, _f: object, rc: Any, _p: object) -> None:
        if self._rc is None:
            self._rc = rc
        self._connack.set()
        self._puback.set()

    def _on_publish(self, _c: Any, _u: object, mid: int, rc: Any, _p: object) -> None:
        # may run before publish() has returned the mid: kept by mid, looked up after
        self._acks[mid] = rc
        self._puback.set()

    def open(self) -> None:
        """Connect and wait for the broker's CONNACK.

        Raises:
            BrokerDown: ``unreachable`` or ``login_refused``.
        """
        m = self.m
        try:
            self.client.connect(m.host, m.port, keepalive=30, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerDown("unreachable", f"{m.host}:{m.port}: {exc}") from None
        self.client.loop_start()
        if not self._connack.wait(m.timeout_s):
            raise BrokerDown("unreachable", f"{m.host}:{m.port}: no CONNACK in {m.timeout_s} s")
        if self._rc is None or getattr(self._rc, "is_failure", True) or \
                not self.client.is_connected():
            raise BrokerDown("login_refused", f"{m.host}:{m.port}: {self._rc}")

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish with QoS 1 and wait for the broker's PUBACK.

        Returns whether someone is subscribed: MQTT 5's PUBACK says "no matching
        subscribers" (16) when no gateway listens (offline, and no session kept for it),
        so the command will expire unheard.

        Raises:
            BrokerDown: ``publish_refused`` (the broker said no — e.g. "Not authorized" for
            an identity the ACL does not let publish commands — or the connection was
            already gone) or ``unconfirmed`` (sent, no PUBACK in time).
        """
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != 0:
            raise BrokerDown("publish_refused", f"the client could not send it (rc {info.rc})")
        deadline = time.monotonic() + self.m.timeout_s
        while info.mid not in self._acks:
            left = deadline - time.monotonic()
            if left <= 0 or not self.client.is_connected():
                raise BrokerDown("unconfirmed", f"no PUBACK in {self.m.timeout_s} s")
            self._puback.clear()
            if info.mid not in self._acks:
                self._puback.wait(min(left, 0.2))
        rc = self._acks[info.mid]
        if getattr(rc, "is_failure", False):
            raise BrokerDown("publish_refused", f"PUBACK {rc}")
        return getattr(rc, "value", 0) != NO_SUBSCRIBERS

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Sender:
    """Sends one request at a time: connect, record, publish, record the outcome."""

    broker: CommandBroker
    writer: Any  # enmon.influx.Writer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_ts: int = 0

    def _ts(self) -> int:
        # one point per request: a second request in the same millisecond gets the next one
        self.last_ts = max(int(time.time() * 1000), self.last_ts + 1)
        return self.last_ts

    async def send(self, cmd: dict[str, Any], *, requested_by: str, role: str
                   ) -> tuple[int, bool]:
        """Publish ``cmd`` and record it; returns the request's time (ms) and whether a
        subscriber (the gateway) was there to take it.

        Raises:
            CommandError: 503 — the broker or the database is unavailable (nothing was
            sent), or the broker did not confirm the command.
        """
        topic = gc.command_topic(cmd["site"], cmd["gateway"])
        payload = json.dumps(cmd, separators=(",", ":")).encode()
        who = {"requested_by": requested_by, "role": role}
        async with self.lock:
            try:
                conn = Connection(self.broker)
            except ConfigError as exc:  # the password file went away since the start
                log.error("event=command_not_sent id=%s reason=broker_config detail=%r",
                          cmd["id"], str(exc))
                raise CommandError(503, N_("the MQTT broker cannot be reached or refused "
                                           "the API's login (%(detail)s); nothing was "
                                           "sent, try again"), detail=exc.key) from None
            try:
                try:
                    await asyncio.to_thread(conn.open)
                except BrokerDown as exc:
                    log.warning("event=command_not_sent id=%s reason=broker_%s detail=%r by=%s",
                                cmd["id"], exc.kind, exc.detail, requested_by)
                    raise CommandError(503, N_("the MQTT broker cannot be reached or refused "
                                               "the API's login (%(detail)s); nothing was "
                                               "sent, try again"),
                                       detail=exc.kind) from None
                ts = self._ts()
                try:
                    await self.writer.write([request_line(cmd, ts_ms=ts, state="sending",
                                                          **who)])
                except SinkError as exc:
                    log.warning("event=command_not_sent id=%s reason=database detail=%r by=%s",
                                cmd["id"], str(exc)[:300], requested_by)
                    raise CommandError(503, DATABASE_DOWN) from None
                try:
                    listening = await asyncio.to_thread(conn.publish, topic, payload)
                except BrokerDown as exc:
                    state = "unconfirmed" if exc.kind == "unconfirmed" else "not_sent"
                    log.warning("event=command_%s id=%s detail=%r by=%s", state, cmd["id"],
                                exc.detail, requested_by)
                    try:
                        await self.writer.write([request_line(cmd, ts_ms=ts, state=state,
                                                              error=exc.kind, **who)])
                    except SinkError as werr:
                        log.error("event=command_record_failed id=%s state=%s detail=%r",
                                  cmd["id"], state, str(werr)[:300])
                    if state == "unconfirmed":
                        raise CommandError(503, N_("the broker did not confirm the command; "
                                                   "it may still reach the gateway until "
                                                   "it expires — see the command list")
                                           ) from None
                    raise CommandError(503, N_("the MQTT broker refused the command "
                                               "(%(detail)s); nothing was sent — is the "
                                               "API's MQTT user the api identity?"),
                                       detail=exc.detail[:100]) from None
            finally:
                await asyncio.to_thread(conn.close)
        try:
            await self.writer.write([request_line(
                cmd, ts_ms=ts, state="sent", error="" if listening else "no_subscribers",
                **who)])
        except SinkError as exc:  # sent and recorded as sending: the list still shows it
            log.error("event=command_record_failed id=%s state=sent detail=%r", cmd["id"],
                      str(exc)[:300])
        log.info("event=command_sent id=%s site=%s gateway=%s device=%s kind=%s target=%s "
                 "value=%s expires_at=%d by=%s", cmd["id"], cmd["site"], cmd["gateway"],
                 cmd["device"], cmd["action"], cmd["target"], cmd["value"], cmd["expires_at"],
                 requested_by)
        if not listening:
            log.warning("event=command_unheard id=%s gateway=%s reason=no_subscribers",
                        cmd["id"], cmd["gateway"])
        return ts, listening


# --------------------------------------------------------------------------- the record


async def listing(store: Any, *, site: str, gateway: str, start: int, end: int,
                  device: str | None, lang: Lang, now_ms: int | None = None
                  ) -> list[dict[str, Any]]:
    """The requests for ``gateway`` in [start, end), newest first, each with its answer.

    An answer is the gateway's result stored in ``command`` (joined by the command id);
    a command can be answered twice (a QoS 1 duplicate is refused as ``replayed``), so the
    first answer is the outcome and ``answers`` lists them all. Without one: ``pending``
    until the command expires, then ``no_answer``; ``not_sent`` if it never left."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    where = f"site = {quote(site)} AND gateway = {quote(gateway)}"
    if device:
        where += f" AND device = {quote(device)}"
    requests = await store.rows(
        f'SELECT * FROM "{MEASUREMENT}" WHERE {where} AND time >= {start}ms '
        f"AND time < {end}ms ORDER BY time DESC LIMIT {LIST_LIMIT}")
    answers: dict[str, list[dict[str, Any]]] = {}
    if requests:
        results = await store.rows(
            f'SELECT * FROM "{RESULTS}" WHERE {where} AND time >= {start - 3_600_000}ms '
            f"AND time < {end + ANSWER_WINDOW_MS}ms LIMIT 100000")
        for r in sorted(results, key=lambda r: r.get("time") or 0):
            if r.get("command_id"):
                answers.setdefault(str(r["command_id"]), []).append(r)
    _ = gettext_for(lang)
    out = []
    for q in requests:
        got = answers.get(str(q.get("command_id")), [])
        first = got[0] if got else None
        state = str(q.get("state") or "")
        if first is not None:
            outcome = str(first.get("outcome") or "")
        elif state == "not_sent":
            outcome = "not_sent"
        elif now > int(q.get("expires_at") or 0) * 1000 + 60_000:
            outcome = "no_answer"
        else:
            outcome = "pending"
        out.append({
            "id": q.get("command_id"), "requested_at": q.get("time"),
            "requested_by": q.get("requested_by"), "role": q.get("role"),
            "device": q.get("device"), "kind": q.get("kind"), "target": q.get("target"),
            "value": q.get("value"), "issued_at": q.get("issued_at"),
            "expires_at": q.get("expires_at"), "key_id": q.get("key_id"), "state": state,
            "error": q.get("error") or "", "outcome": outcome,
            "outcome_text": str(_(OUTCOME_TEXT[outcome])) if outcome in OUTCOME_TEXT
            else outcome,
            "reason": (first or {}).get("reason") or "",
            "detail": (first or {}).get("detail") or "",
            "readback": (first or {}).get("readback"),
            "registers": (first or {}).get("registers"),
            # a coil write's states read back, a time sync's clocks and offsets
            **{k: (first or {}).get(k) for k in ("coils", "clock_before", "clock",
                                                 "offset_before_s", "offset_s")},
            "answered_at": (first or {}).get("time"),
            "answers": [{"outcome": a.get("outcome"), "reason": a.get("reason") or "",
                         "at": a.get("time")} for a in got],
        })
    return out
