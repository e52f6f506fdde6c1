"""Where one ingest worker's CPU goes per message: cProfile of the hot path.

    .venv/bin/python bench/ingest_profile.py [--messages 2000] [--samples 10] [--top 15]
                                             [--against OLD_DECODE_PY]

``--against`` times the hot path with another ``ingest/decode.py`` (e.g. one written out
by ``git show REV:ingest/decode.py``) and with this one, interleaved, 9 times each, and
prints the best three of each: on a shared box only an interleaved comparison means
anything.

The hot path is what the collector does for every delivery — ``Processor.process``
(decode + validate + line building) — plus the writer's body encoding
(``"\\n".join(lines).encode()``). No broker, no database: this splits the worker's own
CPU, it does not measure throughput (``bench/ingest_throughput.py`` does). The payloads
are the throughput benchmark's. Bounded in count.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest_throughput import batches
from ingest.pipeline import Processor, TimeLimits

TOPIC = "enmon/v1/bench/gw-b/telemetry"


def run(payloads: list[bytes]) -> int:
    proc = Processor(worker="bench", limits=TimeLimits(past_flag_s=1e9))
    return run_with(proc, payloads)


def run_with(proc: Processor, payloads: list[bytes]) -> int:
    now = int(time.time() * 1000)
    readings = 0
    for p in payloads:
        r = proc.process(p, TOPIC, now)
        readings += r.readings
        "\n".join(r.lines).encode()
    return readings


def compare(old_path: Path, payloads: list[bytes]) -> None:
    """CPU µs per message of the hot path with ``old_path``'s decoder and with ours."""
    import importlib.util

    import ingest.pipeline as pl

    spec = importlib.util.spec_from_file_location("decode_against", old_path)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules["decode_against"] = old  # msgspec resolves the structs' annotations here
    spec.loader.exec_module(old)
    new = pl.decode
    times: dict[str, list[float]] = {"against": [], "this": []}
    for _ in range(9):
        for name, mod in (("against", old), ("this", new)):
            pl.decode = mod  # type: ignore[assignment]
            proc = Processor(worker="bench", limits=TimeLimits(past_flag_s=1e9))
            t0 = time.process_time()
            n = run_with(proc, payloads)
            times[name].append((time.process_time() - t0) / n * 1e6)
    pl.decode = new
    for name, v in times.items():
        best = sorted(v)[:3]
        print(f"{name}: {', '.join(f'{x:.2f}' for x in best)} µs CPU per reading (best 3 of 9)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--against", type=Path, help="another ingest/decode.py to compare with")
    a = ap.parse_args()
    payloads = batches("gw-b", a.messages, a.samples)
    if a.against:
        compare(a.against, payloads)
        return
    run(payloads[:50])  # warm caches and imports
    t0 = time.perf_counter()
    n = run(payloads)
    dt = time.perf_counter() - t0
    print(f"hot path, no profiler: {n / dt:,.0f} readings/s "
          f"({dt / n * 1e6:.2f} µs/reading, {a.messages / dt:,.0f} msg/s)")
    prof = cProfile.Profile()
    prof.enable()
    run(payloads)
    prof.disable()
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out)
    total = st.total_tt  # type: ignore[attr-defined]
    print(f"profiled total {total:.3f} s; cumulative share of the hot path:")
    rows = []
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((ct, f"{Path(file).name}:{name}"))
    for ct, where in sorted(rows, reverse=True)[: a.top]:
        print(f"  {ct / total * 100:5.1f} %  {where}")


if __name__ == "__main__":
    main()
