"""``enmon sim …``: simulated devices speaking the real protocols."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import typer

app = typer.Typer(
    help="Simulated meters and sensors on real protocol endpoints.", no_args_is_help=True
)


@app.command()
def run(
    profile: str = typer.Option("eastron-sdm630", help="device profile (model name or YAML path)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(5020, help="Modbus TCP port"),
    unit_id: int = typer.Option(1, "--unit-id", help="Modbus unit id"),
    base_kw: float = typer.Option(20.0, help="load at the trough of the cycle, kW"),
    peak_kw: float = typer.Option(60.0, help="load at the top of the cycle, kW"),
    period_s: float = typer.Option(86_400.0, help="length of one load cycle, s (86400 = a day)"),
    energy0_kwh: float = typer.Option(12_345.0, help="import counter at start, kWh"),
) -> None:
    """Serve one three-phase meter over Modbus TCP until Ctrl-C."""
    from firmware_sim.meter import LoadProfile, ThreePhaseMeter
    from firmware_sim.modbus_tcp import ModbusMeterServer
    from gateway.profile import load_profile

    meter = ThreePhaseMeter(
        LoadProfile(base_kw, peak_kw, period_s), t0=time.time(), energy0_kwh=energy0_kwh
    )
    server = ModbusMeterServer(
        load_profile(profile), meter.reading, host=host, port=port, unit_id=unit_id
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            typer.echo(f"serving {profile} unit {unit_id} on {host}:{port} (Ctrl-C stops)")
            await stop.wait()

    asyncio.run(main())
    logging.getLogger("enmon.sim").info("event=stopped")


# the simulated campus: campus, history, scale, scenarios, site-file (firmware_sim/campus_cli.py)
from firmware_sim.campus_cli import register as _register_campus  # noqa: E402

_register_campus(app)
