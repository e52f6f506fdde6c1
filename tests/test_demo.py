"""`enmon demo --duration 150` ends by itself, exit 0, having printed readings and the
three kinds of alert of the campus demo (quota early warning, boiler efficiency, meter
offline), and leaves no process of its own running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd}")
    return found


@pytest.mark.parametrize(
    ("duration", "kinds"),
    [
        # issue 2: a short run is a preview: readings and at least one alert, exit 0
        (40, 1),
        # issue 8: the full campus run shows every kind of alert
        (150, 3),
    ],
)
def test_demo_runs_and_cleans_up(duration: int, kinds: int) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "enmon",
            "--log-level",
            "WARNING",
            "demo",
            "--duration",
            str(duration),
            "--no-install",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 120,
        env=dict(os.environ, COLUMNS="200"),
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert len(re.findall(r"^reading ", out, re.M)) >= 5, out
    fired = [
        rule
        for rule in ("quota_early_warning", "boiler_efficiency", "meter_offline")
        if re.search(rf"^ALERT FIRING +{rule} ", out, re.M)
    ]
    assert len(fired) >= kinds, out
    work = re.search(r"\(dir (/\S+enmon-demo-\S+)\)", out)
    assert work, out
    assert _processes_mentioning(work.group(1)) == [], "demo left processes behind"
