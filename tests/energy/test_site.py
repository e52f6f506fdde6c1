"""Site files: the sample loads; mistakes are reported with file, key and a fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from energy import refdata
from energy.accounting import to_kgce
from energy.site import load_site
from enmon.errors import ConfigError

SAMPLE = Path(__file__).parents[2] / "rules" / "sample-site.yaml"


def test_sample_site_loads() -> None:
    s = load_site(SAMPLE)
    b = s.building("office-1")
    assert b.meters[0].counter == "active_energy_import_kwh"
    assert b.quota is not None and b.quota.measure == "kWh" and b.quota.basis == "area"
    assert s.building("boiler-house").boilers[0].rated_kw == pytest.approx(2800.0)


def _broken(tmp_path: Path, edit: object) -> Path:
    data = yaml.safe_load(SAMPLE.read_text())
    edit(data)  # type: ignore[operator]
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return p


def test_bad_sub_item_code_names_the_key(tmp_path: Path) -> None:
    def edit(d: dict) -> None:  # type: ignore[type-arg]
        d["buildings"][0]["meters"][0]["category"] = "1A00"
    with pytest.raises(ConfigError) as e:
        load_site(_broken(tmp_path, edit))
    assert e.value.key == "buildings.0.meters.0.category"
    assert "five-character sub-item code" in e.value.fix


def test_virtual_meter_with_unknown_input(tmp_path: Path) -> None:
    def edit(d: dict) -> None:  # type: ignore[type-arg]
        d["buildings"][0]["virtual_meters"][0]["minus"] = ["office-1-hvca"]
    with pytest.raises(ConfigError, match="unknown meter 'office-1-hvca'"):
        load_site(_broken(tmp_path, edit))


def test_quota_typo_suggests_the_shipped_keys(tmp_path: Path) -> None:
    def edit(d: dict) -> None:  # type: ignore[type-arg]
        d["buildings"][0]["quota"]["ref"] = "gbt51161/office/A-comercial/hot_summer_cold_winter"
    with pytest.raises(ConfigError) as e:
        load_site(_broken(tmp_path, edit))
    assert "gbt51161/office/A-commercial/hot_summer_cold_winter" in str(e.value)


def test_reference_data_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "data"
    shutil.copytree(refdata.DATA_DIR, own)
    text = (own / "factors.yaml").read_text().replace("value: 0.1229", "value: 0.123")
    (own / "factors.yaml").write_text(text)
    monkeypatch.setenv("ENMON_RULES_DATA", str(own))
    refdata.factors.cache_clear()
    try:
        assert to_kgce(1000, "electricity").value == pytest.approx(123.0)
    finally:
        monkeypatch.delenv("ENMON_RULES_DATA")
        refdata.factors.cache_clear()
    assert to_kgce(1000, "electricity").value == pytest.approx(122.9)
