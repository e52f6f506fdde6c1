"""deploy/cluster: what can be checked without an EMQX or InfluxDB 3 cluster — the
generated EMQX ACL, the unit files, the InfluxDB 3 ingest config, and that the capacity
table in the README is what capacity.py computes."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from deploy.broker import emqx_acl_text
from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "cluster"
ENMON = str(Path(sys.executable).with_name("enmon"))


def _capacity() -> ModuleType:
    spec = importlib.util.spec_from_file_location("capacity", CLUSTER / "capacity.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["capacity"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_emqx_acl_grants_only_own_subtree_and_denies_the_rest(tmp_path: Path) -> None:
    make_credentials(
        tmp_path,
        add=[
            gateway_principal("hosp-a", "gw-01"),
            service_principal("ingest"),
            service_principal("rules"),
        ],
    )
    text = (tmp_path / "broker" / "emqx-acl.conf").read_text()
    rules = [ln for ln in text.splitlines() if ln and not ln.startswith("%%")]
    assert rules[-1] == "{deny, all}."
    gw = "enmon/v1/hosp-a/gw-01"
    assert ('{allow, {username, "hosp-a.gw-01"}, publish, '
            f'["{gw}/telemetry", "{gw}/status", "{gw}/health", "{gw}/command/result"]}}.'
            in rules)
    # what a gateway may read: ingest's end-to-end acks of its own batches, its commands
    assert [r for r in rules if "hosp-a.gw-01" in r and "subscribe" in r] == [
        f'{{allow, {{username, "hosp-a.gw-01"}}, subscribe, ["{gw}/ack", "{gw}/command"]}}.']
    assert '{allow, {username, "ingest"}, publish, ["enmon/v1/+/+/ack"]}.' in rules
    assert '{allow, {username, "rules"}, publish, ["enmon/v1/+/alerts/#"]}.' in rules
    assert text == emqx_acl_text(
        [
            gateway_principal("hosp-a", "gw-01"),
            service_principal("ingest"),
            service_principal("rules"),
        ]
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("unit", ["enmon-ingest@.service", "enmon-rules@.service"])
def test_cluster_units_verify(tmp_path: Path, unit: str) -> None:
    text = (CLUSTER / "systemd" / unit).read_text().replace("/opt/enmon/venv/bin/enmon", ENMON)
    path = tmp_path / unit.replace("@", "@1")
    path.write_text(text)
    res = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr


def test_ingest_workers_get_unique_fixed_client_ids() -> None:
    unit = (CLUSTER / "systemd" / "enmon-ingest@.service").read_text()
    assert "--client-id ingest-%H-%i" in unit  # host + instance: unique and stable


def test_influxdb3_ingest_config_matches_the_schema() -> None:
    from ingest.config import load_config

    cfg = load_config(CLUSTER / "ingest-influxdb3.yaml")
    assert cfg.influx.api == "v2" and cfg.influx.token_env and cfg.mqtt.client_id is None


def test_capacity_plan_arithmetic() -> None:
    cap = _capacity()
    s = cap.Scenario("t", gateways=100, meters_per_gateway=10, quantities=10, poll_s=10)
    r = cap.plan(s, per_worker=1000.0, headroom=0.5)
    assert r.meters == 1000 and r.readings_s == 1000.0 and r.messages_s == 10.0
    assert r.workers == 2  # 1000 readings/s at 500 usable per worker
    assert cap.plan(s, per_worker=2000.0, headroom=0.5).workers == 1


def test_readme_table_is_what_capacity_py_prints() -> None:
    readme = (CLUSTER / "README.md").read_text()
    m = re.search(r"capacity\.py --per-worker (\d+)", readme)
    assert m
    table = _capacity().table(float(m.group(1)), 0.5)
    assert table in readme
