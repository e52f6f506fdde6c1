"""Device commands through the inspector API, every part real (issue 15).

An operator's ``POST …/gateways/{gateway}/commands`` on a real uvicorn → the API signs it
and publishes it as the ``api`` identity to a real mosquitto running the product's ACL
(``enmon deploy credentials``) → a real ``enmon gateway run`` (its own broker identity)
writes a simulated meter on a pty RS-485 bus (firmware_sim), reads it back and answers →
a real ingest worker stores the answer in influxd → ``GET …/commands`` lists the request
with who asked and the gateway's outcome and read-back. Refused requests (no role, unknown
gateway or device, bad fields) are refused by the API with nothing published — a
subscriber on the command topic sees only the commands that were accepted — and nothing
recorded; a broker that is down or refuses the API's login answers 503, again with
nothing recorded.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal
from enmon.config import parse_model
from enmon.localrun import InfluxDB1, Mosquitto, Part, free_port
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import commands as gc
from gateway import library
from gateway.profile import ModbusProfile
from ingest.mqtt import MqttSettings
from tests.conftest import INFLUX_DB
from tests.deploy.mqttc import Probe
from tests.gateway.test_commands import LAB_PROFILE, _gateway_config
from tests.ingest.conftest import ThreadWorker, influx_cfg
from tests.inspector.conftest import auth
from tests.support import influx_rows, wait_until

pytestmark = pytest.mark.slow
SITE, GW = "hosp-a", "gw-01"
KEY = b"0123456789abcdef0123456789abcdef"
TOKENS = {"operator": "enm_test-operator-token-0123456789",
          "inspector": "enm_test-cmd-inspector-token-012345",
          "facility_manager": "enm_test-cmd-manager-token-0123456",
          "data_clerk": "enm_test-cmd-clerk-token-0123456789"}
NAMES = {"operator": "chen.operator", "inspector": "wang.inspector",
         "facility_manager": "li.facilities", "data_clerk": "zhao.clerk"}


def password(secrets: Path, user: str) -> str:
    return (secrets / "clients" / user / "password").read_text().strip()


@contextmanager
def serve(cfg: Any) -> Iterator[str]:
    """The inspector API (``create_app``) on uvicorn in a thread; yields its base URL."""
    import uvicorn

    from inspector.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, sites={}), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # surfaced below
            failure.append(exc)

    t = threading.Thread(target=main, name="api-commands", daemon=True)
    t.start()
    try:
        wait_until(lambda: server.started or failure, 30, "the API started")
        if failure:
            raise failure[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(30)


def api_config(influx_url: str, secrets: Path, key_file: Path, broker_port: int, *,
               mqtt_password_file: Path | None = None, mqtt_user: str = "api") -> Any:
    from inspector.auth import token_hash
    from inspector.config import InspectorConfig

    return InspectorConfig.model_validate({
        "influx": {"url": influx_url, "database": INFLUX_DB},
        "tokens": [{"name": NAMES[r], "role": r, "sha256": token_hash(t)}
                   for r, t in TOKENS.items()],
        "commands": {"key": {"id": "ops-1", "file": str(key_file)}, "lifetime_s": 60},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "username": mqtt_user,
                 "password_file": str(mqtt_password_file or
                                      secrets / "clients" / mqtt_user / "password"),
                 "timeout_s": 3},
    })


@dataclass
class Rig:
    url: str
    influx: InfluxDB1
    broker: Mosquitto
    secrets: Path
    key_file: Path
    meter: Unit
    ahu: Unit
    gateway: Part

    def post(self, body: dict[str, Any], role: str = "operator", gateway: str = GW,
             url: str | None = None, lang: str | None = None) -> httpx.Response:
        params = {"lang": lang} if lang else {}
        return httpx.post(f"{url or self.url}/api/v1/sites/{SITE}/gateways/{gateway}/commands",
                          json=body, headers=auth(TOKENS[role]), params=params, timeout=30)

    def listing(self, role: str = "inspector", **params: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/sites/{SITE}/gateways/{GW}/commands",
                      headers=auth(TOKENS[role]), params=params, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["site"], body["gateway"]) == (SITE, GW)
        return list(body["commands"])

    def answered(self, ident: str) -> dict[str, Any]:
        """The listed request ``ident`` once the gateway's answer is stored."""
        def got() -> dict[str, Any]:
            return next((c for c in self.listing() if c["id"] == ident
                         and c["outcome"] not in ("pending",)), {})

        return wait_until(got, 30, f"command {ident} answered and listed")

    def requests(self) -> list[dict[str, Any]]:
        return influx_rows(self.influx.url, INFLUX_DB, "SELECT * FROM command_request")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("api-commands")
    secrets = tmp / "secrets"
    make_credentials(secrets, add=[gateway_principal(SITE, GW), service_principal("api"),
                                   service_principal("ingest"), service_principal("rules")])
    broker = Mosquitto(workdir=tmp / "mq",
                       extra_conf=(secrets / "broker/enmon-listener.conf").read_text())
    influx = InfluxDB1(workdir=tmp / "influxd")
    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    meter = Unit(sdm, {"voltage_l1_v": 230.0, "active_energy_import_kwh": 1234.5},
                 settings={"demand_period_min": 60, "relay_pulse_width_ms": 100})
    ahu = Unit(parse_model(ModbusProfile, LAB_PROFILE), {"supply_temp_c": 45.0},
               settings={"setpoint_c": 20})
    sim = ModbusSlaveServer({1: meter, 2: ahu}, baud=9600)
    key_file = tmp / "cmd.key"
    key_file.write_bytes(KEY + b"\n")
    key_file.chmod(0o600)
    broker.start()
    influx.start()
    data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{INFLUX_DB}"'}).encode()
    with urllib.request.urlopen(f"{influx.url}/query", data=data, timeout=10) as r:
        assert r.status == 200
    sim.start()
    # the gateway as in tests/gateway/test_commands.py, logged in as its own identity
    config = _gateway_config(tmp, broker, sim.device, key_file)
    gw_cfg = yaml.safe_load(config.read_text())
    gw_cfg["mqtt"].update(username=f"{SITE}.{GW}",
                          password_file=str(secrets / "clients" / f"{SITE}.{GW}" / "password"))
    config.write_text(yaml.safe_dump(gw_cfg, allow_unicode=True))
    gateway = Part(name="gw", args=["gateway", "run", "-c", str(config)], workdir=tmp)
    ingest = ThreadWorker(MqttSettings(host=broker.host, port=broker.port, client_id="ingest",
                                       username="ingest",
                                       password=password(secrets, "ingest")),
                          influx_cfg(influx))
    try:
        ingest.start()
        gateway.start()
        with serve(api_config(influx.url, secrets, key_file, broker.port)) as url:
            # the API knows the gateway's devices from their stored readings
            wait_until(lambda: {r["device"] for r in influx_rows(
                influx.url, INFLUX_DB, "SELECT last(voltage_l1_v), last(supply_temp_c) FROM "
                "meter GROUP BY device")} >= {"main", "ahu"}, 30, "both devices' readings stored")
            yield Rig(url, influx, broker, secrets, key_file, meter, ahu, gateway)
    finally:
        gateway.kill()
        ingest.stop()
        sim.stop()
        influx.stop()
        broker.stop()


