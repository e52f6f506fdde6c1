"""Where one ingest worker's CPU goes per message: cProfile of the hot path.

    .venv/bin/python bench/ingest_profile.py [--messages 2000] [--samples 10] [--top 15]

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
    now = int(time.time() * 1000)
    readings = 0
    for p in payloads:
        r = proc.process(p, TOPIC, now)
        readings += r.readings
        "\n".join(r.lines).encode()
    return readings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    payloads = batches("gw-b", a.messages, a.samples)
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
