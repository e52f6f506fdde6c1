"""``enmon ingest …``: the MQTT → InfluxDB worker."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import typer

app = typer.Typer(
    help="Ingest: subscribe to telemetry and write it to InfluxDB.", no_args_is_help=True
)


@app.command()
def run(config: Path = typer.Option(..., "-c", "--config", help="ingest YAML file")) -> None:
    """Run one ingest worker (start several with the same group to share the load)."""
    from ingest.config import load_config
    from ingest.service import run as run_service

    cfg = load_config(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_service(cfg, stop)

    asyncio.run(main())
