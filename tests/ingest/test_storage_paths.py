"""Storage-side behaviour: the v2 write path (real victoria-metrics), a batch the database
refuses, the completeness figure and ``enmon influx init`` (real influxd 1.6)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from enmon.errors import ConfigError
from enmon.influx import InfluxConfig
from enmon.localrun import InfluxDB1, Mosquitto, VictoriaMetrics
from ingest.setup import parse_retention
from tests.conftest import INFLUX_DB
from tests.ingest.conftest import (
    BASE_TS,
    Publisher,
    ThreadWorker,
    expected_rows,
    influx_cfg,
    make_batch,
    mqtt_cfg,
    stored,
    topic,
    write_ingest_config,
)
from tests.support import influx_rows, vm_export, wait_until


def enmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "enmon", *args], capture_output=True, text=True,
                          timeout=60)


def test_v2_write_path_into_victoria_metrics(mosquitto: Mosquitto, victoria: VictoriaMetrics,
                                             publisher: Publisher) -> None:
    cfg = InfluxConfig(api="v2", url=victoria.url, org="enmon", bucket="enmon")
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-v2"), cfg) as w:
        publisher.publish_all([(topic("gw-01"), make_batch("gw-01", s)) for s in range(20)])
        want = expected_rows("gw-01", range(20))

        def got() -> dict[int, float]:
            # make just-written rows searchable now instead of after VM's ~10 s flush
            urllib.request.urlopen(f"{victoria.url}/internal/force_flush", timeout=10).close()
            out: dict[int, float] = {}
            for s in vm_export(victoria.url, '{__name__="meter_active_power_kw",gateway="gw-01"}'):
                out.update(zip(s["timestamps"], s["values"], strict=True))
            return out

        wait_until(lambda: got() == want, 60, "readings in victoria-metrics")
        assert w.stats.acked == 20 and w.error is None


def seed(influx: InfluxDB1, body: str) -> None:
    q = urllib.parse.urlencode({"db": INFLUX_DB, "precision": "ms"})
    req = urllib.request.Request(f"{influx.url}/write?{q}", data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def test_a_message_the_database_refuses_cannot_block_the_stream(
        mosquitto: Mosquitto, influxdb: InfluxDB1, publisher: Publisher) -> None:
    # voltage_l1_v already exists as a *string* in this shard: InfluxDB refuses floats for it
    seed(influxdb, f'meter,gateway=seed voltage_l1_v="x" {BASE_TS}')
    poison = json.loads(make_batch("gw-01", 5))
    poison["samples"][0]["values"]["voltage_l1_v"] = 230.0
    items = [(topic("gw-01"), make_batch("gw-01", s)) for s in range(10) if s != 5]
    items.insert(5, (topic("gw-01"), json.dumps(poison).encode()))
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-refuse"), influx_cfg(influxdb)) as w:
        publisher.publish_all(items)
        want = expected_rows("gw-01", [s for s in range(10) if s != 5])  # type: ignore[arg-type]
        wait_until(lambda: w.stats.acked == 10, 60, "all ten acked")
        got = stored(influxdb, "gw-01")
        assert {t: v for t, v in got.items() if t in want} == want
        rej = influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM rejected")
        assert [r["reason"] for r in rej] == ["db_refused"]
        assert "field type conflict" in rej[0]["detail"]
        assert w.stats.write_failures >= 1


def test_completeness_counts_gaps_and_duplicates(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, publisher: Publisher) -> None:
    resent = json.loads(make_batch("gw-c", 5))
    resent["sent_at"] += 500  # the gateway sent seq 5 twice (a different message)
    items = [(topic("gw-c"), make_batch("gw-c", s)) for s in range(10) if s not in (3, 4)]
    items.append((topic("gw-c"), json.dumps(resent).encode()))
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-c"), influx_cfg(influxdb)) as w:
        publisher.publish_all(items)
        wait_until(lambda: w.stats.acked == len(items), 60, "all acked")
    cfg = write_ingest_config(tmp_path / "ingest.yaml", mosquitto, influxdb)
    r = enmon("ingest", "completeness", "-c", str(cfg), "--day", "2025-11-21")
    assert r.returncode == 0, r.stderr
    [row] = influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM completeness")
    assert (row["site"], row["gateway"], row["day"]) == ("site-a", "gw-c", "2025-11-21")
    assert (row["expected"], row["received"], row["gaps"], row["duplicates"]) == (10, 8, 2, 1)
    assert row["ratio"] == pytest.approx(0.8)
    assert "80.00%" in r.stdout
    # idempotent: running it again leaves one point per gateway and day
    assert enmon("ingest", "completeness", "-c", str(cfg), "--day", "2025-11-21").returncode == 0
    assert len(influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM completeness")) == 1


def test_influx_init_creates_database_and_retention(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    cfg = write_ingest_config(tmp_path / "ingest.yaml", mosquitto, influxdb)
    text = cfg.read_text().replace(f"database: {INFLUX_DB}", "database: fresh")
    cfg.write_text(text)
    for _ in range(2):  # idempotent
        r = enmon("influx", "init", "-c", str(cfg), "--retention", "3650d")
        assert r.returncode == 0, r.stderr
    rps = influx_rows(influxdb.url, "fresh", 'SHOW RETENTION POLICIES ON "fresh"')
    [auto] = [p for p in rps if p["name"] == "autogen"]
    assert auto["duration"] == "87600h0m0s" and auto["default"] is True
    bad = enmon("influx", "init", "-c", str(cfg), "--retention", "10 years")
    assert bad.returncode != 0 and "3650d" in bad.stderr


def test_parse_retention() -> None:
    assert parse_retention("0") == 0
    assert parse_retention("52w") == 52 * 7 * 86_400
    with pytest.raises(ConfigError):
        parse_retention("30m")


def test_workers_keep_todays_completeness_current(
        mosquitto: Mosquitto, influxdb: InfluxDB1, publisher: Publisher) -> None:
    import time as _time

    from ingest.options import MetricsConfig

    now = int(_time.time() * 1000)
    items = []
    for s in (0, 1, 2, 5):  # 3 and 4 never sent
        b = json.loads(make_batch("gw-t", s))
        b["sent_at"] = now + s  # today (UTC)
        items.append((topic("gw-t"), json.dumps(b).encode()))
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-today"), influx_cfg(influxdb),
                      metrics=MetricsConfig(stats_interval_s=1, completeness_interval_s=0.3,
                                            day_tz="UTC")) as w:
        publisher.publish_all(items)
        key = ("site-a", "gw-t")
        wait_until(lambda: w.stats.seq_gaps.get(key) == 2, 60, "the worker's completeness")
        assert w.stats.completeness[key] == pytest.approx(4 / 6)
        rows = influx_rows(influxdb.url, INFLUX_DB,
                           "SELECT gaps, ratio FROM completeness WHERE gateway='gw-t'")
        assert [(r["gaps"], round(r["ratio"], 4)) for r in rows] == [(2, round(4 / 6, 4))]


def auth_rows(server: InfluxDB1, q: str, password: str = "secret-pw") -> list[dict[str, object]]:
    # influxd 1.x reads u/p from the URL only (not from a POST form)
    auth = urllib.parse.urlencode({"u": "admin", "p": password})
    data = urllib.parse.urlencode({"q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{server.url}/query?{auth}", data=data, timeout=10) as r:
        res = json.load(r)["results"][0]
    return [dict(zip(s["columns"], v, strict=True)) for s in res.get("series", [])
            for v in s["values"]]


def test_v1_user_password_and_retention_policy(
        tmp_path: Path, mosquitto: Mosquitto, auth_influxdb: InfluxDB1, publisher: Publisher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    cfg = tmp_path / "ingest.yaml"
    cfg.write_text(yaml.safe_dump({
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "ingest-auth"},
        "influx": {"api": "v1", "url": auth_influxdb.url, "database": "enmon",
                   "retention_policy": "short", "username": "admin",
                   "password_env": "TEST_INFLUX_PW"}}))
    monkeypatch.setenv("TEST_INFLUX_PW", "secret-pw")
    r = enmon("influx", "init", "-c", str(cfg), "--retention", "520w")
    assert r.returncode == 0, r.stderr
    [short] = [p for p in auth_rows(auth_influxdb, 'SHOW RETENTION POLICIES ON "enmon"')
               if p["name"] == "short"]
    assert short["duration"] == "87360h0m0s" and short["default"] is True

    base = InfluxConfig(api="v1", url=auth_influxdb.url, database="enmon",
                        retention_policy="short", username="admin", password_env="TEST_INFLUX_PW")
    # wrong password: InfluxDB answers 401; the worker retries and acks nothing
    monkeypatch.setenv("TEST_INFLUX_PW", "wrong")
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-auth"), base) as w:
        publisher.publish_all([(topic("gw-01"), make_batch("gw-01", s)) for s in range(5)])
        wait_until(lambda: w.stats.write_retries >= 2, 30, "retries on 401")
        assert w.stats.acked == 0
    # fixed: the same session gets everything again and stores it in the "short" policy
    monkeypatch.setenv("TEST_INFLUX_PW", "secret-pw")
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-auth"), base) as w:
        wait_until(lambda: w.stats.acked == 5, 60, "acked with the right password")
    rows = auth_rows(auth_influxdb,
                     'SELECT count(active_power_kw) FROM "enmon"."short"."meter"')
    assert rows[0]["count"] == 50
    assert "secret-pw" not in (tmp_path / "ingest.yaml").read_text()
