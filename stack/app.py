"""The ``enmon`` command's typer app: the table of parts, above them all.

Each deployable part owns a typer app in its ``cli.py``; they are mounted here.
``stack.cli.main`` (the console script) imports this module for every command but
``enmon gateway run``, which it starts without typer (see :mod:`gateway.service`).
Those modules import only typer at module level (heavy imports happen inside
the commands), so ``enmon gateway …`` on a Raspberry Pi never imports server
libraries, and a part whose extra is not installed simply says so when used.
"""

from __future__ import annotations

import importlib
import sys

import typer

from stack.cli import configure_logging

app = typer.Typer(
    help="enmon — energy monitoring: meters → gateway → MQTT → ingest → InfluxDB → rules.\n\n"
    "Start with `enmon demo` to see every part run on this machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# (sub-command, module with `app`, one-line help)
_PARTS = [
    ("gateway", "gateway.cli", "Edge gateway: probe, check and run."),
    ("sim", "firmware_sim.cli", "Simulated meters on real protocols."),
    ("ingest", "ingest.cli", "MQTT → InfluxDB ingest worker."),
    ("influx", "ingest.cli:influx_app", "InfluxDB setup: database/bucket and retention."),
    ("rules", "rules.cli", "Rule engine: alerts and notifications."),
    ("deploy", "deploy.cli", "Deploy: broker credentials, TLS, health checks."),
    ("history", "inspector.cli:history_app", "A meter's history: gaps, flags, CSV/XLSX."),
    ("report", "inspector.cli:report_app", "Monthly/annual energy report (HTML/PDF)."),
    ("api", "inspector.cli:api_app", "Inspector HTTP API, web console and tokens."),
    ("manual", "inspector.manual_cli:app",
     "Manual readings (手工录入), Excel import, corrections with an audit trail."),
    ("ledger", "inspector.ledger_cli:app",
     "Energy ledger (台账) and annual disclosure (能效公示), PDF/XLSX."),
    ("upload", "upload.cli:app",
     "Key energy-using unit statistics: build, queue and upload to a platform."),
]


def _mount() -> None:
    for name, module, help_text in _PARTS:
        try:
            mod, _, attr = module.partition(":")
            sub = getattr(importlib.import_module(mod), attr or "app")
        except ImportError as exc:  # the part's extra is not installed
            missing = typer.Typer(help=f"{help_text} (unavailable: {exc.name} not installed)")

            @missing.callback(invoke_without_command=True)
            def _unavailable(exc: ImportError = exc, name: str = name) -> None:
                typer.echo(
                    f"enmon {name}: needs {exc.name}; "
                    "pip install 'enmon[server]' or 'enmon[gateway]'",
                    err=True,
                )
                raise typer.Exit(2)

            app.add_typer(missing, name=name)
            continue
        app.add_typer(sub, name=name, help=help_text)
    _wire_demo_month()


async def _load_month(**kwargs: object) -> object:
    from stack.month import load_month

    return await load_month(**kwargs)  # type: ignore[arg-type]


def _wire_demo_month() -> None:
    """``enmon report --demo``: the inspector reports on a month this package simulates."""
    mod = sys.modules.get("inspector.cli")
    if mod is not None:
        mod.demo_month = _load_month  # type: ignore[attr-defined]


@app.callback()
def _root(
    log_level: str = typer.Option(
        "INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR", envvar="ENMON_LOG_LEVEL"
    ),
) -> None:
    configure_logging(log_level)


@app.command()
def demo(
    duration: float = typer.Option(
        0, "--duration", help="run live this many seconds once the year-to-date history is "
                              "stored, then stop (0: until Ctrl-C)"
    ),
    install: bool = typer.Option(
        True,
        "--install/--no-install",
        help="apt-get install mosquitto/influxdb if missing (needs root)",
    ),
) -> None:
    """Run every part on this machine: servers, a simulated meter, gateway, ingest, rules."""
    from stack.demo import run_demo

    raise typer.Exit(run_demo(duration=duration, may_install=install))
