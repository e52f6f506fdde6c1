"""``enmon rules …``: evaluate rules and notify."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import typer

app = typer.Typer(
    help="Rule engine: thresholds → alerts → webhook and InfluxDB `alert`.", no_args_is_help=True
)


@app.command()
def run(config: Path = typer.Option(..., "-c", "--config", help="rules YAML file")) -> None:
    """Run the rule engine until Ctrl-C / SIGTERM."""
    from rules.config import load_config
    from rules.service import run as run_service

    cfg = load_config(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_service(cfg, stop)

    asyncio.run(main())
