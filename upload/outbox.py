"""The durable outbox of key-unit statistics documents (SQLite, WAL).

Why a record, not a queue: a platform keeps one record per (unit, kind, period). A day
that is recomputed after late readings arrive must *update* that record, never add a
second one. So the outbox keeps one row per ``record_id`` (``UNIT:KIND:PERIOD``) and
every distinct content of it as a numbered revision:

- ``put(doc)`` of a document identical to the latest revision (``generated_at`` aside)
  changes nothing; a changed one becomes revision n+1 of the same record and is sent
  as an update with the same record id;
- the sender sends the latest revision until the platform acknowledges it; retryable
  failures back off exponentially (``Backoff``), a permanent refusal moves the record
  to ``dead`` with the platform's reason, where ``enmon upload retry`` brings it back;
- each attempt is written down *before* it is made, so an attempt interrupted by a
  crash shows as such, and the resend after a restart carries the same record id and
  revision: the platform recognises it (``duplicate``) rather than counting it twice;
- every revision's document, every attempt and every receipt (the platform's id and
  time) stay in the file for ``enmon upload status`` / ``show``. Nothing is deleted.

Several processes may share the file (a builder puts, the sender sends): writes take
``BEGIN IMMEDIATE`` and ``busy_timeout`` waits for the other writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from upload.config import Backoff
from upload.transport import Receipt, Transport, TransportError

log = logging.getLogger("enmon.upload.outbox")

SCHEMA = "enmon.keyunit/1"
State = Literal["pending", "sent", "dead"]
Outcome = Literal["acked", "duplicate", "retry", "dead", "superseded"]

_DDL = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    unit_code TEXT NOT NULL,
    kind TEXT NOT NULL,
    period TEXT NOT NULL,
    revision INTEGER NOT NULL,
    state TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    acked_revision INTEGER NOT NULL DEFAULT 0,
    receipt_id TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL DEFAULT '',
    acked_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_due ON records (state, next_at, id);
CREATE TABLE IF NOT EXISTS revisions (
    record INTEGER NOT NULL REFERENCES records (id),
    revision INTEGER NOT NULL,
    digest TEXT NOT NULL,
    document TEXT NOT NULL,
    put_at REAL NOT NULL,
    receipt_id TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL DEFAULT '',
    acked_at REAL,
    PRIMARY KEY (record, revision)
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record INTEGER NOT NULL REFERENCES records (id),
    revision INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    status INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    receipt_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_record ON attempts (record, id);
"""

_PERIOD = {"day": re.compile(r"^\d{4}-\d{2}-\d{2}$"), "month": re.compile(r"^\d{4}-\d{2}$")}
_BASIS = (None, "equivalent", "calorific")


class DocumentError(ValueError):
    """A document that breaks the ``enmon.keyunit/1`` shape; it is never queued."""


def validate_document(doc: Mapping[str, Any]) -> None:
    """Check the fixed shape (not the figures); raise DocumentError naming the key."""
    def need(cond: bool, key: str, what: str) -> None:
        if not cond:
            raise DocumentError(f"{key}: {what}")

    need(doc.get("schema") == SCHEMA, "schema", f"must be {SCHEMA!r} (got {doc.get('schema')!r})")
    unit = doc.get("unit")
    need(isinstance(unit, Mapping), "unit", "must be a mapping with code and name")
    assert isinstance(unit, Mapping)
    for k in ("code", "name"):
        need(isinstance(unit.get(k), str) and bool(unit.get(k)), f"unit.{k}", "non-empty text")
    need(":" not in unit["code"], "unit.code", "must not contain ':'")
    kind = doc.get("kind")
    need(kind in _PERIOD, "kind", f"must be 'day' or 'month' (got {kind!r})")
    period = doc.get("period")
    need(isinstance(period, str) and bool(_PERIOD[str(kind)].match(period)), "period",
         f"must look like {'2026-11-03' if kind == 'day' else '2026-11'} (got {period!r})")
    need(isinstance(doc.get("stat_time"), str), "stat_time", "ISO-8601 text with offset")
    inds = doc.get("indicators")
    need(isinstance(inds, list), "indicators", "must be a list")
    assert isinstance(inds, list)
    for i, ind in enumerate(inds):
        need(isinstance(ind, Mapping), f"indicators.{i}", "must be a mapping")
        for k in ("code", "name", "unit"):
            need(isinstance(ind.get(k), str), f"indicators.{i}.{k}", "text")
        v = ind.get("value")
        need(isinstance(v, int | float) and not isinstance(v, bool), f"indicators.{i}.value",
             f"a number (got {v!r})")
        need(ind.get("basis") in _BASIS, f"indicators.{i}.basis",
             "'equivalent', 'calorific' or null")
    need(isinstance(doc.get("quality"), Mapping), "quality", "must be a mapping")
    need(isinstance(doc.get("generated_at"), int), "generated_at", "epoch milliseconds")


