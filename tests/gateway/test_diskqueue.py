"""The SQLite disk queue: ordered, bounded with counted drops, durable across kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.diskqueue import DiskQueue
from tests.support import wait_until


def _append(q: DiskQueue, text: str, samples: int = 1) -> int:
    return q.append(lambda seq: (f"{seq}:{text}".encode(), samples), created_ms=0)


def test_fifo_ack_and_seq_survive_reopen(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db")
    assert [_append(q, t) for t in "abc"] == [0, 1, 2]
    assert [s.payload for s in q.peek()] == [b"0:a", b"1:b", b"2:c"]
    q.ack(0)
    assert [s.seq for s in q.peek()] == [1, 2]  # acked is gone from the view at once
    assert q.flush_acks() == 1
    q.close()
    q = DiskQueue(tmp_path / "q.db")
    assert [s.seq for s in q.peek()] == [1, 2]
    assert _append(q, "d") == 3  # seq continues, never repeats
    assert q.stats().depth == 3
    assert [s.seq for s in q.peek(after=1, limit=1)] == [2]
    q.close()


def test_unacked_batches_are_replayed_after_reopen(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db")
    _append(q, "a")
    _append(q, "b")
    q.ack(1)  # PUBACK for 1 arrived but was never flushed: it is re-sent, not lost
    del q
    q2 = DiskQueue(tmp_path / "q.db")
    assert [s.seq for s in q2.peek()] == [0, 1]


def test_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", max_bytes=100)
    for i in range(10):
        q.append(lambda seq, i=i: (bytes(30), 4), created_ms=i)
    st = q.stats()
    assert st.bytes <= 100
    assert [s.seq for s in q.peek()] == [7, 8, 9]  # the newest survive
    assert (st.dropped_batches, st.dropped_samples) == (7, 28)
    q.close()
    assert DiskQueue(tmp_path / "q.db", max_bytes=100).stats().dropped_batches == 7


def test_every_committed_batch_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    script = textwrap.dedent(f"""
        import sys
        from gateway.diskqueue import DiskQueue
        q = DiskQueue({str(db)!r})
        i = 0
        while True:
            seq = q.append(lambda s: (b"x" * 200 + str(s).encode(), 1), created_ms=i)
            print(seq, flush=True)  # printed only after the commit
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    seen: list[int] = []
    wait_until(lambda: seen.append(int(proc.stdout.readline())) or len(seen) >= 50,  # type: ignore[union-attr]
               timeout=60, what="50 committed appends")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    q = DiskQueue(db)
    stored = [s.seq for s in q.peek(limit=100000)]
    assert stored == list(range(len(stored)))  # contiguous, in order
    assert set(seen) <= set(stored)  # nothing that was committed is lost
    assert q.stats().next_seq == len(stored)


def test_first_seq_continues_an_older_counter_once(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q.db", first_seq=500)
    assert _append(q, "a") == 500
    q.close()
    q = DiskQueue(tmp_path / "q.db", first_seq=500)  # the legacy hint never rewinds
    assert _append(q, "b") == 501
    q.close()
