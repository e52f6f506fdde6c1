"""``enmon ingest …``: the MQTT → InfluxDB worker, and ``enmon influx …`` (database setup)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import signal
from pathlib import Path

import typer

app = typer.Typer(
    help="Ingest: subscribe to telemetry and write it to InfluxDB, acknowledging each "
    "message only once it is stored. Run several workers with the same group and different "
    "--client-id to share the load.",
    no_args_is_help=True,
)

CONFIG = typer.Option(..., "-c", "--config", help="ingest YAML file (see ingest/sample.yaml)")


@app.command()
def run(
    config: Path = CONFIG,
    client_id: str = typer.Option(
        None, "--client-id",
        help="this worker's fixed MQTT client id (overrides mqtt.client_id); it names the "
        "persistent session holding the worker's unacknowledged messages, so restart a dead "
        "worker with the same id"),
    metrics_port: int = typer.Option(
        None, "--metrics-port", help="serve Prometheus /metrics here (overrides metrics.port)"),
) -> None:
    """Run one ingest worker until SIGINT/SIGTERM."""
    from enmon.systemd import sd_notify
    from ingest.config import load_config
    from ingest.service import run as run_service

    cfg = load_config(config)
    if metrics_port is not None:
        cfg = cfg.model_copy(update={"metrics": cfg.metrics.model_copy(
            update={"port": metrics_port})})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # under systemd Type=notify the unit is "started" once the subscription holds
        def ready() -> None:
            sd_notify("READY=1")

        await run_service(cfg, stop, client_id=client_id, on_ready=ready)

    # A worker's garbage is freed by reference counting; the cyclic collector, at its
    # default threshold, ran every ~10 messages (the batch being built keeps thousands
    # of young objects alive) and took ~9 % of the worker's CPU (perf). The start-up heap
    # (imports, config) never becomes garbage: frozen out of every scan.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    asyncio.run(main())


@app.command()
def completeness(
    config: Path = CONFIG,
    day: str = typer.Option(
        None, "--day", help="YYYY-MM-DD (default: today in metrics.day_tz)"),
    write: bool = typer.Option(True, "--write/--no-write",
                               help="store the figures in the completeness measurement"),
) -> None:
    """Recompute per-gateway data completeness of one day from the stored seq numbers."""
    from rich.console import Console
    from rich.table import Table

    from enmon.influx import InfluxQL, make_writer
    from ingest.completeness import DayCompleteness, day_of
    from ingest.config import load_config
    from ingest.pipeline import compute_completeness_lines

    cfg = load_config(config)
    tz = cfg.metrics.day_tz
    the_day = (dt.date.fromisoformat(day) if day else
               day_of(int(dt.datetime.now(dt.UTC).timestamp() * 1000), tz))

    async def main() -> list[tuple[str, tuple[tuple[str, str], DayCompleteness]]]:
        q = InfluxQL(cfg.influx)
        try:
            out = await compute_completeness_lines(q, the_day, tz)
        finally:
            await q.close()
        if write and out:
            w = make_writer(cfg.influx)
            try:
                await w.write([ln for ln, _ in out])
            finally:
                await w.close()
        return list(out)

    rows = asyncio.run(main())
    table = Table(title=f"completeness {the_day} ({tz})")
    for col in ("site", "gateway", "expected", "received", "gaps", "duplicates", "ratio"):
        table.add_column(col, justify="right" if col not in ("site", "gateway") else "left")
    for _, ((site, gw), c) in rows:
        table.add_row(site, gw, str(c.expected), str(c.received), str(c.gaps),
                      str(c.duplicates), f"{c.ratio:.2%}")
    Console().print(table)


influx_app = typer.Typer(help="InfluxDB setup for enmon (v1 database + retention policy, "
                         "or v2 bucket + DBRP mapping).", no_args_is_help=True)


@influx_app.command("init")
def influx_init(
    config: Path = CONFIG,
    retention: str = typer.Option(
        "0", "--retention",
        help="how long to keep readings, e.g. 3650d or 52w; 0 keeps them forever"),
) -> None:
    """Create the database (v1) or bucket (v2) the config names, with its retention.

    Idempotent: running it again changes nothing that exists except the retention.
    """
    from ingest.config import load_config
    from ingest.setup import init_influx

    cfg = load_config(config)
    for line in asyncio.run(init_influx(cfg.influx, retention=retention)):
        typer.echo(line)