def record_id_for(doc: Mapping[str, Any]) -> str:
    """The record's id at the platform: ``UNIT:KIND:PERIOD`` (stable across outbox files)."""
    return f"{doc['unit']['code']}:{doc['kind']}:{doc['period']}"


def _canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def document_digest(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON without ``generated_at`` (re-running a build is no change)."""
    body = {k: v for k, v in doc.items() if k != "generated_at"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


@dataclass(frozen=True)
class PutResult:
    """What ``put`` did: ``changed`` False means the same content was already queued."""

    id: int
    record_id: str
    revision: int
    changed: bool


@dataclass(frozen=True)
class Record:
    """One row of ``records``: a platform record and where its latest revision stands."""

    id: int
    record_id: str
    unit_code: str
    kind: str
    period: str
    revision: int
    state: State
    failures: int
    next_at: float
    last_error: str
    acked_revision: int
    receipt_id: str
    received_at: str
    acked_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Revision:
    revision: int
    digest: str
    document: dict[str, Any]
    put_at: float
    receipt_id: str
    received_at: str
    acked_at: float | None


@dataclass(frozen=True)
class Attempt:
    """One send; ``outcome`` None means it was cut off (a crash) before an answer."""

    id: int
    revision: int
    started_at: float
    finished_at: float | None
    outcome: str | None
    status: int | None
    detail: str
    receipt_id: str


_REC_COLS = ", ".join(Record.__dataclass_fields__)


class Outbox:
    """The outbox file; one instance per process (not shared between threads).

    Args:
        path: the SQLite file (created with its tables if missing).
        backoff: retry timing; ``max_attempts`` failures of one revision make it dead.
        send_timeout_s: an outer limit on one ``transport.send`` (the transport has its own).
        clock: seconds since the epoch (tests may pass a fake).
    """

    def __init__(self, path: str | Path, *, backoff: Backoff | None = None,
                 send_timeout_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.backoff = backoff or Backoff()
        self.send_timeout_s = send_timeout_s
        self.clock = clock
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_DDL)
        self._wake = asyncio.Event()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading so two writers cannot interleave."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ producer side

    def put(self, document: Mapping[str, Any]) -> PutResult:
        """Queue ``document`` as a new record, a new revision of its record, or nothing.

        Raises DocumentError (nothing queued) if the document breaks the fixed shape.
        """
        validate_document(document)
        rid, digest, text = record_id_for(document), document_digest(document), _canonical(
            document)
        now = self.clock()
        with self._write() as db:
            row = db.execute("SELECT r.id, r.revision, v.digest FROM records r JOIN revisions v"
                             " ON v.record = r.id AND v.revision = r.revision"
                             " WHERE r.record_id = ?", (rid,)).fetchone()
            if row is not None and row[2] == digest:
                return PutResult(row[0], rid, row[1], False)
            if row is None:
                cur = db.execute(
                    "INSERT INTO records (record_id, unit_code, kind, period, revision, state,"
                    " next_at, created_at, updated_at) VALUES (?, ?, ?, ?, 1, 'pending', ?, ?, ?)",
                    (rid, document["unit"]["code"], document["kind"], document["period"],
                     now, now, now))
                pk, revision = int(cur.lastrowid or 0), 1
            else:
                pk, revision = int(row[0]), int(row[1]) + 1
                db.execute("UPDATE records SET revision = ?, state = 'pending', failures = 0,"
                           " next_at = ?, last_error = '', updated_at = ? WHERE id = ?",
                           (revision, now, now, pk))
            db.execute("INSERT INTO revisions (record, revision, digest, document, put_at)"
                       " VALUES (?, ?, ?, ?, ?)", (pk, revision, digest, text, now))
        log.info("event=upload_queued id=%d record_id=%s revision=%d", pk, rid, revision)
        self._wake.set()
        return PutResult(pk, rid, revision, True)

    def retry(self, key: int | str) -> bool:
        """``dead`` → ``pending`` (after the cause is fixed); False if it was not dead."""
        rec = self.get(key)
        if rec is None or rec.state != "dead":
            return False
        with self._write() as db:
            db.execute("UPDATE records SET state = 'pending', failures = 0, next_at = ?,"
                       " updated_at = ? WHERE id = ? AND state = 'dead'",
                       (self.clock(), self.clock(), rec.id))
        log.info("event=upload_retry id=%d record_id=%s", rec.id, rec.record_id)
        self._wake.set()
        return True

    # ------------------------------------------------------------------ inspection

    def get(self, key: int | str) -> Record | None:
        """A record by its row id (``7`` or ``"7"``) or by its record id (``U:day:2026-11-03``)."""
        if isinstance(key, int) or key.isdigit():
            row = self.db.execute(f"SELECT {_REC_COLS} FROM records WHERE id = ?",
                                  (int(key),)).fetchone()
        else:
            row = self.db.execute(f"SELECT {_REC_COLS} FROM records WHERE record_id = ?",
                                  (key,)).fetchone()
        return Record(*row) if row else None

    def records(self, state: State | None = None) -> list[Record]:
        q, args = f"SELECT {_REC_COLS} FROM records", ()
        if state is not None:
            q, args = q + " WHERE state = ?", (state,)  # type: ignore[assignment]
        return [Record(*r) for r in self.db.execute(q + " ORDER BY id", args)]

    def revisions(self, record: int) -> list[Revision]:
        return [Revision(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6])
                for r in self.db.execute(
                    "SELECT revision, digest, document, put_at, receipt_id, received_at, acked_at"
                    " FROM revisions WHERE record = ? ORDER BY revision", (record,))]

    def attempts(self, record: int) -> list[Attempt]:
        return [Attempt(*r) for r in self.db.execute(
            "SELECT id, revision, started_at, finished_at, outcome, status, detail, receipt_id"
            " FROM attempts WHERE record = ? ORDER BY id", (record,))]

    def counts(self) -> dict[str, int]:
        """Records per state (``pending``, ``sent``, ``dead``), zeros included."""
        out = {"pending": 0, "sent": 0, "dead": 0}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM records GROUP BY state"):
            out[state] = n
        return out

    def document(self, record: int, revision: int) -> dict[str, Any]:
        row = self.db.execute("SELECT document FROM revisions WHERE record = ? AND revision = ?",
                              (record, revision)).fetchone()
        if row is None:
            raise KeyError(f"record {record} has no revision {revision}")
        return dict(json.loads(row[0]))

    # ------------------------------------------------------------------ sending

    def next_due(self) -> tuple[Record | None, float | None]:
        """The pending record to send now, else (None, seconds until one is due or None)."""
        now = self.clock()
        row = self.db.execute(f"SELECT {_REC_COLS} FROM records WHERE state = 'pending'"
                              " ORDER BY next_at, id LIMIT 1").fetchone()
        if row is None:
            return None, None
        rec = Record(*row)
        if rec.next_at > now:
            return None, rec.next_at - now
        return rec, 0.0

    def _begin_attempt(self, rec: Record) -> int:
        with self._write() as db:
            cur = db.execute("INSERT INTO attempts (record, revision, started_at) VALUES (?, ?, ?)",
                             (rec.id, rec.revision, self.clock()))
        return int(cur.lastrowid or 0)

    def _acked(self, rec: Record, revision: int, attempt: int, receipt: Receipt) -> Outcome:
        now = self.clock()
        outcome: Outcome = "duplicate" if receipt.duplicate else "acked"
        with self._write() as db:
            db.execute("UPDATE attempts SET finished_at = ?, outcome = ?, receipt_id = ?,"
                       " detail = ? WHERE id = ?",
                       (now, outcome, receipt.receipt_id, receipt.detail, attempt))
            db.execute("UPDATE revisions SET receipt_id = ?, received_at = ?, acked_at = ?"
                       " WHERE record = ? AND revision = ?",
                       (receipt.receipt_id, receipt.received_at, now, rec.id, revision))
            db.execute("UPDATE records SET acked_revision = MAX(acked_revision, ?),"
                       " receipt_id = ?, received_at = ?, acked_at = ?, updated_at = ?"
                       " WHERE id = ?",
                       (revision, receipt.receipt_id, receipt.received_at, now, now, rec.id))
            # a newer revision put while this one was in flight stays pending
            db.execute("UPDATE records SET state = 'sent', failures = 0, last_error = ''"
                       " WHERE id = ? AND revision = ?", (rec.id, revision))
        log.info("event=upload_acked id=%d record_id=%s revision=%d receipt_id=%s duplicate=%s",
                 rec.id, rec.record_id, revision, receipt.receipt_id, receipt.duplicate)
        return outcome

    def _failed(self, rec: Record, revision: int, attempt: int, exc: BaseException) -> Outcome:
        now = self.clock()
        retryable = bool(getattr(exc, "retryable", True))
        status = getattr(exc, "status", None)
        reason = str(exc) or type(exc).__name__
        with self._write() as db:
            row = db.execute("SELECT revision, failures FROM records WHERE id = ?",
                             (rec.id,)).fetchone()
            failures = int(row[1]) + 1
            if int(row[0]) != revision:  # superseded while in flight: the new one goes next
                outcome: Outcome = "superseded"
            elif not retryable or (self.backoff.max_attempts is not None
                                   and failures >= self.backoff.max_attempts):
                outcome = "dead"
                db.execute("UPDATE records SET state = 'dead', failures = ?, last_error = ?,"
                           " updated_at = ? WHERE id = ?", (failures, reason, now, rec.id))
            else:
                outcome = "retry"
                delay = max(self.backoff.delay(failures),
                            getattr(exc, "retry_after_s", None) or 0.0)
                db.execute("UPDATE records SET failures = ?, next_at = ?, last_error = ?,"
                           " updated_at = ? WHERE id = ?",
                           (failures, now + delay, reason, now, rec.id))
            db.execute("UPDATE attempts SET finished_at = ?, outcome = ?, status = ?, detail = ?"
                       " WHERE id = ?", (now, outcome, status, reason, attempt))
        if outcome == "dead":
            log.error("event=upload_dead id=%d record_id=%s revision=%d failures=%d error=%r",
                      rec.id, rec.record_id, revision, failures, reason)
        else:
            log.warning("event=upload_%s id=%d record_id=%s revision=%d failures=%d error=%r",
                        outcome, rec.id, rec.record_id, revision, failures, reason)
        return outcome

    async def send_next(self, transport: Transport) -> Outcome | float | None:
        """Send the most overdue pending record once.

        Returns the outcome, or the seconds until the next record is due (nothing due
        now), or None when nothing is pending at all.
        """
        rec, wait = self.next_due()
        if rec is None:
            return wait
        revision = rec.revision
        document = self.document(rec.id, revision)
        attempt = self._begin_attempt(rec)
        try:
            receipt = await asyncio.wait_for(
                transport.send(document, rec.record_id, revision), self.send_timeout_s)
        except (TransportError, TimeoutError) as exc:
            return self._failed(rec, revision, attempt, exc)
        except Exception as exc:  # a transport bug: keep the document, retry later
            log.exception("event=upload_transport_bug id=%d", rec.id)
            return self._failed(rec, revision, attempt, exc)
        return self._acked(rec, revision, attempt, receipt)

    async def run(self, transport: Transport, stop: asyncio.Event, *,
                  poll_s: float = 2.0) -> None:
        """Send until ``stop`` is set; the send in flight is finished, not abandoned.

        Besides each record's own backoff, consecutive retryable failures slow the whole
        loop (the platform is down, not one document), so a long backlog does not hammer
        a platform that is coming back. ``poll_s`` bounds how late a document that
        another process put is noticed.
        """
        streak = 0
        log.info("event=upload_sender_start outbox=%s transport=%s", self.path, transport.name)
        while not stop.is_set():
            self._wake.clear()
            try:
                result = await self.send_next(transport)
            except sqlite3.Error:
                log.exception("event=upload_outbox_error outbox=%s", self.path)
                result = self.backoff.base_s
            if result in ("acked", "duplicate", "dead", "superseded"):
                streak = 0
                continue
            if result == "retry":
                streak += 1
                wait = self.backoff.delay(streak)
            else:
                wait = poll_s if not isinstance(result, float) else min(result, poll_s)
            waker = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waker, stopper}, timeout=wait,
                               return_when=asyncio.FIRST_COMPLETED)
            for t in (waker, stopper):
                t.cancel()
        c = self.counts()
        log.info("event=upload_sender_stop pending=%d sent=%d dead=%d",
                 c["pending"], c["sent"], c["dead"])
