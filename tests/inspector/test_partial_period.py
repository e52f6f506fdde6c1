"""A report of a period that has not ended: cut at now, labelled partial, agreeing with the alert.

The simulated days (1–3 October) are reported *as of* the moment they end (4 October
00:00), i.e. October is still running. The rule engine itself (its real scheduler,
reading its own ``energy_daily`` roll-ups from the same influxd) evaluates the quota at
that moment; the report must show the same share of the year due, the same
year-to-date and the same projection. Completeness owes no reading after now, and
consumption reaches the last stored reading, as the roll-ups do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from enmon.influx import InfluxConfig, InfluxQL
from inspector import render
from inspector.report import Report, period_of
from inspector.store import Store, fetch_report
from tests.inspector.conftest import DB, INSPECTOR_TOKEN, MONTH, Loaded, Stack, auth
from tests.support import influx_rows

pytestmark = pytest.mark.slow
SITE = "demo-campus"


def _report_as_of(loaded: Loaded, now_ms: int) -> Report:
    async def go() -> Report:
        store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
        try:
            rep: Report = await fetch_report(store, site=loaded.data.site, period=MONTH,
                                             now_ms=now_ms)
            return rep
        finally:
            await store.close()
    return asyncio.run(go())


def _rule_engine_quota(loaded: Loaded, now_ms: int) -> dict[str, Any]:
    """The QuotaStatus the running rule engine hands to its alerting at ``now_ms``."""
    from enmon.influx import InfluxV1Writer
    from rules.engine import Engine
    from rules.lifecycle import AlertBook
    from rules.scheduled import PassStats, Scheduler
    from stack.month import demo_rules_config

    site = loaded.data.site
    seen: dict[str, Any] = {}
    engine = Engine(demo_rules_config(), [site], AlertBook(), started_ms=loaded.data.start_ms)
    real = engine.on_quota

    def capture(site_id: str, building: str, st: Any, unit: str, now: int) -> Any:
        seen[building] = st
        return real(site_id, building, st, unit, now)

    engine.on_quota = capture  # type: ignore[method-assign]

    async def go() -> None:
        cfg = InfluxConfig(url=loaded.url, database=DB)
        q, w = InfluxQL(cfg), InfluxV1Writer(cfg)
        try:
            await Scheduler(engine, q, w, settle_s=0.0).quotas(site, now_ms, PassStats(site.site))
        finally:
            await q.close()
            await w.close()
    asyncio.run(go())
    return seen


def test_running_month_is_cut_at_now_and_agrees_with_the_rule_engine(loaded: Loaded) -> None:
    now = loaded.data.end_ms  # 4 October 00:00: October has three days behind it
    rep = _report_as_of(loaded, now)
    # the quota: the rule engine's own status at the same moment
    rules = _rule_engine_quota(loaded, now)
    admin = next(b for b in rep.buildings if b.id == "admin")
    q = admin.quota
    assert q is not None and "admin" in rules
    st = rules["admin"]
    assert q.fraction == pytest.approx(st.fraction, rel=1e-12)
    assert q.ytd == pytest.approx(st.ytd, rel=1e-9)
    assert q.allowance == pytest.approx(st.allowance, rel=1e-12)
    assert q.projected is not None and st.projected is not None
    assert q.projected == pytest.approx(st.projected, rel=1e-9)
    # consumption reaches the last stored reading (as the roll-ups do), not the last hour
    first = influx_rows(loaded.url, DB, "SELECT first(active_energy_import_kwh) AS v FROM meter "
                                        "WHERE device = 'admin-main'")[0]["v"]
    last = influx_rows(loaded.url, DB, "SELECT last(active_energy_import_kwh) AS v FROM meter "
                                       f"WHERE device = 'admin-main' AND time < {now}ms")[0]["v"]
    elec = next(e for e in admin.energy if e.energy_type == "electricity")
    assert elec.amount == pytest.approx(last - first, rel=1e-9)
    # completeness owes nothing after now: a meter that reported every poll is complete
    meter_cfg = next(m for b in loaded.data.site.buildings for m in b.meters
                     if m.device == "admin-main")
    main = next(m for m in admin.meters if m.meter == "admin-main")
    stored = influx_rows(loaded.url, DB, "SELECT count(active_energy_import_kwh) AS n FROM meter "
                                         f"WHERE device = 'admin-main' AND time < {now}ms")
    assert main.readings == stored[0]["n"]
    assert main.expected == (now - rep.period.start) // int(meter_cfg.poll_interval_s * 1000)
    assert main.completeness == 1.0

    # and the reader is told: the report names the days it covers
    p = rep.period
    full = period_of(MONTH, "Asia/Shanghai")
    assert p.partial and p.start == full.start and p.end == now and p.full_end == full.end
    d = render.report_dict(rep)
    assert d["partial"] is True and d["end"] == now and d["period_end"] == full.end
    assert d["period_text"] == "10月1日至3日（本月尚未结束）"  # zh-CN, the default language
    html = render.render_html(rep)
    assert "10月1日至3日（本月尚未结束）" in html
    assert render.report_dict(rep, "en")["period_text"] == "1\u2009–\u20093 Oct, partial month"
    assert "1\u2009–\u20093 Oct, partial month" in render.render_html(rep, "en")


def test_api_labels_the_current_month_partial_and_refuses_the_future(stack: Stack) -> None:
    before = int(time.time() * 1000)
    month = time.strftime("%Y-%m", time.gmtime(before / 1000 + 8 * 3600))  # site time
    r = httpx.get(f"{stack.url}/api/v1/sites/{SITE}/reports/{month}",
                  headers=auth(INSPECTOR_TOKEN), timeout=60)
    after = int(time.time() * 1000)
    assert r.status_code == 200, r.text
    body = r.json()
    assert before <= body["end"] <= after
    assert body["partial"] is True and body["period_text"].endswith("（本月尚未结束）")
    assert after < body["period_end"]
    poll = {m.id: m.poll_interval_s for b in stack.loaded.data.site.buildings for m in b.meters}
    # the readings owed run to now, not to the month's end
    assert all(m["expected"] == (body["end"] - body["start"]) // 1000 // poll[m["meter"]]
               for b in body["buildings"] for m in b["meters"])
    nxt = time.gmtime(after / 1000 + 8 * 3600 + 40 * 86400)
    r = httpx.get(f"{stack.url}/api/v1/sites/{SITE}/reports/{nxt.tm_year}-{nxt.tm_mon:02d}",
                  headers=auth(INSPECTOR_TOKEN), timeout=60)
    assert r.status_code == 422 and "not begun" in r.text
    # a month that has ended is whole
    whole = httpx.get(f"{stack.url}/api/v1/sites/{SITE}/reports/{MONTH}",
                      headers=auth(INSPECTOR_TOKEN), timeout=60).json()
    assert whole["partial"] is False and whole["end"] == whole["period_end"]
    assert whole["period_text"] == "2026年10月" and MONTH == "2026-10"
