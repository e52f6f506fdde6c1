"""Device writes by signed, expiring commands (gateway/commands.py), with every part real.

A real ``enmon gateway run`` polls two simulated meters on a pty RS-485 bus with 9600-baud
line timing while commands reach it over a real mosquitto: the operator's CLI
(``enmon gateway command``) changes an SDM630's demand period (FC 16, a float), a
published command changes a lab controller's set-point (FC 6, a scaled u16); the
simulator holds the new registers and the gateway reads them back. Unsigned, badly
signed, expired, replayed (also after a restart), not allow-listed, not writable, out of
range and wrong-gateway commands are each refused — a result message and a log line,
and the register untouched. The broker ACL written by ``enmon deploy credentials`` lets
only the API identity publish commands and a gateway read only its own.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal
from enmon.config import parse_model
from enmon.localrun import Mosquitto, Part
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import commands as cmds
from gateway import library
from gateway import modbus_frames as mf
from gateway import modbus_writes as mw
from gateway.profile import ModbusProfile
from tests.deploy.mqttc import Probe, connected
from tests.support import wait_until

SITE, GW = "hosp-a", "gw-01"
KEY = b"0123456789abcdef0123456789abcdef"
LAB_PROFILE = {
    "model": "lab-setpoint", "manufacturer": "test", "name": "a controller with a set-point",
    "protocol": "modbus", "energy_type": "heat", "confidence": "I",
    "source": "a test profile: one u16 reading, one u16 set-point in tenths of a degree",
    "defaults": {"function": "holding", "type": "u16"},
    "quantities": {"supply_temp_c": {"address": 0, "scale": 0.1}},
    "writable": {"setpoint_c": {"address": 10, "scale": 0.1, "min": 5, "max": 90,
                                "unit": "°C"}},
}


# --------------------------------------------------------------------------- frames, codec


def test_write_frames_are_the_modbus_spec_examples() -> None:
    # MODBUS Application Protocol V1.1b3 §6.6 and §6.12 (request and answer PDUs); the
    # RTU frames with their CRCs as in the usual worked examples (unit 0x11)
    single = mw.write_pdu(0x0001, [0x0003])
    assert single.hex() == "0600010003"
    assert mw.frame("rtu", 0x11, single).hex() == "1106000100039a9b"
    multiple = mw.write_pdu(0x0001, [0x000A, 0x0102])
    assert multiple.hex() == "1000010002040" + "00a0102"
    assert mw.frame("rtu", 0x11, multiple).hex() == "11100001000204000a0102c6f0"
    assert mw.expected_response(multiple).hex() == "1000010002"
    assert mw.parse_write_pdu(multiple) == (16, 1, [0x000A, 0x0102])
    assert mw.rtu_request_length(mw.frame("rtu", 0x11, multiple)) == 13
    with pytest.raises(mf.ModbusException):
        mw.check_write_response(0x11, single, 0x11, bytes([0x86, 0x02]))
    with pytest.raises(mf.FrameError):
        mw.check_write_response(0x11, single, 0x11, bytes.fromhex("0600010004"))


def test_sdm630_demand_period_is_the_manuals_float_and_ranges_hold() -> None:
    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    assert cmds.register_words(sdm, "demand_period_min", "15") == [0x4170, 0x0000]  # 15.0f
    for bad in ("7", "61", "-5"):
        with pytest.raises(cmds.Refused) as r:
            cmds.register_words(sdm, "demand_period_min", bad)
        assert r.value.reason == "out_of_range"
    lab = parse_model(ModbusProfile, LAB_PROFILE)
    assert cmds.register_words(lab, "setpoint_c", "21.5") == [215]
    with pytest.raises(cmds.Refused, match="whole step"):
        cmds.register_words(lab, "setpoint_c", "21.55")


def test_a_profile_cannot_declare_text_or_half_a_float_writable() -> None:
    bad = json.loads(json.dumps(LAB_PROFILE))
    bad["writable"]["setpoint_c"]["type"] = "str"
    with pytest.raises(Exception, match="cannot be written"):
        parse_model(ModbusProfile, bad)
    bad["writable"]["setpoint_c"].update(type="f32", write_function=6)
    with pytest.raises(Exception, match="write_function 6"):
        parse_model(ModbusProfile, bad)


def _verify(cmd: dict[str, Any], now: float) -> dict[str, Any]:
    return cmds.verify(json.dumps(cmd).encode(), keys={"ops-1": KEY}, site=SITE, gateway=GW,
                       now=now, max_skew_s=30, max_lifetime_s=900)


def test_verify_refuses_each_forgery_with_its_reason() -> None:
    now = 1_764_700_000.0

    def make(**kw: Any) -> dict[str, Any]:
        args: dict[str, Any] = dict(key_id="ops-1", site=SITE, gateway=GW, device="main",
                                    target="demand_period_min", value="15", now=now)
        args.update(kw)
        return cmds.new_command(args.pop("secret", KEY), **args)

    assert _verify(make(), now)["value"] == "15"
    unsigned = make()
    del unsigned["signature"]
    tampered = make()
    tampered["value"] = "60"  # the signature covers the value
    injected = make()
    injected["device"] = "main\nother"
    cases = {
        "unsigned": unsigned,
        "bad_signature": tampered,
        "malformed": injected,
        "unknown_key": make(key_id="ops-9"),
        "wrong_gateway": make(gateway="gw-02"),
        "expired": make(now=now - 200, ttl_s=60),
        "not_yet_valid": make(now=now + 600),
        "lifetime_too_long": make(ttl_s=3600),
    }
    other_key = make(secret=b"another-secret-of-32-bytes-long!")
    cases["bad_signature_other_key"] = other_key
    for want, cmd in cases.items():
        with pytest.raises(cmds.Refused) as r:
            _verify(cmd, now)
        assert r.value.reason == want.removesuffix("_other_key"), (want, r.value)
    with pytest.raises(cmds.Refused, match="malformed"):
        cmds.verify(b"\xff not json", keys={}, site=SITE, gateway=GW, now=now, max_skew_s=1,
                    max_lifetime_s=1)


def test_nonces_survive_a_reopen_are_forgotten_only_after_expiry_and_are_bounded(
        tmp_path: Path) -> None:
    path = tmp_path / "commands.db"
    store = cmds.NonceStore(path, max_entries=10)
    store.claim("a" * 32, expires_at=1000, now=900, skew_s=30)
    store.close()
    store = cmds.NonceStore(path, max_entries=10)
    with pytest.raises(cmds.Refused, match="replayed"):
        store.claim("a" * 32, expires_at=1000, now=950, skew_s=30)
    # once the command is past expiry + skew it is refused as expired anyway: forgotten
    store.claim("b" * 32, expires_at=5000, now=1031, skew_s=30)
    store.claim("a" * 32, expires_at=5000, now=1031, skew_s=30)
    for i in range(8):
        store.claim(f"{i:032d}", expires_at=5000, now=1031, skew_s=30)
    with pytest.raises(cmds.Refused, match="nonce_store_full"):
        store.claim("c" * 32, expires_at=5000, now=1031, skew_s=30)
    store.close()


def test_check_reads_the_keys_and_names_a_point_that_is_not_writable(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    key = tmp_path / "k"

    def check(writable: list[str], secret: bytes) -> Any:
        key.write_bytes(secret)
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(yaml.safe_dump({
            "site": SITE, "gateway": GW, "state_dir": str(tmp_path / "st"),
            "commands": {"enabled": True, "keys": [{"id": "ops-1", "file": str(key)}]},
            "devices": [{"name": "main", "profile": "eastron-sdm630", "writable": writable,
                         "transport": {"type": "serial", "port": "/dev/ttyUSB0"}}]}))
        return CliRunner().invoke(app, ["check", "-c", str(cfg)])

    r = check(["demand_period_min"], KEY)
    assert r.exit_code == 0 and "writable: main.demand_period_min" in r.output, r.output
    assert KEY.decode() not in r.output
    r = check(["demand_period_min"], b"short")
    assert r.exit_code != 0 and "shorter than 16 bytes" in str(r.exception)
    assert "short" not in str(r.exception).replace("shorter", "")  # the secret is not shown
    r = check(["voltage_l1_v"], KEY)
    assert r.exit_code != 0
    assert "devices.0.writable.0" in str(r.exception) and "demand_period_min" in str(
        r.exception)


# --------------------------------------------------------------------------- end to end


class Results:
    """Every message on the gateway's command and result topics (anonymous broker)."""

    def __init__(self, mq: Mosquitto) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.unnamed: list[dict[str, Any]] = []
        self.commands: list[bytes] = []
        self.births = 0  # the gateway's "online" messages: it hears its commands from then on
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="cmd-test", protocol=paho.MQTTv5)
        c.on_connect = lambda cl, *a: cl.subscribe(
            [(cmds.command_topic(SITE, GW), 1), (cmds.result_topic(SITE, GW), 1),
             (f"enmon/v1/{SITE}/{GW}/status", 1)])
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._on_message
        c.connect(mq.host, mq.port)
        c.loop_start()
        assert self.ready.wait(10)
        self.client = c

    def _on_message(self, _c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        with self.lock:
            if m.topic.endswith("/status"):
                self.births += json.loads(m.payload).get("state") == "online"
            elif m.topic.endswith("/result"):
                r = json.loads(m.payload)
                if r.get("id"):
                    self.results[r["id"]] = r
                else:
                    self.unnamed.append(r)
            else:
                self.commands.append(bytes(m.payload))

    def send(self, cmd: dict[str, Any] | bytes) -> None:
        payload = cmd if isinstance(cmd, bytes) else json.dumps(cmd).encode()
        self.client.publish(cmds.command_topic(SITE, GW), payload, qos=1).wait_for_publish(10)

    def wait(self, ident: str, what: str, after: float = 0) -> dict[str, Any]:
        def got() -> dict[str, Any]:
            with self.lock:
                r = self.results.get(ident)
            return r if r is not None and r["ts"] >= after else {}

        return wait_until(got, 15, what)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _gateway_config(tmp_path: Path, mq: Mosquitto, port: str, key_file: Path) -> Path:
    lab = tmp_path / "lab-setpoint.yaml"
    lab.write_text(yaml.safe_dump(LAB_PROFILE, allow_unicode=True))
    serial = {"type": "serial", "port": port, "baud": 9600, "timeout_s": 0.5}
    cfg = {
        "site": SITE, "gateway": GW, "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": mq.host, "port": mq.port, "end_to_end": False, "reconnect_max_s": 2},
        "poll": {"interval_s": 0.2, "health_interval_s": 60},
        "commands": {"enabled": True, "keys": [{"id": "ops-1", "file": str(key_file)}]},
        "devices": [
            {"name": "main", "profile": "eastron-sdm630", "unit_id": 1, "transport": serial,
             "quantities": ["voltage_l1_v", "active_energy_import_kwh"],
             "writable": ["demand_period_min"]},
            {"name": "ahu", "profile": str(lab), "unit_id": 2, "transport": serial,
             "writable": ["setpoint_c"]},
        ],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


@pytest.mark.slow
def test_a_signed_write_round_trip_and_every_refusal_recorded(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    sdm = library.load("eastron-sdm630")
    lab = parse_model(ModbusProfile, LAB_PROFILE)
    assert isinstance(sdm, ModbusProfile)
    meter = Unit(sdm, {"voltage_l1_v": 230.0, "active_energy_import_kwh": 1234.5},
                 settings={"demand_period_min": 60, "relay_pulse_width_ms": 100})
    ahu = Unit(lab, {"supply_temp_c": 45.0}, settings={"setpoint_c": 20})
    sim = ModbusSlaveServer({1: meter, 2: ahu}, baud=9600).start()
    key_file = tmp_path / "cmd.key"
    key_file.write_bytes(KEY + b"\n")
    key_file.chmod(0o600)
    config = _gateway_config(tmp_path, mosquitto, sim.device, key_file)
    gw = Part(name="gw", args=["gateway", "run", "-c", str(config)], workdir=tmp_path)
    results = Results(mosquitto)
    try:
        gw.start()
        wait_until(lambda: results.births == 1, 15, "gateway online")
        wait_until(lambda: "event=batch_queued" in gw.log_tail(10**6), 15, "polling")
        before = dict(meter.written)

        # 1. the operator's CLI: signed, sent, written with FC 16, read back
        cli = subprocess.run(
            [sys.executable, "-m", "enmon", "gateway", "command", f"{SITE}/{GW}", "main",
             "demand_period_min", "15", "--key-id", "ops-1", "--key-file", str(key_file),
             "--host", mosquitto.host, "--port", str(mosquitto.port), "--wait", "15"],
            capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        done = json.loads(cli.stdout.strip().splitlines()[-1])
        assert (done["status"], done["readback"], done["registers"]) == ("ok", 15.0,
                                                                         [0x4170, 0])
        assert (meter.written[2], meter.written[3]) == (0x4170, 0x0000)  # the meter holds it
        assert KEY.decode() not in cli.stdout + cli.stderr
        first = wait_until(lambda: results.commands[-1], 5, "the CLI's command seen")

        # 2. FC 6: a scaled u16 set-point on the other unit of the same bus
        sp = cmds.new_command(KEY, key_id="ops-1", site=SITE, gateway=GW, device="ahu",
                              target="setpoint_c", value="21.5")
        results.send(sp)
        r = results.wait(sp["id"], "the set-point written")
        assert (r["status"], r["readback"], ahu.written[10]) == ("ok", 21.5, 215)
        # the record says who signed it, when
        assert (r["action"], r["issued_at"], r["key_id"]) == ("write", sp["issued_at"], "ops-1")

        # 3. every refusal: a result with its reason, a log line, nothing written
        snapshot = (dict(meter.written), dict(ahu.written), meter.writes, ahu.writes)

        def signed(**kw: Any) -> dict[str, Any]:
            args: dict[str, Any] = dict(key_id="ops-1", site=SITE, gateway=GW, device="main",
                                        target="demand_period_min", value="30")
            args.update(kw)
            return cmds.new_command(args.pop("secret", KEY), **args)

        unsigned = signed()
        unsigned["signature"] = ""
        forged = signed(secret=b"not-the-gateways-key-0123456789")
        cases = {
            "unsigned": unsigned,
            "bad_signature": forged,
            "expired": signed(now=time.time() - 3600, ttl_s=60),
            "not_allowed": signed(target="relay_pulse_width_ms", value="200"),
            "not_writable": signed(target="voltage_l1_v", value="1"),
            "out_of_range": signed(value="61"),
            "wrong_gateway": signed(gateway="gw-02"),
        }
        for reason, cmd in cases.items():
            results.send(cmd)
            r = results.wait(cmd["id"], f"refusal {reason}")
            assert (r["status"], r["reason"]) == ("refused", reason), r
            assert f"event=command_refused id={cmd['id']} reason={reason}" in gw.log_tail(10**6)
        results.send(first)
        first_id = json.loads(first)["id"]
        r = results.wait(first_id, "the replay refused", after=done["ts"] + 1)
        assert (r["status"], r["reason"]) == ("refused", "replayed")
        results.send(b"{not json")
        wait_until(lambda: any(u["reason"] == "malformed" for u in results.unnamed), 15,
                   "malformed refused")
        assert (dict(meter.written), dict(ahu.written), meter.writes, ahu.writes) == snapshot

        # 4. a restart does not reopen the replay: the ids are on disk
        assert gw.stop() == 0
        t_restart = int(time.time() * 1000)
        gw.start()
        wait_until(lambda: results.births == 2, 15, "gateway online again")
        results.send(first)
        r = results.wait(first_id, "the replay after a restart", after=t_restart)
        assert (r["status"], r["reason"]) == ("refused", "replayed")
        assert (dict(meter.written), meter.writes) == (snapshot[0], snapshot[2])
        # the writes shared the line with polling: no garbled or lost poll on the way
        log = gw.log_tail(10**6)
        assert "event=bad_frame" not in log and "event=timeout" not in log
        assert before != meter.written
        assert gw.stop() == 0
    finally:
        gw.kill()
        results.close()
        sim.stop()
    store = cmds.NonceStore(tmp_path / "state" / "commands.db", max_entries=10)
    outcomes = store.outcomes()
    store.close()
    kept = [(o["status"], o["reason"]) for o in outcomes]
    assert kept.count(("ok", "")) == 2 and ("refused", "replayed") in kept
    assert len(kept) == 2 + len(cases) + 3  # every command's outcome is on disk
    # numbered and timed in order across the restart: never two answers in one millisecond
    assert [o["seq"] for o in outcomes] == list(range(1, len(outcomes) + 1))
    assert all(a["ts"] < b["ts"] for a, b in itertools.pairwise(outcomes))


# --------------------------------------------------------------------------- broker ACL


@pytest.mark.slow
def test_only_the_api_may_command_and_a_gateway_reads_only_its_own(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    make_credentials(secrets, add=[gateway_principal(SITE, "gw-a"),
                                   gateway_principal(SITE, "gw-b"),
                                   service_principal("api"), service_principal("ingest"),
                                   service_principal("rules")])
    conf = (secrets / "broker" / "enmon-listener.conf").read_text()
    server = Mosquitto(workdir=tmp_path / "mosquitto", extra_conf=conf)
    server.start()

    def as_(user: str) -> Probe:
        pw = (secrets / "clients" / user / "password").read_text().strip()
        return Probe(server.port, username=user, password=pw)

    a_cmd, b_cmd = cmds.command_topic(SITE, "gw-a"), cmds.command_topic(SITE, "gw-b")
    try:
        with (connected(as_(f"{SITE}.gw-a")) as gw_a, connected(as_(f"{SITE}.gw-b")) as gw_b,
              connected(as_("api")) as api, connected(as_("ingest")) as ingest,
              connected(as_("rules")) as rules):
            assert not gw_a.subscribe(a_cmd)[0].is_failure
            gw_a.subscribe(b_cmd)  # granted or not, the broker must not deliver gw-b's
            api.subscribe(cmds.result_topic(SITE, "gw-a"))
            gw_a.publish(a_cmd, b"gw-a commanding itself")
            gw_b.publish(a_cmd, b"gw-b commanding gw-a")
            ingest.publish(a_cmd, b"ingest commanding")
            rules.publish(a_cmd, b"rules commanding")
            api.publish(b_cmd, b"for gw-b")
            api.publish(a_cmd, b"the api's command")
            gw_a.wait_for(b"the api's command")
            gw_b.subscribe(b_cmd)
            api.publish(b_cmd, b"for gw-b, again")
            gw_b.wait_for(b"for gw-b, again")  # gw-b reads its own...
            gw_a.subscribe(a_cmd)  # a round trip: flushes anything still queued for gw-a
            assert [p for _, p in gw_a.received] == [b"the api's command"]  # ...gw-a none
            gw_a.publish(cmds.result_topic(SITE, "gw-a"), b"gw-a's result")
            api.wait_for(b"gw-a's result")
    finally:
        server.stop()


# --------------------------------------------------------------------------- Modbus TCP


async def test_write_over_modbus_tcp_to_pymodbus_and_its_refusals() -> None:
    """The same write path over MBAP against pymodbus' own server (an independent slave):
    FC 16 taken and read back; half a float or a register that is no setting refused by
    the device with exception 2, and reported as failed."""
    from enmon.localrun import free_port
    from firmware_sim.modbus_tcp import ModbusMeterServer
    from gateway.bus import Bus, BusDevice, Timing
    from gateway.drivers import ModbusDriver
    from gateway.transport import TcpLink

    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    port = free_port()
    async with ModbusMeterServer(sdm, lambda _t: {"voltage_l1_v": 230.0}, port=port,
                                 settings={"demand_period_min": 60.0}):
        link = TcpLink("127.0.0.1", port)
        bus = Bus("tcp", link, [])
        t = cmds.Target(bus, "main", sdm, 1, "tcp", Timing(timeout_s=1), frozenset())
        try:
            back, value = await cmds.execute(t, "demand_period_min",
                                             cmds.register_words(sdm, "demand_period_min", "30"))
            assert (back, value) == ([0x41F0, 0x0000], 30.0)
            # a poll beside it still reads the live quantity
            reading = await bus.poll_device(BusDevice(
                ModbusDriver("main", sdm, 1, framing="tcp", quantities=["voltage_l1_v"])))
            assert reading.values == {"voltage_l1_v": 230.0}
            # a profile that (wrongly) declares half of the float: the meter refuses it
            point = sdm.writable["demand_period_min"].model_copy(update={"type": "u16"})
            half = sdm.model_copy(update={"writable": {"demand_period_min": point}})
            t_half = cmds.Target(bus, "main", half, 1, "tcp", Timing(timeout_s=1), frozenset())
            with pytest.raises(cmds.Refused) as r:
                await cmds.execute(t_half, "demand_period_min", [0x4170])
            assert r.value.reason == "device_exception" and "exception 2" in r.value.detail
        finally:
            await bus.close()
