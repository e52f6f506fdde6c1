"""Key energy-using unit statistics against worked examples computed by hand.

One day (2026-11-03, Asia/Shanghai) of a small factory: 1000 kWh of electricity,
500 m³ of natural gas, 20 t of low-pressure steam, 10 t of raw coal (hand-kept ledger)
and 25 t of hot metal (hand-kept ledger), with a GB 21256-2013 blast-furnace quota.

By hand, kgce:
    electricity  1000 × 0.1229 = 122.9 (当量值)   1000 × 0.28078 = 280.78 (等价值, DB31/T 783)
    gas           500 × 1.2143 = 607.15
    steam          20 × 128.6  = 2572
    coal           10 × 714.3  = 7143
    calorific  Σ = 10 445.05 kgce = 10.44505 tce
    equivalent Σ = 10 602.93 kgce = 10.60293 tce
    hot metal: 10 445.05 / 25 t = 417.802 kgce/t ≤ 435 (within the limit value)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from energy import keyunit
from energy.accounting import Reading
from energy.site import KeyUnitQuality, Site

DAY = keyunit.period("day", "2026-11-03", "Asia/Shanghai")
H = 3_600_000


def site(**quality: float) -> Site:
    meter = {"gateway": "gw", "building_total": True}
    return Site.model_validate({
        "site": "steelworks", "buildings": [{"id": "plant", "floor_area_m2": 10_000, "meters": [
            {"id": "e1", "device": "e1", "energy_type": "electricity", "poll_interval_s": 3600,
             **meter},
            {"id": "g1", "device": "g1", "energy_type": "gas", "poll_interval_s": 3600, **meter},
            {"id": "s1", "device": "s1", "energy_type": "steam", "poll_interval_s": 3600,
             **meter},
            {"id": "coal", "device": "coal", "energy_type": "coal", "quantity": "coal_mass_t",
             "poll_interval_s": 86400, "gateway": "manual"},
            {"id": "iron", "device": "iron", "energy_type": "other",
             "quantity": "product_output_t", "poll_interval_s": 86400, "gateway": "manual"},
        ]}],
        "key_units": [{"code": "91310000TEST0001", "name": "示例钢铁厂",
                       "sources": [{"meter": m} for m in ("e1", "g1", "s1", "coal")],
                       "products": [{"code": "hot_metal", "name": "铁水", "output_meter": "iron",
                                     "quota": "gb21256/blast_furnace"}],
                       "quality": quality}],
    })


def hourly(per_day: float, start: float, p: keyunit.Period = DAY) -> list[Reading]:
    n = (p.end - p.start) // H
    return [Reading(p.start + i * H, start + per_day * i / 24) for i in range(n + 1)]


def daily(per_day: float, start: float, p: keyunit.Period = DAY) -> list[Reading]:
    n = (p.end - p.start) // (24 * H)
    return [Reading(p.start + i * 24 * H, start + per_day * i) for i in range(n + 1)]


def readings(output_per_day: float = 25.0, p: keyunit.Period = DAY) -> dict[str, list[Reading]]:
    return {"e1": hourly(1000, 5000, p), "g1": hourly(500, 100, p), "s1": hourly(20, 7, p),
            "coal": daily(10, 300, p), "iron": daily(output_per_day, 40, p)}


def by_code(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    inds = doc["indicators"]
    assert isinstance(inds, list)
    return {i["code"]: i for i in inds}


def test_day_on_both_bases_with_unit_product_energy_against_its_quota() -> None:
    s = site()
    ku = s.key_units[0]
    stats = keyunit.statistics(s, ku, readings(), DAY)
    assert stats.tce["calorific"] == pytest.approx(10.44505, abs=1e-9)
    assert stats.tce["equivalent"] == pytest.approx(10.60293, abs=1e-9)
    (iron,) = stats.products
    assert iron.output_t == pytest.approx(25.0)
    assert iron.basis == "calorific"  # GB 21256-2013 limits are on electricity's 当量值
    assert iron.unit_energy_kgce_t == pytest.approx(417.802)
    assert iron.quota is not None and iron.quota.value == 435 and iron.within_quota is True
    doc = keyunit.document(ku, stats, generated_at_ms=1_793_000_000_000)
    assert doc["schema"] == "enmon.keyunit/1"
    assert doc["unit"] == {"code": "91310000TEST0001", "name": "示例钢铁厂"}
    assert (doc["kind"], doc["period"]) == ("day", "2026-11-03")
    assert doc["stat_time"] == "2026-11-03T00:00:00+08:00"
    assert doc["generated_at"] == 1_793_000_000_000
    ind = by_code(doc)
    assert ind["comprehensive_energy.equivalent"]["basis"] == "equivalent"
    assert ind["comprehensive_energy.equivalent"]["unit"] == "tce"
    assert ind["comprehensive_energy.calorific"]["value"] == pytest.approx(10.44505)
    assert ind["energy.electricity"]["value"] == pytest.approx(1000)
    assert ind["energy.electricity"]["unit"] == "kWh"
    assert ind["energy.gas"]["value"] == pytest.approx(500)
    assert ind["energy.steam"]["value"] == pytest.approx(20)
    assert (ind["energy.coal"]["value"], ind["energy.coal"]["unit"]) == (pytest.approx(10), "t")
    assert "一次能源" in str(ind["energy.coal"]["name"])
    assert "二次能源" in str(ind["energy.steam"]["name"])
    assert ind["output.hot_metal"]["value"] == pytest.approx(25)
    assert ind["unit_energy.hot_metal"]["value"] == pytest.approx(417.802)
    assert ind["unit_energy_quota.hot_metal"]["value"] == 435
    assert doc["quality"]["ok"] is True


def test_over_quota_when_output_falls() -> None:
    s = site()
    stats = keyunit.statistics(s, s.key_units[0], readings(output_per_day=20.0), DAY)
    (iron,) = stats.products
    assert iron.unit_energy_kgce_t == pytest.approx(522.2525)
    assert iron.within_quota is False


def test_completeness_passes_and_fails_at_ninety_percent() -> None:
    s = site()
    ku = s.key_units[0]
    ok = keyunit.statistics(s, ku, readings(), DAY).quality["completeness"]
    assert ok["value"] == 1.0 and ok["ok"] is True
    gappy = readings()
    # ten hourly electricity readings lost: 64 of 74 expected (24+24+24+1+1) = 86.5 %
    gappy["e1"] = [r for i, r in enumerate(gappy["e1"]) if not 5 <= i < 15]
    stats = keyunit.statistics(s, ku, gappy, DAY)
    bad = stats.quality["completeness"]
    assert bad["value"] == pytest.approx(64 / 74)
    assert bad["ok"] is False and stats.quality["ok"] is False
    assert bad["meters"]["e1"] == pytest.approx(14 / 24)
    # the counter still carries the energy of the gap
    assert stats.tce["calorific"] == pytest.approx(10.44505)
    # the threshold is configurable
    relaxed = site(completeness_min=0.85)
    assert keyunit.statistics(relaxed, relaxed.key_units[0], gappy,
                              DAY).quality["completeness"]["ok"] is True


def test_days_sum_to_the_month_within_five_percent() -> None:
    s = site()
    ku = s.key_units[0]
    month = keyunit.period("month", "2026-11", "Asia/Shanghai")
    rs = readings(p=month)
    days = keyunit.days_of(month, "Asia/Shanghai")
    assert len(days) == 30 and days[0].start == month.start and days[-1].end == month.end
    per_day = [keyunit.statistics(s, ku, rs, d).tce for d in days]
    daily = {b: [t[b] for t in per_day] for b in keyunit.BASES}
    stats = keyunit.statistics(s, ku, rs, month, daily_tce=daily)
    assert stats.tce["calorific"] == pytest.approx(30 * 10.44505)
    dm = stats.quality["day_month"]
    assert dm["ok"] is True and dm["calorific"]["deviation"] == pytest.approx(0, abs=1e-12)
    assert stats.quality["completeness"]["ok"] is True
    # two days reported short: 28 × 10.44505 vs 30 × 10.44505 is 6.7 % off
    short = {b: v[:28] for b, v in daily.items()}
    bad = keyunit.statistics(s, ku, rs, month, daily_tce=short).quality
    assert bad["day_month"]["calorific"]["deviation"] == pytest.approx(2 / 30)
    assert bad["day_month"]["ok"] is False and bad["ok"] is False
    rules = KeyUnitQuality()
    assert keyunit.day_month([96.0], 100.0, rules)["ok"] is True    # 4 %
    assert keyunit.day_month([94.0], 100.0, rules)["ok"] is False   # 6 %


def test_stamps_day_at_midnight_one_minute_month_at_the_first_one_day() -> None:
    rules = KeyUnitQuality()
    month = keyunit.period("month", "2026-11", "Asia/Shanghai")
    assert month.stat_time == "2026-11-01T00:00:00+08:00"
    assert keyunit.stamp(DAY, DAY.start + 59_000, rules)["ok"] is True
    assert keyunit.stamp(DAY, DAY.start - 59_000, rules)["ok"] is True
    assert keyunit.stamp(DAY, DAY.start + 61_000, rules)["ok"] is False
    assert keyunit.stamp(month, month.start + 23 * H, rules)["ok"] is True
    assert keyunit.stamp(month, month.start + 25 * H, rules)["ok"] is False
    s = site()
    late = keyunit.statistics(s, s.key_units[0], readings(), DAY, stamped_ms=DAY.start + 120_000)
    assert late.quality["stamp"]["ok"] is False and late.quality["ok"] is False


def test_product_quotas_are_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "data"
    shutil.copytree(keyunit.refdata.DATA_DIR, own)
    data = yaml.safe_load((own / "product_quotas.yaml").read_text())
    data["quotas"]["gb21256/blast_furnace"].update(value=400, mark="user", source="our permit")
    (own / "product_quotas.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    monkeypatch.setenv("ENMON_RULES_DATA", str(own))
    keyunit.product_quotas.cache_clear()
    try:
        s = site()
        (iron,) = keyunit.statistics(s, s.key_units[0], readings(), DAY).products
        assert iron.quota is not None and iron.quota.value == 400 and iron.quota.mark == "user"
        assert iron.within_quota is False
    finally:
        keyunit.product_quotas.cache_clear()


def test_every_shipped_product_quota_names_its_source_and_mark() -> None:
    for key, q in keyunit.product_quotas().quotas.items():
        assert q.source and q.mark in ("R", "U", "I", "R/I", "R/U", "user"), key