@contextmanager
def watching(rig: Rig) -> Iterator[Probe]:
    """A subscriber on the gateway's command topic, as the rules identity (it may read
    everything; the broker binds client ids to user names, so it must be none of the
    identities the test's parts use)."""
    p = Probe(rig.broker.port, username="rules", password=password(rig.secrets, "rules"))
    assert p.connect() == "ok"
    try:
        assert not p.subscribe(gc.command_topic(SITE, GW))[0].is_failure
        yield p
    finally:
        p.close()


def commands_seen(p: Probe) -> list[dict[str, Any]]:
    with p._lock:
        return [json.loads(m) for _, m in p.received]


def test_only_an_operator_may_control(rig: Rig) -> None:
    for role, token in TOKENS.items():
        me = httpx.get(f"{rig.url}/api/v1/whoami", headers=auth(token), timeout=10).json()
        assert (me["role"], me["may_control"]) == (role, role == "operator")
    from inspector.auth import PERMISSIONS, Principal

    # fail closed: a role the permissions table does not know may do nothing
    assert not Principal("x", "superuser").may("control")
    assert [r for r, p in PERMISSIONS.items() if "control" in p] == ["operator"]


def test_an_operators_command_round_trip_with_who_asked_and_the_read_back(rig: Rig) -> None:
    t0 = int(time.time() * 1000)
    with watching(rig) as probe:
        r = rig.post({"device": "main", "target": "demand_period_min", "value": "15"})
        assert r.status_code == 202, r.text
        sent = r.json()
        assert (sent["requested_by"], sent["kind"], sent["value"], sent["state"],
                sent["gateway_listening"]) == ("chen.operator", "write", "15", "sent", True)
        assert sent["expires_at"] - sent["issued_at"] == 60
        # FC 6 on the other unit: a number in the JSON, a scaled u16 on the wire
        r2 = rig.post({"device": "ahu", "target": "setpoint_c", "value": 21.5,
                       "lifetime_s": 120})
        assert r2.status_code == 202, r2.text
        sp = r2.json()
        # what went over the broker is the gateway's own signed format, nothing else
        seen = wait_until(lambda: len(commands_seen(probe)) == 2 and commands_seen(probe), 10,
                          "both commands on the command topic")
    first, second = seen
    assert first["id"] == sent["id"] and second["id"] == sp["id"]
    assert gc.verify(json.dumps(first).encode(), keys={"ops-1": KEY}, site=SITE, gateway=GW,
                     now=time.time(), max_skew_s=30, max_lifetime_s=900)["value"] == "15"
    assert (second["value"], second["expires_at"] - second["issued_at"]) == ("21.5", 120)
    assert KEY.decode() not in json.dumps(seen)

    done = rig.answered(sent["id"])
    assert (done["outcome"], done["readback"], done["reason"]) == ("ok", 15.0, "")
    assert (done["requested_by"], done["role"], done["state"]) == ("chen.operator", "operator",
                                                                   "sent")
    assert (done["device"], done["target"], done["value"]) == ("main", "demand_period_min", "15")
    assert done["registers"] == "16752,0" and done["answered_at"] >= done["requested_at"] >= t0
    assert (done["coils"], done["clock"], done["offset_s"]) == (None, None, None)
    assert done["outcome_text"] == "已执行并读回"  # zh-CN by default
    assert (rig.meter.written[2], rig.meter.written[3]) == (0x4170, 0x0000)  # the meter has it
    sp_done = rig.answered(sp["id"])
    assert (sp_done["outcome"], sp_done["readback"], rig.ahu.written[10]) == ("ok", 21.5, 215)

    # the record in InfluxDB: requester, command and time, beside the gateway's result
    req = next(q for q in rig.requests() if q["command_id"] == sent["id"])
    assert (req["requested_by"], req["role"], req["site"], req["gateway"], req["device"],
            req["kind"], req["target"], req["value"], req["state"], req["key_id"]) == (
        "chen.operator", "operator", SITE, GW, "main", "write", "demand_period_min", "15",
        "sent", "ops-1")
    assert req["time"] == sent["requested_at"] and req["issued_at"] == sent["issued_at"]
    res = influx_rows(rig.influx.url, INFLUX_DB,
                      f"SELECT * FROM command WHERE command_id = '{sent['id']}'")
    assert [(x["outcome"], x["readback"]) for x in res] == [("ok", 15.0)]
    # the inspector reads the record, also in English
    en = httpx.get(f"{rig.url}/api/v1/sites/{SITE}/gateways/{GW}/commands",
                   params={"lang": "en", "device": "main"}, timeout=30,
                   headers=auth(TOKENS["inspector"])).json()["commands"]
    assert {c["device"] for c in en} == {"main"}
    assert next(c for c in en if c["id"] == sent["id"])["outcome_text"] == "done and read back"


