"""What a deployer types: ``check``, ``probe``, ``scan``, ``profiles`` — real links, real output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from firmware_sim.dlt645_meter import Dlt645Server, Meter
from firmware_sim.faults import Faults
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from gateway import library
from gateway.cli import app

runner = CliRunner()


def write(tmp: Path, devices: list[dict[str, object]]) -> Path:
    p = tmp / "gw.yaml"
    p.write_text(yaml.safe_dump({"site": "s", "gateway": "g", "state_dir": str(tmp / "st"),
                                 "devices": devices}))
    return p


def test_profiles_lists_every_protocol() -> None:
    r = runner.invoke(app, ["profiles"])
    assert r.exit_code == 0, r.output
    for name in ("eastron-sdm630", "chint-dtsu666-dlt645", "generic-ascii-flue-gas"):
        assert name in r.output
    assert "dlt645" in r.output and "serial_line" in r.output


def test_check_ok_counts_transactions(tmp_path: Path) -> None:
    cfg = write(tmp_path, [
        {"name": "a", "profile": "acrel-adl400", "unit_id": 3,
         "transport": {"type": "serial", "port": "/dev/ttyUSB0"}},
        {"name": "b", "profile": "chint-dtsu666-dlt645", "address": "000012345678",
         "transport": {"type": "serial", "port": "/dev/ttyUSB0"}},
    ])
    r = runner.invoke(app, ["check", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "a: Acrel" in r.output and "transactions" in r.output and "OK (2 devices)" in r.output


@pytest.mark.parametrize(("device", "key", "fix"), [
    ({"name": "b", "profile": "chint-dtsu666-dlt645",
      "transport": {"type": "serial", "port": "/dev/ttyUSB0"}},
     "devices.0.address", "12-digit meter address"),
    ({"name": "b", "profile": "chint-dtsu666-dlt645", "address": "000012345678",
      "transport": {"type": "tcp", "host": "10.0.0.5"}},
     "devices.0.transport.type", "rtu_over_tcp"),
    ({"name": "c", "profile": "no-such-meter", "transport": {"type": "tcp", "host": "h"}},
     "devices.0.profile", "enmon gateway profiles"),
    ({"name": "c", "profile": "eastron-sdm630", "unit_id": 300,
      "transport": {"type": "tcp", "host": "h"}},
     "devices.0.unit_id", "1..247"),
    ({"name": "c", "profile": "eastron-sdm630", "quantities": ["voltage_l9_v"],
      "transport": {"type": "tcp", "host": "h"}},
     "devices.0.quantities.0", "one of:"),
])
def test_check_errors_name_file_key_and_fix(tmp_path: Path, device: dict[str, object], key: str,
                                            fix: str) -> None:
    cfg = write(tmp_path, [device])
    r = runner.invoke(app, ["check", "-c", str(cfg)])
    assert r.exit_code != 0
    text = r.output + str(r.exception or "")
    assert str(cfg) in text and key in text and "fix:" in text and fix in text, text


def test_check_refuses_two_line_settings_on_one_port(tmp_path: Path) -> None:
    cfg = write(tmp_path, [
        {"name": "a", "profile": "acrel-adl400", "unit_id": 1,
         "transport": {"type": "serial", "port": "/dev/ttyUSB0", "baud": 9600}},
        {"name": "b", "profile": "acrel-adl400", "unit_id": 2,
         "transport": {"type": "serial", "port": "/dev/ttyUSB0", "baud": 2400}},
    ])
    r = runner.invoke(app, ["check", "-c", str(cfg)])
    assert r.exit_code != 0
    assert "one port has one line setting" in r.output + str(r.exception)


def test_probe_prints_a_table_over_a_pty(tmp_path: Path) -> None:
    adl = library.load("acrel-adl400")
    srv: LineServer = ModbusSlaveServer({3: Unit(adl, {"voltage_l1_v": 231.2,  # type: ignore[arg-type]
                                                       "active_energy_import_kwh": 5.5})}).start()
    try:
        r = runner.invoke(app, ["probe", "--profile", "acrel-adl400",
                                "--serial", srv.device, "--unit", "3"])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    assert "voltage_l1_v" in r.output and "231.2" in r.output and "5.5" in r.output
    assert "transactions" in r.output


def test_probe_from_config_shows_failed_reads_as_empty(tmp_path: Path) -> None:
    dlt = library.load("chint-dtsu666-dlt645")
    srv = Dlt645Server({"000000000042": Meter(dlt, {"voltage_l1_v": 229.5})}).start()  # type: ignore[arg-type]
    cfg = write(tmp_path, [{"name": "m42", "profile": "chint-dtsu666-dlt645",
                            "address": "000000000042",
                            "transport": {"type": "serial", "port": srv.device}}])
    try:
        r = runner.invoke(app, ["probe", "-c", str(cfg), "m42"])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    assert "229.5" in r.output and "—" in r.output  # missing values are blank, never 0
    assert "no requested data" in r.output


def test_scan_finds_the_units_on_a_bus() -> None:
    sdm = library.load("eastron-sdm630")
    srv = ModbusSlaveServer({u: Unit(sdm, {}) for u in (2, 5)}  # type: ignore[arg-type]
                            | {7: Unit(sdm, {}, Faults(dead=True))}).start()  # type: ignore[arg-type]
    try:
        r = runner.invoke(app, ["scan", "--serial", srv.device, "--units", "1-8",
                                "--function", "input", "--timeout", "0.1"])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    found = [line.split()[0] for line in r.output.splitlines() if "answered" in line]
    assert found == ["2", "5"]
    assert "2 found" in r.output


def test_scan_dlt645_reads_the_meter_address() -> None:
    dlt = library.load("chint-dtsu666-dlt645")
    srv = Dlt645Server({"000012345678": Meter(dlt, {})}).start()  # type: ignore[arg-type]
    try:
        r = runner.invoke(app, ["scan", "--serial", srv.device, "--protocol", "dlt645"])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    assert "000012345678" in r.output


def test_scan_does_not_count_exception_answers_and_shows_progress() -> None:
    # unit 2 answers every request with 0x0B (a gateway's "target device failed to
    # respond"), unit 4 with 0x02 (illegal data address): neither is a meter found
    sdm = library.load("eastron-sdm630")
    srv = ModbusSlaveServer({
        2: Unit(sdm, {}, Faults(exception=1.0, exception_code=0x0B)),  # type: ignore[arg-type]
        4: Unit(sdm, {}, Faults(exception=1.0, exception_code=0x02)),  # type: ignore[arg-type]
        5: Unit(sdm, {})}).start()  # type: ignore[arg-type]
    try:
        r = runner.invoke(app, ["scan", "--serial", srv.device, "--units", "1-6",
                                "--function", "input", "--timeout", "0.1"])
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    assert "1 found" in r.output
    assert [line.split()[0] for line in r.output.splitlines() if "answered" in line] == ["5"]
    noted = {line.split()[0]: line for line in r.output.splitlines() if "not counted" in line}
    assert sorted(noted) == ["2", "4"]
    assert "0x0b (gateway" in noted["2"]
    assert "(6/6)" in r.output  # progress on a serial bus


def test_probe_shows_a_counter_to_the_meters_resolution() -> None:
    # SDM630 holds its counters as 32-bit floats: 123456.7 is stored as 123456.703125
    sdm = library.load("eastron-sdm630")
    srv = ModbusSlaveServer({1: Unit(sdm, {"active_energy_import_kwh": 123456.7,  # type: ignore[arg-type]
                                           "voltage_l1_v": 230.1})}).start()
    try:
        r = runner.invoke(app, ["probe", "--profile", "eastron-sdm630", "--serial", srv.device,
                                "--unit", "1"], env={"COLUMNS": "200"})
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    row = next(line for line in r.output.splitlines() if "active_energy_import_kwh" in line)
    assert "123456.7 " in row and "123457" not in row and "123456.703" not in row


def test_probe_raw_prints_frames_and_registers() -> None:
    adl = library.load("acrel-adl400")
    srv = ModbusSlaveServer({3: Unit(adl, {"voltage_l1_v": 231.2})}).start()  # type: ignore[arg-type]
    try:
        r = runner.invoke(app, ["probe", "--profile", "acrel-adl400", "--serial", srv.device,
                                "--unit", "3", "--raw"], env={"COLUMNS": "200"})
    finally:
        srv.stop()
    assert r.exit_code == 0, r.output
    tx = [line for line in r.output.splitlines() if line.strip().startswith("TX 03 0")]
    rx = [line for line in r.output.splitlines() if line.strip().startswith("RX 03 0")]
    regs = [line for line in r.output.splitlines() if line.strip().startswith("registers ")]
    assert tx and len(rx) == len(tx) and regs
    assert all(len(w) == 4 for w in regs[0].split()[1:])  # 16-bit words in hex


def test_command_signs_a_time_sync_and_refuses_misfits(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from gateway import commands as cmds

    monkeypatch.setenv("ENMON_TEST_CMD_KEY", "k" * 32)
    base = ["command", "hosp-a/gw-01", "old-meter", "--key-id", "ops-1",
            "--key-env", "ENMON_TEST_CMD_KEY", "--dry-run"]
    r = runner.invoke(app, [*base, "--action", "time_sync"])
    assert r.exit_code == 0, r.output
    topic, _, body = r.output.strip().partition(" ")
    msg = json.loads(body)
    assert topic == cmds.command_topic("hosp-a", "gw-01")
    assert (msg["action"], msg["target"], msg["value"]) == ("time_sync", "time_sync", "now")
    assert msg["signature"] == cmds.signature(b"k" * 32, msg)
    assert "k" * 32 not in r.output
    for args, says in (([*base, "--action", "time_sync", "clock", "1"], "takes no TARGET"),
                       ([*base, "demand_period_min"], "needs TARGET and VALUE"),
                       ([*base, "--action", "reboot"], "one of time_sync, write")):
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and says in bad.output, bad.output
