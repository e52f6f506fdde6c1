"""The one ``enmon`` command (the console script's ``main``), above every part.

The table of parts is the typer app in :mod:`stack.app`. ``enmon gateway run -c FILE``
— what a Pi's systemd unit starts and keeps running for months — goes straight to
:func:`gateway.service.run` instead: no typer, click or other part's CLI stays resident
in a process that never shows help (about 2.3 MB of the gateway's RSS). Any other form
of the command line, ``--help`` included, goes through typer as before.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from enmon.errors import EnmonError

# Which extra brings a third-party module, so a missing one can be named with its fix.
_EXTRA_OF = {
    "pymodbus": "gateway", "serial": "gateway", "paho": "gateway",
    "aiomqtt": "server", "aiohttp": "server", "influxdb_client": "server", "orjson": "server",
    "cryptography": "server", "iapws": "server",
    "fastapi": "inspector", "uvicorn": "inspector", "httpx": "inspector",
    "openpyxl": "inspector", "jinja2": "inspector", "weasyprint": "inspector",
}


def missing_extra_hint(exc: ModuleNotFoundError) -> str:
    """``enmon ingest`` on a gateway-only install: say which extra to install."""
    top = (exc.name or "").split(".")[0]
    extra = _EXTRA_OF.get(top)
    if extra is None:
        return f"missing Python module {exc.name!r}"
    return (f"this command needs the {extra!r} extra ({top} is not installed): "
            f"pip install 'enmon[{extra}]'")


def configure_logging(log_level: str) -> None:
    """``--log-level`` / ``ENMON_LOG_LEVEL``: one ``key=value`` line per event on stderr."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def gateway_run_args(argv: list[str]) -> tuple[str | None, str] | None:
    """``(log level or None, config file)`` when ``argv`` is exactly
    ``[--log-level L] gateway run -c FILE`` (``--config FILE``, ``--config=FILE``,
    ``-cFILE`` and ``--log-level=L`` too); ``None`` for anything else."""
    rest = list(argv)
    level: str | None = None
    if rest and rest[0].startswith("--log-level="):
        level = rest.pop(0).partition("=")[2]
    elif len(rest) >= 2 and rest[0] == "--log-level":
        level = rest[1]
        del rest[:2]
    if rest[:2] != ["gateway", "run"]:
        return None
    opts = rest[2:]
    if len(opts) == 2 and opts[0] in ("-c", "--config"):
        config = opts[1]
    elif len(opts) == 1 and opts[0].startswith("--config="):
        config = opts[0].partition("=")[2]
    elif len(opts) == 1 and opts[0].startswith("-c") and len(opts[0]) > 2:
        config = opts[0][2:]
    else:
        return None
    if not config or config.startswith("-") or (level is not None and level.startswith("-")):
        return None  # typer says what is wrong
    return level, config


def _fail(message: str) -> None:
    import typer  # only on the way out

    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(2)


def _run_gateway(level: str | None, config: str) -> None:
    from gateway.service import run

    configure_logging(level or os.environ.get("ENMON_LOG_LEVEL") or "INFO")
    try:
        run(Path(config), lean=True)
    except KeyboardInterrupt:  # before the signal handlers are in place, as click says it
        print("\nAborted!", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    fast = gateway_run_args(sys.argv[1:])
    try:
        if fast is not None:
            _run_gateway(*fast)
            return
        from stack.app import _mount, app

        _mount()
        app()
    except EnmonError as exc:
        _fail(str(exc))
    except ModuleNotFoundError as exc:
        _fail(missing_extra_hint(exc))
