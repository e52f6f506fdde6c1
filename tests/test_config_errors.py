"""A deployer's config mistakes come back as one line naming the file, the key and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from enmon.errors import ConfigError
from gateway.config import load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(text)
    return p


BASE = """
site: hosp-a
gateway: gw-01
state_dir: /tmp/x
devices:
  - name: main
    profile: eastron-sdm630
    unit_id: {unit}
    transport: {{type: tcp, host: 127.0.0.1, port: 502}}
"""


def test_out_of_range_value_names_file_key_and_fix(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.format(unit=300))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    err = e.value
    assert err.file == str(p)
    assert err.key == "devices.0.unit_id"
    assert "300" in err.problem
    assert "1..247" in err.fix
    assert str(p) in str(err) and "devices.0.unit_id" in str(err)


def test_typo_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.format(unit=1) + "pol: {interval_s: 5}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.key == "pol"
    assert e.value.fix == "did you mean 'poll'?"


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    p = write(tmp_path, "site: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.key.startswith("line ")


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, ""))


def test_a_good_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE.format(unit=7)))
    assert cfg.devices[0].unit_id == 7 and cfg.poll.interval_s == 10.0


def test_fix_hint_found_inside_a_dict_of_models(tmp_path: Path) -> None:
    """A profile's quantities are a dict keyed by quantity name: the hint of the field
    inside (``address``) must still reach the deployer."""
    from enmon.config import load_model
    from gateway.profile import ModbusProfile

    p = tmp_path / "meter.yaml"
    p.write_text(
        "model: x\nmanufacturer: X\nname: X\nsource: manual table 3\n"
        "quantities:\n  voltage_l1_v: {address: -1}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_model(ModbusProfile, p)
    assert e.value.key == "quantities.voltage_l1_v.address"
    assert "0-based" in e.value.fix


def test_each_error_on_its_own_line_with_its_line_number_and_fix(tmp_path: Path) -> None:
    text = BASE.format(unit=300) + "pol: {interval_s: 5}\n"
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    lines = str(e.value).splitlines()
    assert lines[0] == "2 errors:"
    unit_line = text.splitlines().index("    unit_id: 300") + 1
    pol_line = text.splitlines().index("pol: {interval_s: 5}") + 1
    by_key = {ln.split(": ")[1]: ln for ln in lines[1:]}
    assert by_key["devices.0.unit_id"].startswith(f"{p}:{unit_line}: ")
    assert "1..247" in by_key["devices.0.unit_id"]
    assert by_key["pol"].startswith(f"{p}:{pol_line}: ")
    assert by_key["pol"].endswith("(fix: did you mean 'poll'?)")
    assert "1..247" not in by_key["pol"]  # not the first error's fix


def test_inline_mqtt_password_is_told_where_secrets_go(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.format(unit=1) + "mqtt: {host: 127.0.0.1, password: hunter2}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.key == "mqtt.password"
    assert "password_file or password_env" in e.value.fix
    assert "remove this key" not in str(e.value)
    assert "hunter2" not in str(e.value)  # the secret is not echoed into logs
