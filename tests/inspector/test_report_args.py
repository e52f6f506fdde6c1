"""``enmon report`` answers a bad --period or --building with one line and exit 2.

Run as the installed ``enmon`` command in a subprocess, as a user would: a traceback
anywhere in stderr fails the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "rules" / "sample-site.yaml"


def _enmon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    enmon = Path(sys.executable).parent / "enmon"
    return subprocess.run([str(enmon), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0]


def test_month_13_is_one_line(tmp_path: Path) -> None:
    r = _enmon("report", "--period", "2026-13", "--site", str(SITE), "-o", "r.json",
               cwd=tmp_path)
    _one_line_error(r, "2026-13", "2026-10")


def test_month_13_with_demo_is_one_line_before_simulating(tmp_path: Path) -> None:
    r = _enmon("report", "--demo", "--period", "2026-13", "-o", "r.json", cwd=tmp_path)
    _one_line_error(r, "2026-13")


def test_unknown_building_is_one_line_naming_the_buildings(tmp_path: Path) -> None:
    r = _enmon("report", "--period", "2026-10", "--site", str(SITE), "--building", "nosuch",
               "-o", "r.json", cwd=tmp_path)
    _one_line_error(r, "nosuch", "campus-a")
