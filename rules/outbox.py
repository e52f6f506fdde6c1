"""A persisted outbox: every notification reaches every channel, or says why not.

A notification is written to SQLite (one row per channel) *before* anyone tries
to send it, so a crash, a restart or a robot that is down for an hour loses
nothing. Each channel has its own worker and its own queue: a dead SMTP server
backs off on its own and never delays the WeCom robot. Within a channel order
is kept (a "resolved" never overtakes its "firing").

Retry: exponential backoff from ``base_delay_s`` up to ``max_delay_s``; a
non-retryable refusal (bad URL, wrong secret) or ``max_attempts`` failures moves
the row to ``dead`` with its last error, where ``enmon rules outbox`` shows it.

Grouping (``grouping:``, Alertmanager's group_by / group_wait / group_interval): a firing
that joins a group is *held* in the ``grouped`` table, committed with the alert state like
any row; when the group falls due (``group_wait_s`` after its first alert, and no sooner
than ``group_interval_s`` after the group's previous message) the channel's worker turns
its held rows into ONE queued notification in one transaction. A kill -9 before that keeps
the held rows, after it the queued one: nothing is lost and nothing is sent twice. A
notification of an alert that is held (its resolution, say) releases the group first, so it
never overtakes its firing.

Escalations (a channel's ``escalate:``) are rows of the ``escalation`` table, committed with
the firing's notification; the rules service decides, when one falls due, whether it is
still wanted (firing, not acknowledged) and commits its messages and the row's removal in
one transaction, so it goes out once, also across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.channels import NotifyError, Sender, group_message

log = logging.getLogger("enmon.rules.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_head ON outbox (channel, state, id);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grouped (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    group_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    due_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS grouped_due ON grouped (channel, due_at);
CREATE TABLE IF NOT EXISTS group_sent (
    channel TEXT NOT NULL,
    group_key TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (channel, group_key)
);
CREATE TABLE IF NOT EXISTS escalation (
    fingerprint TEXT NOT NULL,
    fired_at INTEGER NOT NULL,
    target TEXT NOT NULL,
    source TEXT NOT NULL,
    notified_at REAL NOT NULL,
    due_at REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (fingerprint, fired_at, target)
);
"""

# how long a group remembers its last message (bounds group_interval_s, see rules.config)
GROUP_MEMORY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Hold:
    """A firing held for its group on one channel (``group_key``: ``channels.group_key``)."""

    channel: str
    group_key: str
    note: Mapping[str, Any]
    wait_s: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class Escalation:
    """Send ``note`` escalated to ``target`` ``after_s`` after ``source`` was first told,
    unless the firing (``fingerprint``, ``fired_at``) was acknowledged or ended by then."""

    fingerprint: str
    fired_at: int
    target: str
    source: str
    after_s: float
    note: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DueEscalation:
    fingerprint: str
    fired_at: int
    target: str
    source: str
    notified_at: float
    note: dict[str, Any]


#: how long a stopping outbox lets a send already on the wire finish (a systemd stop
#: allows 90 s by default; a receiver that hangs longer is retried at the next start)
STOP_GRACE_S = 10.0