def test_the_gateway_judges_the_range_and_the_allow_list_and_the_list_says_why(
        rig: Rig) -> None:
    before = (dict(rig.meter.written), rig.meter.writes)
    ids = {}
    for reason, body in {"out_of_range": {"device": "main", "target": "demand_period_min",
                                          "value": "61"},
                         "not_allowed": {"device": "main", "target": "relay_pulse_width_ms",
                                         "value": 200},
                         "not_writable": {"device": "main", "target": "voltage_l1_v",
                                          "value": "1"}}.items():
        r = rig.post(body)
        assert r.status_code == 202, r.text  # the API passes it on: the gateway decides
        ids[reason] = r.json()["id"]
    # a kind the gateway knows is passed through as it is: the gateway decides (a clock
    # sync is for a DL/T 645 meter, not this Modbus one)
    sync = rig.post({"device": "main", "kind": "time_sync"})
    if "time_sync" in gc.ACTIONS:
        assert sync.status_code == 202, sync.text
        assert (sync.json()["target"], sync.json()["value"]) == ("time_sync", "now")
        synced = rig.answered(sync.json()["id"])
        assert synced["outcome"] == "refused" and synced["kind"] == "time_sync", synced
    else:
        assert (sync.status_code, sync.json()["field"]) == (422, "kind"), sync.text
    for reason, ident in ids.items():
        c = rig.answered(ident)
        assert (c["outcome"], c["reason"], c["outcome_text"]) == ("refused", reason,
                                                                  "网关拒绝执行"), c
    assert (dict(rig.meter.written), rig.meter.writes) == before


