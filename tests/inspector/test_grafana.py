"""Grafana provisioning: every dashboard query runs on a real influxd holding simulated data.

Grafana itself is not packaged for this machine, so the test does what Grafana
does before it sends a query: substitute ``$timeFilter``, ``$__interval`` and the
template variables. Each panel must parse and (except where noted) return data,
so a renamed tag or field in the storage schema breaks this test, not a
dashboard in production.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.inspector.conftest import DB, Loaded
from tests.support import influx_query

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
VARS = {"site": "demo-campus", "building": "admin", "device": "mall-main",
        "plant": "boiler-house"}
# panels that may legitimately be empty on the simulated days (uid, panel id): the boilers
# in the demo campus run clean, so the rule engine has no efficiency verdict to record
MAY_BE_EMPTY = {("enmon-boiler-efficiency", 5)}


def _grafana(query: str, loaded: Loaded) -> str:
    tf = f"time >= {loaded.data.start_ms}ms and time <= {loaded.data.end_ms}ms"
    q = query.replace("$timeFilter", tf).replace("$__interval", "15m")
    return re.sub(r"\$(\w+)", lambda m: VARS[m.group(1)], q)


def test_provisioning_files_agree() -> None:
    ds = yaml.safe_load((ROOT / "provisioning/datasources/enmon.yaml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert "${ENMON_INFLUX_TOKEN}" in json.dumps(ds)  # the secret comes from the environment
    titles = set()
    assert {p.stem for p in DASHBOARDS} == {
        "enmon-building-overview", "enmon-meter-detail", "enmon-boiler-efficiency",
        "enmon-data-completeness", "enmon-alerts"}
    for path in DASHBOARDS:
        d = json.loads(path.read_text(encoding="utf-8"))
        assert d["uid"] == path.stem and d["title"] not in titles
        titles.add(d["title"])
        for p in d["panels"]:
            assert p["datasource"]["uid"] == uid
            for t in p["targets"]:
                assert t["datasource"]["uid"] == uid


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_query_runs_on_real_data(loaded: Loaded, path: Path) -> None:
    d: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for v in d["templating"]["list"]:
        series = influx_query(loaded.url, DB, _grafana(v["query"], loaded))
        values = {str(x[1]) for s in series for x in s["values"]}
        assert VARS[v["name"]] in values, (v["name"], values)
    for p in d["panels"]:
        for t in p["targets"]:
            series = influx_query(loaded.url, DB, _grafana(t["query"], loaded))
            if (d["uid"], p["id"]) not in MAY_BE_EMPTY:
                assert any(s.get("values") for s in series), (d["uid"], p["title"], t["query"])
