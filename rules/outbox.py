"""A persisted outbox: every notification reaches every channel, or says why not.

A notification is written to SQLite (one row per channel) *before* anyone tries
to send it, so a crash, a restart or a robot that is down for an hour loses
nothing. Each channel has its own worker and its own queue: a dead SMTP server
backs off on its own and never delays the WeCom robot. Within a channel order
is kept (a "resolved" never overtakes its "firing").

Retry: exponential backoff from ``base_delay_s`` up to ``max_delay_s``; a
non-retryable refusal (bad URL, wrong secret) or ``max_attempts`` failures moves
the row to ``dead`` with its last error, where ``enmon rules outbox`` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rules.channels import NotifyError, Sender

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
"""


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
               state: Mapping[str, Any] | None = None) -> int:
        """Queue ``(channel, note)`` items and save the alert state in ONE transaction.

        This is what makes a restart safe: either the state says "notified" and the
        notification is queued, or neither happened (a crash in between cannot
        produce a lost or a repeated notification).
        """
        now = self.clock()
        rows = [(ch, json.dumps(n, ensure_ascii=False, sort_keys=True), now, now)
                for ch, n in items if ch in self.senders]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO outbox (channel, body, next_at, created_at) VALUES (?, ?, ?, ?)", rows)
            if state is not None:
                self.db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('alerts', ?)",
                                (json.dumps(state, ensure_ascii=False),))
        for ch in {r[0] for r in rows}:
            ev = self._wake.get(ch)
            if ev is not None:
                ev.set()
        return len(rows)

    def load_state(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = 'alerts'").fetchone()
        return json.loads(row[0]) if row else None

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for ch, state, n in self.db.execute(
                "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state"):
            out.setdefault(ch, {})[state] = n
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
        """Try the head of ``channel``'s queue; return seconds until the next try (None: empty)."""
        row = self.db.execute(
            "SELECT id, body, attempts, next_at FROM outbox WHERE channel = ? AND state = 'pending'"
            " ORDER BY id LIMIT 1", (channel,)).fetchone()
        if row is None:
            return None
        rid, body, attempts, next_at = row
        wait = next_at - self.clock()
        if wait > 0:
            return float(wait)
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
            if wait == 0.0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(wait or 3600.0, 5.0))

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: one independent worker per channel."""
        tasks = [asyncio.create_task(self._worker(ch, stop), name=f"outbox-{ch}")
                 for ch in self.senders]
        stopper = asyncio.create_task(stop.wait())
        for ch in self.senders:
            self._wake.setdefault(ch, asyncio.Event())
        await stopper
        for ev in self._wake.values():
            ev.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