def test_refused_requests_publish_and_record_nothing(rig: Rig) -> None:
    recorded = len(rig.requests())
    ok_body = {"device": "main", "target": "demand_period_min", "value": "30"}
    with watching(rig) as probe:
        for role in ("inspector", "facility_manager", "data_clerk"):
            r = rig.post(ok_body, role=role)
            assert r.status_code == 403, r.text
            assert r.json()["detail"] == (f"角色 {role} 无权下发设备命令；运行操作员（operator）"
                                          "可以")
        r = rig.post(ok_body, role="inspector", lang="en")
        assert r.json()["detail"] == "role inspector may not send device commands; an " \
                                     "operator may"
        r = rig.post(ok_body, gateway="gw-99")
        assert r.status_code == 404 and "gw-99" in r.json()["detail"], r.text
        fields = {
            "device": {**ok_body, "device": "boiler"},
            "value": {**ok_body, "value": "abc"},
            "kind": {**ok_body, "kind": "explode"},
            "target": {**ok_body, "target": "Demand-Period"},
            "lifetime_s": {**ok_body, "lifetime_s": 3600},
        }
        r = rig.post({"device": "main", "value": "30"})  # a write names its point
        assert (r.status_code, r.json()["field"]) == (422, "target"), r.text
        for name, body in fields.items():
            r = rig.post(body)
            assert r.status_code == 422, (name, r.text)
            assert r.json()["field"] == name, r.text
        r = rig.post({**ok_body, "value": "1e5"}, lang="en")
        assert r.json() == {"field": "value", "detail": (
            "value 1e5: a decimal number such as 15, -3 or 21.5 (at most 18 digits before and "
            "12 after the point, no exponent), or what the kind takes (a coil: on/off; a time "
            "sync: now)")}
        r = rig.post({**ok_body, "device": "boiler"})
        assert r.json()["detail"] == "网关 gw-01 没有设备 boiler：请使用以下之一：ahu, main"
        r = rig.post({**ok_body, "value": True})
        assert r.status_code == 422  # a boolean is no value
        # one accepted command after them all: it is the only one the subscriber sees
        good = rig.post(ok_body)
        assert good.status_code == 202, good.text
        wait_until(lambda: commands_seen(probe), 10, "the accepted command seen")
        assert [c["id"] for c in commands_seen(probe)] == [good.json()["id"]]
    assert len(rig.requests()) == recorded + 1
    assert rig.answered(good.json()["id"])["outcome"] == "ok"


