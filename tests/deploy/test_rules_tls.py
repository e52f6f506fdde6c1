"""The rule engine on a locked-down broker: TLS with its own credentials, and only
the sites it is given (how rules are partitioned by site in a cluster)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from enmon import wire
from enmon.localrun import InfluxDB1, Part
from rules.service import subscriptions
from tests.conftest import INFLUX_DB
from tests.deploy.conftest import SecuredBroker
from tests.deploy.mqttc import Probe, connected
from tests.support import wait_until


def test_rules_follow_only_their_own_sites() -> None:
    assert subscriptions([]) == [wire.TELEMETRY_FILTER, wire.STATUS_FILTER]
    assert subscriptions(["b", "a", "a"]) == [
        "enmon/v1/a/+/telemetry",
        "enmon/v1/a/+/status",
        "enmon/v1/b/+/telemetry",
        "enmon/v1/b/+/status",
    ]


def test_rules_run_over_tls_with_their_own_credentials(
    tmp_path: Path, secured: SecuredBroker, influxdb: InfluxDB1
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "site": "hosp-a",
                "buildings": [{"id": "outpatient", "type": "office", "floor_area_m2": 1000}],
            }
        )
    )
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": secured.tls_port,
                    "username": "rules",
                    "password_env": "ENMON_TEST_RULES_PW",
                    "client_id": "rules-tls",
                    "ca_file": str(secured.client_dir("rules") / "ca.crt"),
                },
                "influx": {"url": influxdb.url, "database": INFLUX_DB},
                "sites": [str(site)],
                "state_dir": str(tmp_path / "rules-state"),
                "thresholds": [
                    {
                        "name": "peak_demand",
                        "quantity": "active_power_kw",
                        "above": 50.0,
                        "clear_below": 45.0,
                        "for_s": 0,
                    }
                ],
            }
        )
    )
    rules = Part(
        name="rules",
        args=["rules", "run", "-c", str(cfg)],
        workdir=tmp_path,
        env={"ENMON_TEST_RULES_PW": secured.password("rules")},
    )
    gw_user = "hosp-a.gw-a"
    watcher = Probe(secured.plain_port, "ingest", secured.password("ingest"))
    gw = Probe(
        secured.tls_port,
        gw_user,
        secured.password(gw_user),
        ca_file=secured.client_dir(gw_user) / "ca.crt",
    )
    rules.start()
    try:
        wait_until(lambda: "event=rules_started" in rules.log_tail(10_000), 30, "rules connected")
        with connected(watcher) as w, connected(gw) as g:
            w.subscribe("enmon/v1/hosp-a/alerts/#")
            now = int(time.time() * 1000)
            batch = wire.Batch(
                "hosp-a",
                "gw-a",
                0,
                now,
                {"main": wire.DeviceMeta("outpatient")},
                [
                    wire.Sample("main", now - 1000, {"active_power_kw": 61.5}),
                    wire.Sample("main", now, {"active_power_kw": 62.0}),
                ],
            )
            g.publish(wire.telemetry_topic("hosp-a", "gw-a"), wire.encode_batch(batch))
            wait_until(lambda: w.received, 30, "an alert on the alerts topic")
            topic, body = w.received[0]
            assert topic.startswith("enmon/v1/hosp-a/alerts/")
            assert "peak_demand" in json.dumps(json.loads(body))
    finally:
        rules.stop()
    assert secured.password("rules") not in rules.log_tail(100_000), "password in the log"
