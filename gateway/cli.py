"""``enmon gateway …``: what a deployer runs on the box next to the meters."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import typer

app = typer.Typer(
    help="Edge gateway: poll Modbus meters and publish readings over MQTT.", no_args_is_help=True
)

ConfigOpt = typer.Option(..., "-c", "--config", help="gateway YAML file", exists=False)


@app.command()
def check(config: Path = ConfigOpt) -> None:
    """Validate a gateway config and every profile it names; print what would be polled."""
    from gateway.config import load_config
    from gateway.profile import load_profile

    cfg = load_config(config)
    for d in cfg.devices:
        p = load_profile(d.profile)
        typer.echo(
            f"{d.name}: {p.manufacturer} {p.name} unit {d.unit_id} "
            f"@ {d.transport.host}:{d.transport.port}, {len(p.quantities)} quantities"
        )
    typer.echo(f"{config}: OK ({len(cfg.devices)} devices)")


@app.command()
def run(config: Path = ConfigOpt) -> None:
    """Poll the configured devices forever and publish batches (Ctrl-C / SIGTERM stops)."""
    from gateway.agent import Gateway
    from gateway.config import load_config

    cfg = load_config(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Gateway(cfg).run(stop)

    asyncio.run(main())
    logging.getLogger("enmon.gateway").info("event=stopped")


@app.command()
def profiles() -> None:
    """List the meter profiles shipped with enmon."""
    from gateway.profile import library, load_profile

    for name in library():
        p = load_profile(name)
        typer.echo(f"{name:28} {p.manufacturer} {p.name} [{p.protocol}, confidence {p.confidence}]")