def test_broker_or_database_down_or_login_refused_is_503_with_nothing_sent_or_recorded(
        rig: Rig, tmp_path: Path) -> None:
    body = {"device": "main", "target": "demand_period_min", "value": "20"}
    recorded = len(rig.requests())
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-api-password\n")
    with watching(rig) as probe:
        closed = free_port()  # nobody listens there
        with serve(api_config(rig.influx.url, rig.secrets, rig.key_file, closed)) as url:
            t = time.monotonic()
            r = rig.post(body, url=url)
            assert r.status_code == 503, r.text
            assert time.monotonic() - t < 10
            assert "命令未发出" in r.json()["detail"]
        with serve(api_config(rig.influx.url, rig.secrets, rig.key_file, rig.broker.port,
                              mqtt_password_file=wrong)) as url:
            r = rig.post(body, url=url, lang="en")
            assert r.status_code == 503, r.text
            assert "nothing was sent" in r.json()["detail"]
            assert "not-the-api-password" not in r.text
        # an identity the broker's ACL does not let publish commands: the broker says "Not
        # authorized" in its PUBACK; the record says not_sent, the answer 503
        with serve(api_config(rig.influx.url, rig.secrets, rig.key_file, rig.broker.port,
                              mqtt_user="ingest")) as url:
            r = rig.post(body, url=url, lang="en")
            assert r.status_code == 503, r.text
            assert "refused the command" in r.json()["detail"], r.text
            refused_id = next(q["command_id"] for q in rig.requests()
                              if q["state"] == "not_sent")
        listed = next(c for c in rig.listing() if c["id"] == refused_id)
        assert (listed["outcome"], listed["error"], listed["outcome_text"]) == (
            "not_sent", "publish_refused", "未发出")
        # a database that cannot be read or written: nothing can be recorded, nothing sent
        with serve(api_config(f"http://127.0.0.1:{free_port()}", rig.secrets, rig.key_file,
                              rig.broker.port)) as url:
            r = rig.post(body, url=url)
            assert r.status_code == 503, r.text
            assert r.json()["detail"] == "数据库不可用，无法记录该请求；命令未发出，请稍后重试"
        # the round trip through the same subscriber: the broker has delivered all it had
        good = rig.post(body)
        assert good.status_code == 202
        wait_until(lambda: commands_seen(probe), 10, "the accepted command seen")
        assert [c["id"] for c in commands_seen(probe)] == [good.json()["id"]]
    assert len(rig.requests()) == recorded + 2  # the accepted one and the one not sent


def test_the_key_must_be_private_and_is_never_shown(rig: Rig, tmp_path: Path) -> None:
    from enmon.errors import ConfigError
    from inspector.api import create_app

    exposed = tmp_path / "cmd.key"
    exposed.write_bytes(KEY)
    exposed.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as e:
        create_app(api_config(rig.influx.url, rig.secrets, exposed, rig.broker.port), sites={})
    assert KEY.decode() not in str(e.value)
    exposed.write_bytes(b"short")
    exposed.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        create_app(api_config(rig.influx.url, rig.secrets, exposed, rig.broker.port), sites={})
    assert KEY.decode() not in rig.gateway.log_tail(10**6)
    with pytest.raises(ConfigError, match=r"mqtt\.password_file"):  # at start, not at a command
        create_app(api_config(rig.influx.url, rig.secrets, rig.key_file, rig.broker.port,
                              mqtt_password_file=tmp_path / "missing"), sites={})
    from inspector.config import InspectorConfig

    with pytest.raises(Exception, match="needs mqtt"):
        InspectorConfig.model_validate({"commands": {"key": {"id": "ops-1", "env": "X"}}})


def test_a_command_for_a_gateway_that_is_offline_says_so(rig: Rig) -> None:
    """Last in this module: it stops the gateway. MQTT 5's PUBACK says nobody is subscribed;
    the API says the gateway is not listening, and the list that no answer came."""
    assert rig.gateway.stop() == 0
    body = {"device": "main", "target": "demand_period_min", "value": "45", "lifetime_s": 1}
    r = wait_until(lambda: (x := rig.post(body)).status_code == 202
                   and not x.json()["gateway_listening"] and x, 15,
                   "the broker seeing the gateway gone")
    ident = r.json()["id"]
    c = next(c for c in rig.listing() if c["id"] == ident)
    assert (c["state"], c["error"], c["outcome"]) == ("sent", "no_subscribers", "pending")

    # once it has expired (and the gateways' clock skew has passed) it had no answer
    from enmon.influx import InfluxConfig, InfluxQL
    from inspector import commands as cm
    from inspector.store import Store

    async def later() -> list[dict[str, Any]]:
        st = Store(InfluxQL(InfluxConfig(url=rig.influx.url, database=INFLUX_DB)))
        try:
            now = int(time.time() * 1000)
            return await cm.listing(st, site=SITE, gateway=GW, start=now - 3_600_000,
                                    end=now + 1, device="main", lang="zh-CN",
                                    now_ms=now + 120_000)
        finally:
            await st.close()

    c = next(c for c in asyncio.run(later()) if c["id"] == ident)
    assert (c["outcome"], c["outcome_text"]) == ("no_answer", "已过期，网关未应答")
