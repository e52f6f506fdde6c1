"""A Raspberry Pi gateway installs `enmon[gateway]` only: the gateway commands must work
without any server library, and a server command must say which extra it needs.

Server libraries are made unimportable in a child interpreter (``sys.modules[name] =
None``), which is what a gateway-only install looks like to Python.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_ONLY = [
    "aiohttp",
    "aiomqtt",
    "influxdb_client",
    "orjson",
    "iapws",
    "cryptography",
    "fastapi",
    "uvicorn",
    "httpx",
    "openpyxl",
    "jinja2",
    "weasyprint",
    "numpy",
]


def enmon_without_server_libs(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"for m in {SERVER_ONLY!r}: sys.modules[m] = None\n"
        f"sys.argv = ['enmon', *{list(args)!r}]\n"
        "from stack.cli import main\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_gateway_commands_need_no_server_library() -> None:
    r = enmon_without_server_libs("gateway", "check", "-c", "gateway/sample.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout


def test_a_server_command_names_the_extra_it_needs() -> None:
    r = enmon_without_server_libs("ingest", "run", "-c", "ingest/sample.yaml")
    assert r.returncode == 2
    assert "pip install 'enmon[server]'" in r.stderr
    assert "Traceback" not in r.stderr
