"""Helpers for tests: waiting on conditions and reading back what was stored.

Read-back goes straight to the servers' HTTP APIs with urllib, independent of
the product's own storage client, so a bug there cannot hide itself.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout: float = 20.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Return the first truthy value of ``check()``; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the server may be restarting
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
    )


def influx_query(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Run InfluxQL on a 1.x server; return the series of the first statement."""
    data = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as r:
        body = json.load(r)
    res = body["results"][0]
    if "error" in res:
        raise AssertionError(f"query failed: {res['error']}")
    return list(res.get("series", []))


def influx_rows(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Flatten a query's series into dicts (tags merged in)."""
    rows: list[dict[str, Any]] = []
    for s in influx_query(url, db, q):
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            row.update(s.get("tags", {}))
            rows.append(row)
    return rows


def vm_export(url: str, match: str) -> list[dict[str, Any]]:
    """Read series back from victoria-metrics (``/api/v1/export``, JSON lines)."""
    # new points become searchable only after victoria-metrics flushes (~10 s by default)
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).close()
    q = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/export?{q}", timeout=10) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


# --------------------------------------------------------------------------- the fault table

FAULT_ROWS: list[dict[str, Any]] = []


def record_fault(fault: str, *, sent: int, stored: int, lost: int, duplicated: int,
                 note: str = "") -> None:
    """One row of the fault table (fault, readings sent, stored, lost, duplicated) that the
    session prints at its end and writes to ``test-artifacts/fault-table.md``.

    Call it after the test's own assertions held, with counts the test measured end to end
    (readings, i.e. sample times of the gateway's committed batches and the distinct
    stored points) — the table is the evidence, the assertions are the guarantee.
    """
    FAULT_ROWS.append({"fault": fault, "sent": sent, "stored": stored, "lost": lost,
                       "duplicated": duplicated, "note": note})


def fault_table() -> str:
    head = ["| fault | readings sent | stored | lost | duplicated | note |",
            "|---|---:|---:|---:|---:|---|"]
    return "\n".join(head + [f"| {r['fault']} | {r['sent']:,} | {r['stored']:,} | {r['lost']:,} "
                             f"| {r['duplicated']:,} | {r['note']} |" for r in FAULT_ROWS])


def samples_sent(gateway_log: str) -> int:
    """Samples in the batches a gateway committed, from its ``event=batch_queued`` lines."""
    import re

    return sum(int(m) for m in re.findall(r"event=batch_queued seq=\d+ samples=(\d+)",
                                          gateway_log))


async def rules_pass(url: str, db: str, sites: list[Any], now: int) -> None:
    """One scheduled pass of a freshly started rule engine (roll-ups, quotas…) against
    ``url``: a new Scheduler each time, so its state comes from the database, as after a
    restart."""
    from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
    from rules.config import RulesConfig
    from rules.engine import Engine
    from rules.lifecycle import AlertBook
    from rules.scheduled import Scheduler

    cfg = RulesConfig.model_validate({"influx": {"url": url, "database": db}})
    engine = Engine(cfg, sites, AlertBook(), started_ms=now)
    icfg = InfluxConfig(url=url, database=db)
    q, w = InfluxQL(icfg), InfluxV1Writer(icfg)
    try:
        await Scheduler(engine, q, w, settle_s=0).run_pass(now)
    finally:
        await q.close()
        await w.close()
