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
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.inspector.conftest import DB, Loaded
from tests.support import influx_query

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
VARS = {"site": "demo-campus", "building": "admin", "device": "mall-main",
        "plant": "boiler-house", "tz": "Asia/Shanghai"}
SITE_TZ = ZoneInfo("Asia/Shanghai")  # the demo campus's site file timezone
# panels that may legitimately be empty on the simulated days (uid, panel id): the boilers
# in the demo campus run clean, so the rule engine has no efficiency verdict to record,
# and the simulated days run the roll-ups only, not the boiler step
MAY_BE_EMPTY = {("enmon-boiler-efficiency", 5), ("enmon-boiler-efficiency", 6)}
TIME_GROUP = re.compile(r"GROUP BY time\(([^)]*)\)")


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
        if v["type"] == "custom":  # a fixed list, e.g. the site's time zone
            assert VARS[v["name"]] in [o.strip() for o in v["query"].split(",")]
            assert v["current"]["value"] == VARS[v["name"]]
            continue
        series = influx_query(loaded.url, DB, _grafana(v["query"], loaded))
        values = {str(x[1]) for s in series for x in s["values"]}
        assert VARS[v["name"]] in values, (v["name"], values)
    for p in d["panels"]:
        for t in p["targets"]:
            series = influx_query(loaded.url, DB, _grafana(t["query"], loaded))
            if (d["uid"], p["id"]) not in MAY_BE_EMPTY:
                assert any(s.get("values") for s in series), (d["uid"], p["title"], t["query"])


def _queries() -> list[tuple[str, str, str]]:
    return [(path.stem, p["title"], t["query"]) for path in DASHBOARDS
            for p in json.loads(path.read_text(encoding="utf-8"))["panels"]
            for t in p["targets"]]


def test_every_time_bucket_is_in_the_site_time_zone() -> None:
    """GROUP BY time(…) buckets in UTC put a site-day's total on the previous day (the
    site-day starts at 16:00 UTC): every such query must carry tz() with the site's zone."""
    grouped = [(uid, title, q) for uid, title, q in _queries() if TIME_GROUP.search(q)]
    assert any("time(1d)" in q for _, _, q in grouped)
    for uid, title, q in grouped:
        assert re.search(r"\btz\('\$tz'\)\s*$", q), (uid, title, q)


def test_daily_panels_put_each_site_day_on_its_own_day(loaded: Loaded) -> None:
    """Every daily bucket starts at a local midnight, and the overview's electricity per day
    is the sum of that day's ``energy_daily`` points (the report's figures)."""
    for uid, title, q in _queries():
        if "time(1d)" not in q:
            continue
        for s in influx_query(loaded.url, DB, _grafana(q, loaded)):
            for row in s["values"]:
                local = datetime.fromtimestamp(row[0] / 1000, SITE_TZ)
                assert (local.hour, local.minute) == (0, 0), (uid, title, local)
    panel = next(q for uid, title, q in _queries()
                 if uid == "enmon-building-overview" and title.startswith("Electricity per day"))
    got = {row[0]: row[1] for s in influx_query(loaded.url, DB, _grafana(panel, loaded))
           for row in s["values"] if row[1] is not None}
    want: dict[int, float] = {}
    for s in influx_query(loaded.url, DB, _grafana(
            "SELECT amount FROM energy_daily WHERE site = '$site' AND building = '$building' "
            "AND total = '1' AND energy_type = 'electricity' AND $timeFilter", loaded)):
        for ts, amount in s["values"]:
            want[ts] = want.get(ts, 0.0) + amount
    assert want and got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k]) for k in want)
