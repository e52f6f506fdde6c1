"""Alert summaries are data, written in the reader's language with the same figures.

Every kind of alert the engine raises is driven through the real engine with plain data,
and its notification — as the outbox stores it, JSON and back — is written in zh-CN and
in English by the notifiers' own ``text``. The English text stored in ``summary`` is the
one the logs, Grafana and older readers keep; a record without ``summary_id`` (stored
before summaries were data) reads as it was written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from energy import balance as energy_balance
from energy.quota import BudgetStatus, QuotaStatus
from energy.site import Site
from enmon import i18n, summaries
from enmon.wire import Batch, DeviceMeta, Sample
from rules import quality
from rules.channels import message, text
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook, Outcome
from rules.service import alert_line

ROOT = Path(__file__).resolve().parents[2]
S, H = 1000, 3_600_000
SITE = Site.model_validate({"site": "campus", "timezone": "Asia/Shanghai", "buildings": [{
    "id": "office-1", "floor_area_m2": 1000,
    "meters": [{"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
                "max_rate_per_h": 100},
               {"id": "b1-gas", "gateway": "gw-02", "device": "b1-gas", "energy_type": "gas"},
               {"id": "b1-steam", "gateway": "gw-02", "device": "b1-steam",
                "energy_type": "steam"}],
    "boilers": [{"id": "b1", "kind": "steam", "fuel": "natural_gas", "rated_t_h": 4,
                 "ncv_mj_per_unit": 35.588, "fuel_meter": "b1-gas", "output_meter": "b1-steam",
                 "steam_gauge_mpa": 0.8, "feedwater_temp_c": 20,
                 "instruments": {"gateway": "gw-02", "device": "b1-ctl"}}]}]})


def engine() -> Engine:
    cfg = RulesConfig.model_validate({
        "quality": {"meter_offline_s": 60, "flatline_s": 120, "gateway_offline_grace_s": 10,
                    "flatline_quantities": ["voltage_l1_v"], "completeness_target": 0.9},
        "thresholds": [{"name": "peak_demand", "quantity": "active_power_kw", "above": 800,
                        "clear_below": 750}]})
    return Engine(cfg, [SITE], AlertBook(), started_ms=0)


def batch(ts: int, **values: float) -> Batch:
    return Batch("campus", "gw-01", ts, ts, {"main": DeviceMeta("office-1", "01000",
                                                                "electricity")},
                 [Sample("main", ts, dict(values))])


def note(out: Outcome, rule: str, kind: str = "firing") -> dict[str, Any]:
    """The notification as the outbox stores it (JSON) and a channel reads it back."""
    n = next(n for n in out.notifications if n.rule == rule and n.kind == kind)
    stored: dict[str, Any] = json.loads(json.dumps(message(n, tz="Asia/Shanghai"),
                                                   ensure_ascii=False))
    return stored


def both(n: dict[str, Any]) -> tuple[str, str]:
    """The summary line of the notification in zh-CN and in English."""
    zh = summaries.text_of(n, "zh-CN", tz=n["tz"])
    en = summaries.text_of(n, "en", tz=n["tz"])
    assert zh in text(n, "zh-CN") and en in text(n, "en")  # what the channels send
    assert en == n["summary"]  # the stored English is the English rendering
    return zh, en


def test_threshold_above_and_back_below() -> None:
    e = engine()
    n = note(e.on_batch(batch(10 * S, active_power_kw=812.5)), "peak_demand")
    assert both(n) == ("main 的有功功率为 812.50 kW（限值 800 kW）",
                       "active power of main is 812.50 kW (limit 800 kW)")
    n = note(e.on_batch(batch(20 * S, active_power_kw=700.25)), "peak_demand", "resolved")
    assert both(n) == ("main 的有功功率已回落至 700.25 kW（低于 750 kW）",
                       "active power of main back to 700.25 kW (below 750 kW)")


def test_counter_backwards_and_implausible_jump() -> None:
    e = engine()
    e.on_batch(batch(0, active_energy_import_kwh=5000.0))
    n = note(e.on_batch(batch(60 * S, active_energy_import_kwh=4000.0)), "counter_backwards")
    assert both(n) == (
        "main 的正向有功电能从 5000 kWh 回退到 4000 kWh",
        "active energy (import) of main went from 5000 kWh to 4000 kWh")
    e = engine()
    e.on_batch(batch(0, active_energy_import_kwh=100.0))
    n = note(e.on_batch(batch(15 * 60 * S, active_energy_import_kwh=150.0)), "implausible_jump")
    assert both(n) == (
        "main 的正向有功电能在 15.0 分钟内增加 50 kWh（200.0 kWh/h，超过 100 kWh/h）",
        "active energy (import) of main rose 50 kWh in 15.0 min (200.0 kWh/h > 100 kWh/h)")


def test_flatline_meter_and_gateway_offline_durations_in_words() -> None:
    e = engine()
    out = Outcome()
    for t in (0, 60, 130):
        out.extend(e.on_batch(batch(t * S, voltage_l1_v=230.0)))
    assert both(note(out, "flatline")) == ("main 的A相电压停在 230 V 已 2分10秒",
                                           "voltage L1 of main stuck at 230 V for 2 min 10 s")
    e = engine()
    e.on_batch(batch(10 * S, active_energy_import_kwh=1.0))
    n = note(e.tick(10 * S + 3 * H + 5 * 60 * S), "meter_offline")
    assert both(n) == ("main 已 3小时5分钟 无读数", "no reading from main for 3 h 5 min")
    e = engine()
    e.on_status("campus", "gw-01", "offline", 0)
    n = note(e.tick(15 * 60 * S), "gateway_offline")
    assert both(n) == ("网关 gw-01 已离线 15分钟", "gateway gw-01 offline for 15 min")


def test_completeness_finding() -> None:
    e = engine()
    f = quality.completeness(40, window_ms=24 * H, interval_ms=15 * 60 * S, target=0.9)
    n = note(e.on_finding(("campus", "gw-01", "main"), "completeness", f, 0), "completeness")
    assert both(n) == ("收到 40/96 条读数（41.7%，低于目标 90%）",
                       "40/96 readings (41.7% < 90%)")


def test_quota_and_budget() -> None:
    e = engine()
    st = QuotaStatus("early_warning", allowance=50_000.0, ytd=36_300.0, pro_rated=25_067.0,
                     projected=72_405.2, fraction=0.5013)
    n = note(e.on_quota("campus", "office-1", st, "kWh", 0), "quota_early_warning")
    assert both(n) == (
        "本年累计 36,300 kWh，全年限额 50,000 kWh（按时间进度应用 50%），预计全年 72,405 kWh",
        "year-to-date 36,300 kWh of 50,000 kWh (50% of the year's use due), "
        "projected 72,405 kWh")
    n = note(e.on_budget("campus", "office-1", "annual", BudgetStatus(
        "exhausted", used=36_300.0, budget=30_000.0, used_ratio=1.21), "kWh", 0), "budget")
    assert both(n) == ("用能预算 annual：已用 36,300 kWh，预算 30,000 kWh（121%）",
                       "budget annual: 36,300 kWh of 30,000 kWh used (121%)")


def test_boiler_efficiency_both_methods_and_implausible() -> None:
    e = engine()
    out = e.on_boiler("campus", "office-1", "b1", 90.04, 92.0, "direct method …", 0,
                      indirect=89.0, qualified_h=20.0)
    assert both(note(out, "boiler_efficiency")) == (
        "锅炉 b1 热效率 90.0 %，低于限值 92 %（正平衡法，统计 24 小时，其中负荷高于 30 % 的运行 "
        "20.0 小时；限值依据GB 24500-2020 三级；反平衡（热损失法）89.0 %）",
        "boiler b1 efficiency 90.0 % below the 92 % limit (direct method over 24 h, 20.0 h "
        "above 30 % load; limit from GB 24500-2020 grade 3; indirect (heat-loss) method "
        "89.0 %)")
    assert both(note(out, "boiler_efficiency_indirect")) == (
        "锅炉 b1 反平衡（热损失法）热效率 89.0 %，低于限值 92 %",
        "boiler b1 indirect (heat-loss) efficiency 89.0 % below the 92 % limit")
    out = engine().on_boiler("campus", "office-1", "b1", 104.0, 92.0, "", 0, qualified_h=20.0)
    zh, en = both(note(out, "boiler_implausible"))
    assert zh.startswith("锅炉 b1：正平衡法热效率 104.0 % 超过物理上限 100 % [")
    assert "不作效率判定：请检查燃料表 b1-gas（gw-02/b1-gas gas_volume_m3）、产出表 " \
           "b1-steam（" in zh
    assert "ncv_mj_per_unit 35.588（natural_gas）" in zh
    assert en.startswith("boiler b1: direct-method efficiency 104.0 % is above the physical "
                         "ceiling 100 % [")
    assert "check the fuel meter b1-gas (gw-02/b1-gas gas_volume_m3), the output meter " \
           "b1-steam (gw-02/b1-steam steam_mass_t) and ncv_mj_per_unit 35.588 (natural_gas)" in en


def test_submeter_balance_days_in_site_time() -> None:
    e = engine()
    day = 1_782_662_400_000  # 2026-06-29 00:00 +08:00 (2026-06-28 16:00 UTC)
    days = [energy_balance.Balance(day, 1000.0, 1060.0, 0.06, "deviation"),
            energy_balance.Balance(day + 24 * H, 1000.0, 950.0, -0.05, "ok")]
    topo = energy_balance.Topology(("main",), ("light", "hvac", "lifts"))
    n = note(e.on_balance("campus", "office-1", topo, days, 0), "submeter_balance")
    assert both(n) == (
        "建筑 office-1：分项表（light、hvac、lifts）与总表（main）之差超过 5%，2 天中有 1 天；"
        "2026-06-29：分项合计 1,060.0，总表 1,000.0 kWh（+6.0%）",
        "building office-1: sub-item meters (light, hvac, lifts) and main meter (main) differ "
        "by more than 5% on 1 of 2 days; 2026-06-29: sub-items 1,060.0 vs main 1,000.0 kWh "
        "(+6.0%)")


def test_rules_degraded_with_both_reasons() -> None:
    e = engine()
    out = e.on_self(mqtt_down_s=7_260.0, failed_passes=3, now=0)
    assert both(note(out, "rules_degraded")) == (
        "已 2小时1分钟 连不上 MQTT 服务器；定时检查已连续 3 次失败（InfluxDB）",
        "no broker connection for 2 h 1 min; 3 scheduled passes in a row failed (InfluxDB)")
    n = note(e.on_self(mqtt_down_s=0.0, failed_passes=0, now=1), "rules_degraded", "resolved")
    assert both(n) == ("规则引擎已恢复接收和查询数据", "the rule engine hears and reads again")


def test_the_alert_history_row_carries_the_summary_as_data() -> None:
    out = engine().on_batch(batch(10 * S, active_power_kw=812.5))
    c = next(c for c in out.changes if c.new == "firing")
    from dataclasses import asdict

    row = alert_line(asdict(c))
    assert 'summary="active_power_kw' not in row  # English names the quantity too
    assert 'summary_id="threshold_above"' in row
    args = re.search(r'summary_args="((?:[^"\\]|\\.)*)"', row)
    assert args is not None
    stored = json.loads(args.group(1).replace('\\"', '"'))
    assert summaries.text_of({"summary_id": "threshold_above", "summary_args": json.dumps(stored)},
                             "zh-CN") == "main 的有功功率为 812.50 kW（限值 800 kW）"


def test_old_records_and_unknown_templates_read_as_stored() -> None:
    assert summaries.text_of({"summary": "no reading from m1 for 930 s"}, "zh-CN") == (
        "no reading from m1 for 930 s")
    assert summaries.text_of({"summary": "as stored", "summary_id": "from_a_newer_version",
                              "summary_args": {}}, "zh-CN") == "as stored"
    # a state file written before summaries were data loads, and keeps its text
    book = AlertBook.from_dict({"version": 1, "alerts": [{
        "fingerprint": "f", "rule": "meter_offline", "labels": {"site": "campus"},
        "state": "firing", "summary": "no reading from m1 for 930 s"}], "silences": []})
    assert summaries.text_of({"summary": book.alerts["f"].summary,
                              "summary_id": book.alerts["f"].summary_id}, "zh-CN") == (
        "no reading from m1 for 930 s")


def test_durations_in_words() -> None:
    d = summaries.duration
    assert [d(x, "en") for x in (45, 130, 900, 7200, 7500, 3 * 86400 + 4 * 3600)] == [
        "45 s", "2 min 10 s", "15 min", "2 h", "2 h 5 min", "3 d 4 h"]
    assert [d(x, "zh-CN") for x in (45, 900, 7500, 3 * 86400)] == [
        "45秒", "15分钟", "2小时5分钟", "3天"]


def _extracted(files: list[str]) -> set[str]:
    from babel.messages.extract import extract_from_file

    kw = {"N_": None, "_": None, "ngettext": (1, 2)}
    return {msg for f in files for _, msg, _, _ in
            extract_from_file("python", str(ROOT / f), keywords=kw) if isinstance(msg, str)}


@pytest.mark.parametrize("lang", i18n.LANGS)
def test_every_summary_and_name_is_in_the_core_catalog(lang: i18n.Lang) -> None:
    cat = i18n.catalog(lang).messages
    msgids = _extracted(["enmon/summaries.py", "enmon/names.py", "rules/acklink.py"])
    assert sorted(m for m in msgids if (None, m) not in cat) == []
    if lang == "zh-CN":
        neutral = {m for m in msgids if re.fullmatch(r"(%\(\w+\)s)+", m)}
        assert sorted(m for m in msgids - neutral if cat[(None, m)][0] in ("", m)) == []
    for m in msgids:  # placeholders survive translation: a lost one would drop a figure
        got = cat[(None, m)][0] or m
        assert sorted(re.findall(r"%\((\w+)\)s", m)) == sorted(
            re.findall(r"%\((\w+)\)s", got)), m
