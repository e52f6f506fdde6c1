"""Store-and-forward: every batch goes to disk before it goes to the broker.

A SQLite database in WAL mode holds the batches in ``seq`` order. A batch is
deleted only after the broker's PUBACK for it, so a broker outage, a crash or a
``kill -9`` loses nothing that was committed, and replay re-sends the very same
bytes (original sample timestamps, original ``seq``).

Durability versus SD-card wear — what we chose and why:

* ``journal_mode=WAL``: an append is one sequential write to the -wal file, and
  readers (``enmon gateway`` health, tests) never block the writer.
* **Appends commit with ``synchronous=FULL``** — one fsync per poll cycle (one
  batch per cycle, typically every 10–60 s), so a power cut loses at most the
  cycle being written. That is a few fsyncs a minute: negligible wear.
* **Acknowledgements commit with ``synchronous=NORMAL``** (no fsync) and are
  grouped: ``ack()`` only marks; ``flush_acks()`` deletes every acked row in one
  transaction. A power cut can forget an ack; the batch is then re-sent once,
  which ingest tolerates (writes are idempotent, ``seq`` duplicates counted).
  Losing a reading is not acceptable; sending one twice is.
* Bounded by bytes (``max_bytes``): when full, the *oldest* batches are dropped
  in the same transaction as the append, and the number of batches and samples
  ever dropped is stored in the database and reported in ``health``.

The ``seq`` counter lives in the same database and is advanced in the same
transaction as the append, so it survives restarts and never repeats.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    seq INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    created_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueueStats:
    depth: int
    bytes: int
    dropped_batches: int
    dropped_samples: int
    next_seq: int


class DiskQueue:
    """A bounded, durable FIFO of encoded batches keyed by ``seq``.

    Thread-safe (one connection behind a lock): the poller appends from the
    asyncio thread while PUBACKs arrive on paho's network thread.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = 64 * 1024 * 1024,
                 first_seq: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._acked: set[int] = set()
        if first_seq and self._db.execute(
                "SELECT 1 FROM meta WHERE key = 'next_seq'").fetchone() is None:
            # a new queue that must continue an older seq counter (see agent.legacy_seq)
            self._set_meta("next_seq", str(first_seq))
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM batch").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])

    # ------------------------------------------------------------------ meta

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_state(self, key: str) -> Any:
        """JSON state the runtime keeps next to the queue (e.g. counter baselines)."""
        with self._lock:
            return json.loads(self._meta("state:" + key, "null"))

    def set_state(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._set_meta("state:" + key, json.dumps(value))

    # ------------------------------------------------------------------ append

    def append(self, build: Callable[[int], tuple[bytes, int]], created_ms: int) -> int:
        """Append one batch; ``build(seq)`` returns (payload, sample count). Returns the seq.

        ``build`` gets the seq first because the payload carries it; both are
        committed in one fsynced transaction.
        """
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._meta("next_seq", "0"))
                payload, samples = build(seq)
                self._drop_oldest_for(len(payload))
                self._db.execute(
                    "INSERT INTO batch (seq, created_ms, samples, payload) VALUES (?, ?, ?, ?)",
                    (seq, created_ms, samples, payload),
                )
                self._set_meta("next_seq", str(seq + 1))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += 1
            self._bytes += len(payload)
            return seq

    def _drop_oldest_for(self, incoming: int) -> None:
        if self._bytes + incoming <= self.max_bytes:
            return
        dropped_b = dropped_s = 0
        freed = 0
        need = self._bytes + incoming - self.max_bytes
        for seq, size, samples in self._db.execute(
            "SELECT seq, LENGTH(payload), samples FROM batch ORDER BY seq"
        ).fetchall():
            if freed >= need:
                break
            self._db.execute("DELETE FROM batch WHERE seq = ?", (seq,))
            self._acked.discard(seq)
            freed += size
            dropped_b += 1
            dropped_s += samples
        self._set_meta("dropped_batches", str(int(self._meta("dropped_batches", "0")) + dropped_b))
        self._set_meta("dropped_samples", str(int(self._meta("dropped_samples", "0")) + dropped_s))
        self._depth -= dropped_b
        self._bytes -= freed

    # ------------------------------------------------------------------ read / ack

    def peek(self, after: int = -1, limit: int = 100) -> list[Stored]:
        """The oldest un-acked batches with seq > ``after``, in seq order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, created_ms, payload FROM batch WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit + len(self._acked)),
            ).fetchall()
            out = [Stored(int(s), int(c), bytes(p)) for s, c, p in rows if s not in self._acked]
            return out[:limit]

    def get(self, seq: int) -> Stored | None:
        """One batch by seq, if it is still queued (a resend)."""
        with self._lock:
            if seq in self._acked:
                return None
            row = self._db.execute("SELECT seq, created_ms, payload FROM batch WHERE seq = ?",
                                   (seq,)).fetchone()
            return Stored(int(row[0]), int(row[1]), bytes(row[2])) if row else None

    def ack(self, seq: int) -> None:
        """Mark ``seq`` as delivered (stored by ingest, or PUBACKed when not end to end);
        deleted at the next flush."""
        with self._lock:
            self._acked.add(seq)

    def flush_acks(self) -> int:
        """Delete every acked batch in one un-fsynced transaction; returns how many."""
        with self._lock:
            if not self._acked:
                return 0
            acked = sorted(self._acked)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            n = freed = 0
            for seq in acked:
                row = self._db.execute(
                    "SELECT LENGTH(payload) FROM batch WHERE seq = ?", (seq,)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM batch WHERE seq = ?", (seq,))
                    n += 1
                    freed += int(row[0])
            self._db.execute("COMMIT")
            self._acked.clear()
            self._depth -= n
            self._bytes -= freed
            return n

    def stats(self) -> QueueStats:
        with self._lock:
            return QueueStats(
                depth=self._depth - len(self._acked),
                bytes=self._bytes,
                dropped_batches=int(self._meta("dropped_batches", "0")),
                dropped_samples=int(self._meta("dropped_samples", "0")),
                next_seq=int(self._meta("next_seq", "0")),
            )

    def close(self) -> None:
        self.flush_acks()
        with self._lock:
            self._db.close()