class Outbox:
    def __init__(self, path: str | Path, senders: Mapping[str, Sender], *,
                 base_delay_s: float = 1.0, max_delay_s: float = 300.0, max_attempts: int = 50,
                 send_timeout_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.senders = dict(senders)
        self.base, self.max_delay, self.max_attempts = base_delay_s, max_delay_s, max_attempts
        self.send_timeout_s = send_timeout_s
        self.clock = clock
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self._wake: dict[str, asyncio.Event] = {}
        self.delivered: dict[str, int] = dict.fromkeys(self.senders, 0)
        self.failures: dict[str, int] = dict.fromkeys(self.senders, 0)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ producer side

    def enqueue(self, note: Mapping[str, Any], channels: Iterable[str] | None = None) -> int:
        """Durably queue ``note`` for each channel (all by default); returns rows added."""
        names = list(channels) if channels is not None else list(self.senders)
        body = json.dumps(note, ensure_ascii=False, sort_keys=True)
        now = self.clock()
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO outbox (channel, body, next_at, created_at) VALUES (?, ?, ?, ?)",
                [(n, body, now, now) for n in names if n in self.senders])
        for n in names:
            ev = self._wake.get(n)
            if ev is not None:
                ev.set()
        return len(names)

    def commit(self, items: Iterable[tuple[str, Mapping[str, Any]]],
               state: Mapping[str, Any] | None = None, *, held: Iterable[Hold] = (),
               escalations: Iterable[Escalation] = (),
               escalated: Iterable[tuple[str, int, str]] = (),
               cancel: Iterable[str] = ()) -> int:
        """Queue ``(channel, note)`` items and save the alert state in ONE transaction.

        This is what makes a restart safe: either the state says "notified" and the
        notification is queued, or neither happened (a crash in between cannot
        produce a lost or a repeated notification). In the same transaction: firings
        ``held`` for their group, ``escalations`` scheduled, ``escalated`` ones
        ``(fingerprint, fired_at, target)`` done, and the escalations of the ``cancel``
        fingerprints (acknowledged) dropped.
        """
        now = self.clock()
        items = [(ch, n) for ch, n in items if ch in self.senders]
        held = [h for h in held if h.channel in self.senders]
        woken = {ch for ch, _ in items} | {h.channel for h in held}
        with self.db:
            self.db.execute("BEGIN")
            holding = {c for (c,) in self.db.execute("SELECT DISTINCT channel FROM grouped")}
            for ch, n in items:  # a held firing of this alert goes out first (order)
                if ch not in holding:
                    continue
                fp = n.get("fingerprint")
                for (key,) in self.db.execute(
                        "SELECT DISTINCT group_key FROM grouped WHERE channel=? AND "
                        "fingerprint=?", (ch, fp)).fetchall():
                    self._release(ch, key, now)
            self.db.executemany(
                "INSERT INTO outbox (channel, body, next_at, created_at) VALUES (?, ?, ?, ?)",
                [(ch, json.dumps(n, ensure_ascii=False, sort_keys=True), now, now)
                 for ch, n in items])
            for h in held:
                self._hold(h, now)
            for e in escalations:
                # a firing held for its group is first notified when the group is released:
                # the escalation counts from then, never arriving before the message it follows
                row = self.db.execute("SELECT MAX(due_at) FROM grouped WHERE channel=? AND "
                                      "fingerprint=?", (e.source, e.fingerprint)).fetchone()
                told = max(now, float(row[0])) if row and row[0] is not None else now
                self.db.execute(
                    "INSERT OR IGNORE INTO escalation (fingerprint, fired_at, target, source, "
                    "notified_at, due_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (e.fingerprint, e.fired_at, e.target, e.source, told, told + e.after_s,
                     json.dumps(e.note, ensure_ascii=False, sort_keys=True)))
            self.db.executemany(
                "DELETE FROM escalation WHERE fingerprint=? AND fired_at=? AND target=?",
                list(escalated))
            self.db.executemany("DELETE FROM escalation WHERE fingerprint=?",
                                [(fp,) for fp in cancel])
            if state is not None:
                self.db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('alerts', ?)",
                                (json.dumps(state, ensure_ascii=False),))
        for ch in woken:
            ev = self._wake.get(ch)
            if ev is not None:
                ev.set()
        return len(items) + len(held)

    def _hold(self, h: Hold, now: float) -> None:
        """Join the open group of ``h`` or open one: due ``wait_s`` from now, and not before
        ``interval_s`` after the group's previous message."""
        row = self.db.execute("SELECT MIN(due_at) FROM grouped WHERE channel=? AND group_key=?",
                              (h.channel, h.group_key)).fetchone()
        due = row[0] if row and row[0] is not None else None
        if due is None:
            sent = self.db.execute("SELECT sent_at FROM group_sent WHERE channel=? AND "
                                   "group_key=?", (h.channel, h.group_key)).fetchone()
            due = max(now + h.wait_s, (sent[0] + h.interval_s) if sent else 0.0)
        self.db.execute(
            "INSERT INTO grouped (channel, group_key, fingerprint, due_at, body) "
            "VALUES (?, ?, ?, ?, ?)",
            (h.channel, h.group_key, str(h.note.get("fingerprint", "")), due,
             json.dumps(h.note, ensure_ascii=False, sort_keys=True)))

    def _release(self, channel: str, key: str, now: float) -> None:
        """A group's held firings as one queued notification (inside a transaction)."""
        rows = self.db.execute("SELECT id, body FROM grouped WHERE channel=? AND group_key=? "
                               "ORDER BY id", (channel, key)).fetchall()
        if not rows:
            return
        note = group_message([json.loads(b) for _, b in rows], key)
        self.db.execute(
            "INSERT INTO outbox (channel, body, next_at, created_at) VALUES (?, ?, ?, ?)",
            (channel, json.dumps(note, ensure_ascii=False, sort_keys=True), now, now))
        self.db.executemany("DELETE FROM grouped WHERE id=?", [(r[0],) for r in rows])
        self.db.execute("INSERT OR REPLACE INTO group_sent (channel, group_key, sent_at) "
                        "VALUES (?, ?, ?)", (channel, key, now))
        log.info("event=group_released channel=%s alerts=%d group=%s", channel, len(rows), key)

    def release_due(self, channel: str) -> float | None:
        """Queue the groups of ``channel`` that are due; seconds until the next one (None:
        none held)."""
        now = self.clock()
        due = [k for (k,) in self.db.execute(
            "SELECT DISTINCT group_key FROM grouped WHERE channel=? AND due_at <= ?",
            (channel, now)).fetchall()]
        if due:
            with self.db:
                self.db.execute("BEGIN")
                for key in due:
                    self._release(channel, key, now)
                self.db.execute("DELETE FROM group_sent WHERE sent_at < ?",
                                (now - GROUP_MEMORY_S,))
        row = self.db.execute("SELECT MIN(due_at) FROM grouped WHERE channel=?",
                              (channel,)).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]) - now)

    def due_escalations(self) -> list[DueEscalation]:
        """Escalations whose time has come (the caller decides and commits ``escalated``)."""
        return [DueEscalation(fp, int(fired), target, source, float(at), json.loads(body))
                for fp, fired, target, source, at, body in self.db.execute(
                    "SELECT fingerprint, fired_at, target, source, notified_at, body FROM "
                    "escalation WHERE due_at <= ? ORDER BY due_at", (self.clock(),))]

    def escalations(self) -> list[dict[str, Any]]:
        """Every scheduled escalation (``enmon rules outbox``, tests)."""
        cols = ("fingerprint", "fired_at", "target", "source", "notified_at", "due_at")
        return [dict(zip(cols, r, strict=True)) for r in self.db.execute(
            "SELECT fingerprint, fired_at, target, source, notified_at, due_at FROM escalation "
            "ORDER BY due_at")]

    def load_state(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = 'alerts'").fetchone()
        return json.loads(row[0]) if row else None

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for ch, state, n in self.db.execute(
                "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state"):
            out.setdefault(ch, {})[state] = n
        for ch, n in self.db.execute("SELECT channel, COUNT(*) FROM grouped GROUP BY channel"):
            out.setdefault(ch, {})["grouping"] = n  # held for their group, not yet queued
        return out

    def rows(self, state: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT id, channel, state, attempts, next_at, last_error, body FROM outbox"
        args: tuple[Any, ...] = ()
        if state:
            q += " WHERE state = ?"
            args = (state,)
        cols = ("id", "channel", "state", "attempts", "next_at", "last_error", "body")
        return [dict(zip(cols, r, strict=True)) for r in self.db.execute(q + " ORDER BY id", args)]

    # ------------------------------------------------------------------ delivery

    def _delay(self, attempts: int) -> float:
        return float(min(self.max_delay, self.base * 2 ** max(0, attempts - 1)))

    async def deliver_once(self, channel: str) -> float | None:
        """Try the head of ``channel``'s queue; return seconds until the next try (None: empty).

        Groups that fell due are queued first; a held group counts as a next try."""
        group_wait = self.release_due(channel)
        row = self.db.execute(
            "SELECT id, body, attempts, next_at FROM outbox WHERE channel = ? AND state = 'pending'"
            " ORDER BY id LIMIT 1", (channel,)).fetchone()
        if row is None:
            return group_wait
        rid, body, attempts, next_at = row
        wait = next_at - self.clock()
        if wait > 0:
            return float(wait if group_wait is None else min(wait, group_wait))
        sender = self.senders[channel]
        try:
            await asyncio.wait_for(sender.send(json.loads(body)), self.send_timeout_s)
        except (NotifyError, TimeoutError) as exc:
            retryable = getattr(exc, "retryable", True)
            attempts += 1
            self.failures[channel] = self.failures.get(channel, 0) + 1
            err = str(exc) or type(exc).__name__
            if not retryable or attempts >= self.max_attempts:
                self.db.execute(
                    "UPDATE outbox SET state='dead', attempts=?, last_error=? WHERE id=?",
                    (attempts, err, rid))
                log.error("event=notify_dead channel=%s id=%d attempts=%d error=%r",
                          channel, rid, attempts, err)
                return 0.0
            delay = self._delay(attempts)
            self.db.execute("UPDATE outbox SET attempts=?, next_at=?, last_error=? WHERE id=?",
                            (attempts, self.clock() + delay, err, rid))
            log.warning("event=notify_retry channel=%s id=%d attempts=%d delay_s=%.1f error=%r",
                        channel, rid, attempts, delay, err)
            return delay
        self.db.execute("DELETE FROM outbox WHERE id = ?", (rid,))
        self.delivered[channel] = self.delivered.get(channel, 0) + 1
        log.info("event=notified channel=%s id=%d attempts=%d", channel, rid, attempts + 1)
        return 0.0

    async def _worker(self, channel: str, stop: asyncio.Event) -> None:
        wake = self._wake.setdefault(channel, asyncio.Event())
        while not stop.is_set():
            wake.clear()
            try:
                wait = await self.deliver_once(channel)
            except Exception:  # a bug in one channel must not kill the others
                log.exception("event=notify_worker_error channel=%s", channel)
                wait = self.base
            if wait == 0.0 or stop.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(wait or 3600.0, 5.0))

    async def run(self, stop: asyncio.Event, *, grace_s: float = STOP_GRACE_S) -> None:
        """Deliver until ``stop`` is set: one independent worker per channel.

        On stop a send already on the wire is let finish (at most ``grace_s``) and its
        row deleted: cancelled mid-send, the message would have reached its receiver and
        still be queued, so the next start would deliver it a second time.
        """
        tasks = [asyncio.create_task(self._worker(ch, stop), name=f"outbox-{ch}")
                 for ch in self.senders]
        stopper = asyncio.create_task(stop.wait())
        for ch in self.senders:
            self._wake.setdefault(ch, asyncio.Event())
        try:
            await stopper
            for ev in self._wake.values():
                ev.set()
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            if late:
                log.warning("event=outbox_stop_timeout channels=%s grace_s=%.1f",
                            ",".join(sorted(t.get_name()[7:] for t in late)), grace_s)
        finally:
            stopper.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
