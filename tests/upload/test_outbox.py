"""The upload outbox against a local HTTPS platform that checks signatures.

Real parts: the platform (tests/upload/platform.py) is an HTTPS server with its own
certificate and its own signature check; the outbox is SQLite on disk; the transport
is the product's HTTPS JSON transport with TLS verified against the platform's CA.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.upload.platform import Platform
from upload.config import parse_config
from upload.outbox import Outbox
from upload.transport import create

pytestmark = pytest.mark.slow


def _doc(day: int, value: float = 1.0, unit: str = "U1") -> dict[str, Any]:
    period = f"2026-11-{day:02d}"
    return {"schema": "enmon.keyunit/1", "unit": {"code": unit, "name": "测试单位"},
            "kind": "day", "period": period, "stat_time": f"{period}T00:00:00+08:00",
            "indicators": [{"code": "total_tce", "name": "综合能源消费量", "value": value,
                            "unit": "tce", "basis": "equivalent"}],
            "quality": {}, "generated_at": int(time.time() * 1000)}


async def _drain(box: Outbox, transport: Any, until: Any, timeout: float = 60.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(box.run(transport, stop, poll_s=0.05))
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert time.monotonic() < deadline, f"outbox not drained: {box.counts()}"
            assert not task.done(), task
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_each_record_arrives_once_across_an_outage_and_a_revision_is_an_update(
        tmp_path: Path) -> None:
    with Platform(tmp_path / "platform") as p:
        cfg = parse_config(p.config(outbox=tmp_path / "outbox.sqlite",
                                    backoff={"base_s": 0.05, "max_s": 0.5}))
        transport = create(cfg)
        with Outbox(cfg.outbox, backoff=cfg.backoff) as box:
            docs = [_doc(d) for d in range(1, 11)]
            for d in docs[:5]:
                box.put(d)
            await _drain(box, transport, lambda: len(p.records) == 5)
            p.stop()  # the platform goes down for a while; five more are queued
            for d in docs[5:]:
                box.put(d)
            assert box.put(docs[0]).changed is False  # identical: nothing new to send
            stop = asyncio.Event()
            task = asyncio.create_task(box.run(transport, stop, poll_s=0.05))
            await asyncio.sleep(1.0)  # the sender retries against a closed port
            assert not task.done()
            stop.set()
            await asyncio.wait_for(task, 20)
            p.start()
            revised = _doc(3, value=2.5)
            assert box.put(revised).changed is True
            await _drain(box, transport, lambda: len(p.records) == 10
                         and 2 in p.records.get("U1:day:2026-11-03", {}))
            await transport.aclose()
        # each record once; the revised day is revision 2 of the same record
        assert sorted(p.records) == sorted(f"U1:day:2026-11-{d:02d}" for d in range(1, 11))
        assert p.records["U1:day:2026-11-03"].keys() == {1, 2}
        assert all(revs.keys() == {1} for rid, revs in p.records.items()
                   if rid != "U1:day:2026-11-03")
        assert [r.outcome for r in p.log if r.outcome == "new"].count("new") == 10


async def test_a_refused_record_goes_dead_with_its_reason_and_blocks_no_other(
        tmp_path: Path) -> None:
    with Platform(tmp_path / "platform") as p:
        cfg = parse_config(p.config(outbox=tmp_path / "outbox.sqlite",
                                    backoff={"base_s": 0.05, "max_s": 0.5}))
        transport = create(cfg)
        p.refuse("U1:day:2026-11-02", status=422, error="malformed_document",
                 message="indicator total_tce: value out of range")
        with Outbox(cfg.outbox, backoff=cfg.backoff) as box:
            for d in range(1, 5):
                box.put(_doc(d))
            await _drain(box, transport, lambda: len(p.records) == 3
                         and box.counts().get("dead", 0) == 1)
            dead = box.records(state="dead")
            assert [r.record_id for r in dead] == ["U1:day:2026-11-02"]
            assert "malformed_document" in str(dead[0])
            await transport.aclose()


async def test_a_wrong_secret_is_refused_by_the_platform(tmp_path: Path) -> None:
    with Platform(tmp_path / "platform") as p:
        wrong = tmp_path / "wrong-secret"
        wrong.write_text("not-the-platform-secret-0123456789")
        wrong.chmod(0o600)
        cfg = parse_config(p.config(outbox=tmp_path / "outbox.sqlite", secret_file=str(wrong),
                                    backoff={"base_s": 0.05, "max_s": 0.5}))
        transport = create(cfg)
        with Outbox(cfg.outbox, backoff=cfg.backoff) as box:
            box.put(_doc(1))
            await _drain(box, transport, lambda: box.counts().get("dead", 0) == 1)
            await transport.aclose()
        assert p.records == {}
        assert [r.status for r in p.log] == [401]
