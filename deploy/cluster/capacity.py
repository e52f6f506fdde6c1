"""The capacity table in deploy/cluster/README.md, computed from measured figures.

    .venv/bin/python deploy/cluster/capacity.py --per-worker 52700

``--per-worker`` is the readings/s one ingest worker stored end to end in
``bench_ingest.py`` (median, this machine). Broker and database limits default to
the figures measured here and recorded in shared/facts.md. Every row keeps the
named headroom, so a site that doubles its meters after commissioning still fits.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

# Measured on the project's 2-core machines (shared/facts.md):
MOSQUITTO_MSG_S = 11_700  # QoS 1, 4 KB batches, paho publishers
INFLUX1_POINTS_S = 378_000  # influxd 1.6 raw /write, one writer


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    gateways: int
    meters_per_gateway: int
    quantities: int
    poll_s: float


SCENARIOS = [
    Scenario("one hospital", 5, 20, 10, 15),
    Scenario("university campus", 40, 25, 12, 15),
    Scenario("city public buildings", 1_000, 10, 10, 60),
    Scenario("provincial platform (重点用能单位)", 5_000, 30, 12, 60),
    Scenario("same, 15 s polling", 5_000, 30, 12, 15),
]


@dataclass(frozen=True, slots=True)
class Row:
    scenario: Scenario
    meters: int
    readings_s: float
    messages_s: float
    points_s: float
    workers: int
    broker_share: float
    db_share: float


def plan(s: Scenario, *, per_worker: float, headroom: float) -> Row:
    """Workers needed so each runs at most ``1 - headroom`` of its measured rate."""
    meters = s.gateways * s.meters_per_gateway
    readings = meters * s.quantities / s.poll_s
    messages = s.gateways / s.poll_s  # one batch per gateway per poll
    points = meters / s.poll_s  # one point per meter sample (quantities are fields)
    usable = per_worker * (1 - headroom)
    return Row(
        s,
        meters,
        readings,
        messages,
        points,
        max(1, math.ceil(readings / usable)),
        messages / MOSQUITTO_MSG_S,
        points / INFLUX1_POINTS_S,
    )


def table(per_worker: float, headroom: float) -> str:
    out = [
        "| deployment | gateways | meters | poll | readings/s | MQTT msg/s | ingest workers "
        "| one Mosquitto | one InfluxDB 1.x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in SCENARIOS:
        r = plan(s, per_worker=per_worker, headroom=headroom)
        out.append(
            f"| {s.name} | {s.gateways:,} | {r.meters:,} | {s.poll_s:g} s | {r.readings_s:,.0f} "
            f"| {r.messages_s:,.1f} | {r.workers} | {r.broker_share:.1%} | {r.db_share:.1%} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--per-worker",
        type=float,
        required=True,
        help="readings/s one ingest worker stored (bench_ingest.py median)",
    )
    ap.add_argument(
        "--headroom",
        type=float,
        default=0.5,
        help="fraction of each worker's rate kept free (default 0.5)",
    )
    args = ap.parse_args()
    print(table(args.per_worker, args.headroom))


if __name__ == "__main__":
    main()
