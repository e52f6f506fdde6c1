"""The Python a year of one meter's history costs in the inspector, without the database.

The same influxd answer (53 weekly chunks of a 15-minute meter's year, 35,040 points,
counter + rate + their flags + seq, as ``/query?epoch=ms`` sends them) is turned into the
history API's JSON body two ways, in one process, on the same bytes:

- before: aiohttp's ``json()`` (text, then the stdlib), ``flat_rows`` (a dict a point),
  ``raw_history`` over rows (a dict a point again), FastAPI's (0.165) response
  validation of ``HistoryOut`` and its serialisation to JSON (pydantic-core) — the code of
  commit 411131a, read from git;
- now: ``orjson`` from the bytes, ``series_columns``, ``raw_history(columns=)`` under
  ``bulk()``, ``orjson.dumps`` of ``History.as_dict``.

CPU only, so the ratio holds on a busy box better than the end-to-end figures of
``bench/inspector_report.py``. Prints medians over ``--n`` runs; never asserts.

    .venv/bin/python bench/inspector_history_build.py [--n 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from enmon.influx import bulk, series_columns
from inspector import history as hist

OLD = "411131a"
ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["active_energy_import_kwh", "active_power_kw"]
COLS = ["time", *FIELDS, *(f"flag_{f}" for f in FIELDS), "seq"]


def old_module(path: str, name: str) -> Any:
    src = subprocess.run(["git", "show", f"{OLD}:{path}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / f"{name}.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location(name, tmp)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def bodies() -> list[bytes]:
    t0, step, kwh, out = 1_735_660_800_000, 900_000, 1000.0, []
    for week in range(53):
        values = []
        for k in range(672):
            i = week * 672 + k
            if i >= 35_040:
                break
            kw = 40.0 + 25.0 * math.sin(2 * math.pi * (i % 96) / 96)
            kwh += kw * 0.25
            values.append([t0 + i * step, round(kwh, 2), round(kw, 3), None, None, 10_000 + i])
        out.append(orjson.dumps({"results": [{"statement_id": 0, "series": [
            {"name": "meter", "columns": COLS, "values": values}]}]}))
    return out


def median_ms(fn: Callable[[], Any], n: int) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def main(n: int) -> None:
    from pydantic import TypeAdapter

    from inspector.api import HistoryOut

    old_hist = old_module("inspector/history.py", "old_history")
    old_influx = old_module("enmon/influx.py", "old_influx")
    raw = bodies()
    adapter = TypeAdapter(HistoryOut)
    kw: dict[str, Any] = dict(site="demo-campus", device="school-main", start=1_735_660_800_000,
                              end=1_735_660_800_000 + 365 * 86_400_000, tz="Asia/Shanghai",
                              fields=FIELDS, poll_interval_s=900.0)

    def before() -> bytes:
        rows = []
        for b in raw:
            body = json.loads(b.decode())
            rows += old_influx.flat_rows(body["results"][0]["series"])
        rows.sort(key=lambda r: int(r["time"]))
        h = old_hist.raw_history(rows=rows, **kw)
        return adapter.dump_json(adapter.validate_python(h.as_dict()))

    def now() -> bytes:
        series = []
        for b in raw:
            with bulk():
                series += orjson.loads(b)["results"][0]["series"]
        with bulk():
            cols = series_columns(series, COLS)
            h = hist.raw_history(columns=cols, **kw)
        return orjson.dumps(h.as_dict())

    a, b = json.loads(before()), json.loads(now())
    assert a["rows"] == b["rows"] and a["gaps"] == b["gaps"], "the two bodies differ"
    for rnd in range(1, 4):
        t_before, t_now = median_ms(before, n), median_ms(now, n)
        print(f"round {rnd}: 35,040 points to the API's body: before {t_before:.0f} ms, now "
              f"{t_now:.0f} ms ({t_before / t_now:.1f}x less)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=7)
    main(ap.parse_args().n)
