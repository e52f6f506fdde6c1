"""The web console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

A facility manager signs in, finds a meter by typing part of its name, opens it,
sees its history chart with the outage drawn as a gap, acknowledges the live
alert (the acknowledgement must reach the rules service's alert book) and
downloads a building's monthly report, all in the default language (zh-CN); then switches
the console to English and back. A data clerk enters a manual reading through the
console's form (a backwards one is refused with the API's reason, in the reader's
language) and sees it in the meter's history; an inspector gets no form; the energy view
shows each building's cost per tariff band — in zh-CN and English, on a desktop and a
phone viewport. Screenshots and the downloaded PDF are saved under ``test-artifacts/``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.inspector.conftest import (
    CLERK_TOKEN,
    DB,
    INSPECTOR_TOKEN,
    MANAGER_TOKEN,
    MONTH,
    Loaded,
    Stack,
    auth,
)

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install "
                                                  "chromium)")
def test_console_find_meter_see_chart_acknowledge(stack: Stack, artifacts: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    fp = stack.fire("admin-main", "admin")  # an alert of this test's own
    gap_device = stack.loaded.data.gap[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            # a Chinese browser (Accept-Language: zh-CN), as our users have
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(stack.url + "/", timeout=30_000)
            # a wrong token is refused and the data stays hidden
            page.fill("#token", "enm_wrong")
            page.click("#login-form button[type=submit]")
            expect(page.locator("#login-error")).to_contain_text("登录失败", timeout=15_000)
            expect(page.locator("#app")).to_be_hidden()
            page.fill("#token", MANAGER_TOKEN)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#who")).to_contain_text("li.facilities", timeout=15_000)
            expect(page.locator("#tree[data-loaded='1']")).to_have_count(1, timeout=15_000)
            # find the meter by part of its name: only it stays visible
            page.fill("#find", gap_device.split("-")[0] + "-ma")
            link = page.locator(f"a.meter-link[data-device='{gap_device}']")
            expect(link).to_be_visible()
            expect(page.locator("a.meter-link[data-device='admin-main']")).to_be_hidden()
            link.click()
            expect(page.locator("#meter-title")).to_have_text(gap_device)
            # the simulated days, then its chart: a drawn series and the outage as a gap
            page.fill("#from", "2026-10-01")
            page.fill("#to", "2026-10-04")
            page.click("#range-form button[type=submit]")
            expect(page.locator("#history-svg path.series")).to_have_count(1, timeout=20_000)
            expect(page.locator("#history-svg rect.gap")).to_have_count(1)
            expect(page.locator("#summary")).to_contain_text("1 处缺口")
            expect(page.locator("#gaps tbody tr")).to_have_count(1)
            expect(page.locator("#gaps tbody")).to_contain_text("6 小时 15 分钟")
            d = page.locator("#history-svg path.series").get_attribute("d") or ""
            assert d.count("M") == 2 and d.count("L") > 200  # broken once, at the gap
            # acknowledge the live alert
            row = page.locator(f"#alert-table tr[data-fp='{fp}']")
            page.click("#active-only")  # list again (the alert fired after sign-in)
            page.click("#active-only")
            expect(row).to_contain_text("hospital_demand", timeout=15_000)
            row.locator("button.ack").click()
            expect(row.locator("td.action")).to_contain_text("已由 li.facilities 确认",
                                                             timeout=15_000)
            page.screenshot(path=str(artifacts / "inspector-console.png"), full_page=True)
            # download a building's monthly report as PDF
            page.fill("#report-period", "2026-10")
            page.select_option("#report-building", "mall")
            with page.expect_download(timeout=60_000) as dl:
                page.click("#report-pdf")
            pdf = artifacts / "inspector-console-report.pdf"
            dl.value.save_as(str(pdf))
            assert dl.value.suggested_filename == "demo-campus_mall_2026-10.pdf"
            assert pdf.read_bytes().startswith(b"%PDF-")
            assert errors == []
        finally:
            browser.close()
    assert stack.service.book.alerts[fp].acked_by == "li.facilities"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install "
                                                  "chromium)")
def test_console_language_switch(stack: Stack, artifacts: Path) -> None:
    """Chinese by default (even for a browser that asks for nothing), English after the
    switch, kept across visits and sign-in, and back; the report link asks for the
    console's language."""
    from playwright.sync_api import expect, sync_playwright

    from tests.inspector.conftest import INSPECTOR_TOKEN

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900},
                                          extra_http_headers={"Accept-Language": ""})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(stack.url + "/", timeout=30_000)
            expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
            expect(page.locator("#login h2")).to_have_text("登录")
            page.fill("#token", INSPECTOR_TOKEN)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#who")).to_contain_text("wang.inspector（监察员）",
                                                         timeout=15_000)
            expect(page.locator("#alerts h2")).to_contain_text("告警")
            expect(page.locator("#report-building option").first).to_have_text("整个站点",
                                                                                timeout=15_000)
            # to English: the page comes back in English and signs in again by itself
            page.select_option("#lang", "en")
            expect(page.locator("html")).to_have_attribute("lang", "en", timeout=15_000)
            expect(page.locator("#who")).to_contain_text("wang.inspector (inspector)",
                                                         timeout=15_000)
            expect(page.locator("#alerts h2")).to_contain_text("Alerts")
            expect(page.locator("#reports h2")).to_have_text("Reports")
            expect(page.locator("#report-building option").first).to_have_text("whole site",
                                                                                timeout=15_000)
            page.fill("#report-period", "2026-10")
            with page.expect_request(lambda r: "/reports/2026-10" in r.url) as req:
                page.click("#report-html")
            assert "lang=en" in req.value.url
            page.screenshot(path=str(artifacts / "inspector-console-en.png"), full_page=True)
            # the choice is remembered: a later visit to / is English
            page.goto(stack.url + "/", timeout=30_000)
            expect(page.locator("html")).to_have_attribute("lang", "en", timeout=15_000)
            expect(page.locator("#lang")).to_have_value("en")
            # and back to Chinese
            page.select_option("#lang", "zh-CN")
            expect(page.locator("html")).to_have_attribute("lang", "zh-CN", timeout=15_000)
            expect(page.locator("#alerts h2")).to_contain_text("告警", timeout=15_000)
            assert errors == []
        finally:
            browser.close()


# ------------------------------------------------------------------ manual entry and cost

VIEWPORTS = {"desktop": {"width": 1400, "height": 1000}, "phone": {"width": 390, "height": 844}}
BROWSER_LOCALE = {"zh-CN": "zh-CN", "en": "en-US"}  # the browser's Accept-Language picks it
ENTRY_DEVICE = "gate-main"  # a meter no other console test opens
COUNTER = "active_energy_import_kwh"
# each run enters on a day of its own after the stored days (nothing else reads November),
# later days with higher values, so the runs never refuse each other's readings
RUNS = [("zh-CN", "desktop"), ("zh-CN", "phone"), ("en", "desktop"), ("en", "phone")]
BACKWARDS = {"zh-CN": "倒走", "en": "the counter would run backwards"}
WHO = {"zh-CN": "zhao.clerk（抄表员）", "en": "zhao.clerk (data clerk)"}
MANUAL = {"zh-CN": "手工抄表", "en": "manual reading"}
CORRECTED = {"zh-CN": "更正", "en": "corrected reading"}


def _open_console(browser: Any, url: str, lang: str, viewport: str, token: str) -> Any:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORTS[viewport], locale=BROWSER_LOCALE[lang])
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url + "/", timeout=30_000)
    expect(page.locator("html")).to_have_attribute("lang", lang)
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#tree[data-loaded='1']")).to_have_count(1, timeout=15_000)
    return page


def _open_meter(page: Any, device: str, start: str, end: str) -> None:
    from playwright.sync_api import expect

    page.fill("#find", device)
    # the meter's default range first (its answer must not land after the range asked next)
    with page.expect_response(lambda r: "/history?" in r.url, timeout=20_000):
        page.locator(f"a.meter-link[data-device='{device}']").click()
    expect(page.locator("#meter-title")).to_have_text(device)
    expect(page.locator("#entry-time")).not_to_have_value("")  # prefilled: now, site time
    page.fill("#from", start)
    page.fill("#to", end)
    with page.expect_response(lambda r: "/history?" in r.url, timeout=20_000):
        page.click("#range-form button[type=submit]")


def _last_counter(stack: Stack) -> float:
    """The meter's last stored counter reading of the simulated days."""
    h = httpx.get(f"{stack.url}/api/v1/sites/{stack.loaded.data.site.site}/meters/"
                  f"{ENTRY_DEVICE}/history", params={"start": "2026-10-01", "end": "2026-10-05",
                                                     "quantity": COUNTER},
                  headers=auth(INSPECTOR_TOKEN), timeout=30).json()
    return float([r for r in h["rows"] if r.get(COUNTER) is not None][-1][COUNTER])


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install "
                                                  "chromium)")
@pytest.mark.parametrize("lang,viewport", RUNS)
def test_console_clerk_enters_a_manual_reading_and_sees_it_in_the_history(
        stack: Stack, artifacts: Path, lang: str, viewport: str) -> None:
    """A data clerk's reading through the form: a backwards value is refused with the API's
    reason in the reader's language and stores nothing; a good one is stored under the
    clerk's name and shows in the history's entry list and as a marked point on the chart."""
    from playwright.sync_api import expect, sync_playwright

    i = RUNS.index((lang, viewport))
    day = f"2026-11-{10 + i:02d}"
    value = _last_counter(stack) + 10.0 * (i + 1)
    site = stack.loaded.data.site.site
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = _open_console(browser, stack.url, lang, viewport, CLERK_TOKEN)
            expect(page.locator("#who")).to_contain_text(WHO[lang])
            _open_meter(page, ENTRY_DEVICE, day, f"2026-11-{11 + i:02d}")
            form = page.locator("#entry-form")
            expect(form).to_be_visible()
            expect(page.locator("#entries tbody tr.entry")).to_have_count(0)
            # below the reading before it: refused, the reason beside the form
            page.select_option("#entry-kind", "reading")
            page.fill("#entry-time", f"{day}T10:00")
            page.fill("#entry-value", str(value - 1000.0))
            page.fill("#entry-reason", "补录：通讯中断")
            page.click("#entry-save")
            msg = page.locator("#entry-msg.error")
            expect(msg).to_contain_text(BACKWARDS[lang], timeout=15_000)
            expect(page.locator("#entries tbody tr.entry")).to_have_count(0)
            if lang == "zh-CN":
                page.screenshot(path=str(artifacts / f"console-entry-refused-{viewport}.png"),
                                full_page=True)
            # a good reading: stored, listed with author and reason, drawn as a manual point
            page.fill("#entry-value", str(value))
            page.click("#entry-save")
            expect(page.locator("#entry-msg.ok")).to_be_visible(timeout=15_000)
            row = page.locator("#entries tbody tr.entry")
            expect(row).to_have_count(1)
            for text in (f"{day} 10:00", MANUAL[lang], "zhao.clerk", "补录：通讯中断"):
                expect(row).to_contain_text(text)
            expect(page.locator("#history-svg rect.entered.manual")).to_have_count(1)
            expect(page.locator("#quantity")).to_have_value(COUNTER)
            want = [("reading", "zhao.clerk", pytest.approx(value))]
            if viewport == "desktop":
                # the clerk corrects it: listed beside it with the value it replaced, the
                # point now marked corrected
                page.select_option("#entry-kind", "correction")
                page.fill("#entry-time", f"{day}T10:00")
                page.fill("#entry-value", str(value + 1.5))
                page.fill("#entry-reason", "读错一位")
                page.click("#entry-save")
                expect(row).to_have_count(2, timeout=15_000)
                expect(row.nth(1)).to_contain_text(CORRECTED[lang])
                expect(row.nth(1)).to_contain_text("读错一位")
                expect(row.nth(1).locator("td").nth(3)).not_to_be_empty()
                expect(page.locator("#history-svg rect.entered.corrected")).to_have_count(1)
                expect(page.locator("#history-svg rect.entered.manual")).to_have_count(0)
                want.append(("correction", "zhao.clerk", pytest.approx(value + 1.5)))
            page.screenshot(path=str(artifacts / f"console-entry-{lang}-{viewport}.png"),
                            full_page=True)
            assert page.errors == []
        finally:
            browser.close()
    stored = httpx.get(f"{stack.url}/api/v1/sites/{site}/entries",
                       params={"start": day, "end": f"2026-11-{11 + i:02d}",
                               "device": ENTRY_DEVICE},
                       headers=auth(INSPECTOR_TOKEN), timeout=30).json()["entries"]
    assert [(e["kind"], e["author"], e["value"]) for e in stored] == want
    if viewport == "desktop":
        assert stored[1]["original"] == pytest.approx(value)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install "
                                                  "chromium)")
@pytest.mark.parametrize("lang,viewport", [("zh-CN", "phone"), ("en", "desktop")])
def test_console_inspector_sees_the_entries_but_no_form(stack: Stack, artifacts: Path,
                                                       lang: str, viewport: str) -> None:
    """Inspectors audit the entries and may not enter any: no form (and the API says 403)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = _open_console(browser, stack.url, lang, viewport, INSPECTOR_TOKEN)
            _open_meter(page, ENTRY_DEVICE, "2026-11-01", "2026-11-30")
            expect(page.locator("#entries")).to_be_visible()
            expect(page.locator("#entry-form")).to_be_hidden()
            page.screenshot(path=str(artifacts / f"console-inspector-{lang}-{viewport}.png"),
                            full_page=True)
            assert page.errors == []
        finally:
            browser.close()
    r = httpx.post(f"{stack.url}/api/v1/sites/{stack.loaded.data.site.site}/entries",
                   json={"kind": "reading", "device": ENTRY_DEVICE, "time": "2026-11-20T10:00",
                         "value": 1e9}, headers=auth(INSPECTOR_TOKEN), timeout=30)
    assert r.status_code == 403


@pytest.mark.parametrize("when", ["", "0", "5", "1999-12-31T23:00"])
def test_the_entry_api_refuses_a_reading_without_a_real_time(stack: Stack, when: str) -> None:
    """The form always sends a time, but the API behind it must not take an empty one (or
    epoch 0) as 1970-01-01: a value below the meter's first reading was stored there."""
    r = httpx.post(f"{stack.url}/api/v1/sites/{stack.loaded.data.site.site}/entries",
                   json={"kind": "reading", "device": ENTRY_DEVICE, "time": when, "value": 0.0},
                   headers=auth(CLERK_TOKEN), timeout=30)
    assert r.status_code == 422 and "2000" in r.json()["detail"], r.text


@pytest.fixture(scope="module")
def priced(loaded: Loaded) -> Iterator[str]:
    """A second inspector API over the same stored days whose site file prices electricity
    on a time-of-use tariff and water at a flat price (the stack's site has no tariffs)."""
    import asyncio

    import uvicorn

    from enmon.influx import InfluxConfig
    from enmon.localrun import free_port
    from inspector.api import create_app
    from inspector.auth import token_hash
    from inspector.config import InspectorConfig, TokenEntry

    site = loaded.data.site.model_copy(update={"tariffs": {
        "electricity": "example-tou-industrial-10kv", "water": "example-flat-water"}})
    cfg = InspectorConfig(influx=InfluxConfig(url=loaded.url, database=DB), tokens=[
        TokenEntry(name="wang.inspector", role="inspector", sha256=token_hash(INSPECTOR_TOKEN))])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, sites={site.site: site}),
                                           host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    t = threading.Thread(target=lambda: asyncio.run(server.serve()), name="priced-api",
                         daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert t.is_alive() and time.monotonic() < deadline, "the priced API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(30)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install "
                                                  "chromium)")
@pytest.mark.parametrize("lang,viewport", RUNS)
def test_console_energy_view_shows_the_cost_per_band(priced: str, loaded: Loaded,
                                                      artifacts: Path, lang: str,
                                                      viewport: str) -> None:
    """Each building's cost table (band, kWh, CNY, demand charge, total) in the reader's
    language, with the report's own figures, readable on a phone."""
    from playwright.sync_api import expect, sync_playwright

    site = loaded.data.site.site
    rep = httpx.get(f"{priced}/api/v1/sites/{site}/reports/{MONTH}", params={"lang": lang},
                    headers=auth(INSPECTOR_TOKEN), timeout=60).json()
    hosp = next(b for b in rep["buildings"] if b["id"] == "hospital")
    cost = hosp["cost"]["electricity"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = _open_console(browser, priced, lang, viewport, INSPECTOR_TOKEN)
            page.fill("#report-period", MONTH)
            page.select_option("#report-site", site)
            page.click("#report-show")
            box = page.locator(".building-energy[data-building='hospital']")
            table = box.locator("table.cost[data-energy='electricity']")
            expect(table).to_be_visible(timeout=60_000)
            expect(box.locator("h3")).to_contain_text(rep["period_text"])
            rows = table.locator("tbody tr")
            expect(rows).to_have_count(len(cost["lines"]))
            for n, line in enumerate(cost["lines"]):
                expect(rows.nth(n).locator("td").first).to_contain_text(line["band_text"])
            expect(table.locator("tfoot tr.total th").last).to_have_text(f"{cost['total']:,.2f}")
            expect(table.locator("tfoot tr.total th").first).to_have_text(
                "合计" if lang == "zh-CN" else "total")
            expect(table.locator("caption")).to_contain_text(
                "电费用" if lang == "zh-CN" else "electricity cost")
            if cost["demand_cost"]:
                expect(table.locator("tfoot tr.demand td").last).to_have_text(
                    f"{cost['demand_cost']:,.2f}")
            water = box.locator("table.cost[data-energy='water']")
            if "water" in hosp["cost"]:
                expect(water).to_be_visible()
            # on a phone the table fits the screen (or scrolls inside its own box)
            bb = box.locator(".cost-box").first.bounding_box()
            assert bb is not None and bb["x"] >= 0
            assert bb["x"] + bb["width"] <= VIEWPORTS[viewport]["width"] + 1
            box.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / f"console-cost-{lang}-{viewport}.png"),
                            full_page=True)
            assert page.errors == []
        finally:
            browser.close()


# ------------------------------------------------------------------ building energy view

ENERGY_WORDS = {"zh-CN": ("能耗分析", "环比", "同比", "按月"),
                "en": ("Energy analysis", "MoM", "YoY", "by month")}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install "
                                                  "chromium)")
@pytest.mark.parametrize("lang,viewport", RUNS)
def test_console_building_energy_view_bars_and_comparisons(stack: Stack, artifacts: Path,
                                                           lang: str, viewport: str) -> None:
    """A building's energy view: stacked bars by sub-item per day of the stored days, the
    previous period drawn as a line, a y-axis with several round ticks and the unit, the
    table's 环比/同比 (MoM/YoY) against the API's figures; then by month and by ISO week;
    within a phone's width."""
    from playwright.sync_api import expect, sync_playwright

    site = stack.loaded.data.site.site
    api = httpx.get(f"{stack.url}/api/v1/sites/{site}/buildings/hospital/energy",
                    params={"every": "day", "start": "2026-10-02", "end": "2026-10-04",
                            "lang": lang}, headers=auth(INSPECTOR_TOKEN), timeout=60).json()
    title, mom, yoy, by_month = ENERGY_WORDS[lang]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = _open_console(browser, stack.url, lang, viewport, INSPECTOR_TOKEN)
            link = page.locator("#tree details[data-building='hospital'] a.building-link")
            expect(link).to_have_text(title)
            with page.expect_response(lambda r: "/buildings/hospital/energy?" in r.url,
                                      timeout=30_000):
                link.click()
            expect(page.locator("#bview")).to_be_visible()
            expect(page.locator("#bview-title")).to_contain_text(title, ignore_case=True)
            page.fill("#bview-from", "2026-10-02")
            page.fill("#bview-to", "2026-10-04")
            with page.expect_response(lambda r: "start=2026-10-02" in r.url, timeout=30_000):
                page.click("#bview-form button[type=submit]")
            svg = page.locator("#energy-svg")
            # two days, each stacked from the four sub-items and the not-sub-metered rest
            expect(svg.locator("rect.bar[data-code='01A00']")).to_have_count(2, timeout=20_000)
            assert svg.locator("rect.bar").count() >= 8
            expect(svg.locator("circle.prev")).to_have_count(1)  # 1 Oct (30 Sep: no data)
            assert svg.locator("text.ytick").count() >= 4
            expect(svg.locator("text.unit")).to_contain_text("kWh")
            table = page.locator("#bview-table")
            expect(table.locator("thead th.mom")).to_have_text(mom)
            expect(table.locator("thead th.yoy")).to_have_text(yoy)
            rows = table.locator("tbody tr")
            expect(rows).to_have_count(2)
            for n, b in enumerate(api["buckets"]):
                expect(rows.nth(n).locator("td").first).to_have_text(b["label"])
            # 3 Oct against 2 Oct's day before (1 Oct), in %; no figure a year before
            want = f"{api['buckets'][1]['mom'] * 100:+.1f}%"
            expect(rows.nth(1).locator("td.mom")).to_have_text(want)
            expect(rows.nth(1).locator("td.yoy")).to_have_text("–")
            expect(rows.nth(0).locator("td.mom")).to_have_text("–")
            box = svg.bounding_box()
            assert box is not None and box["x"] + box["width"] <= VIEWPORTS[viewport]["width"]
            page.screenshot(path=str(artifacts / f"console-energy-{lang}-{viewport}.png"),
                            full_page=True)
            # by month: October as one stacked bar
            with page.expect_response(lambda r: "every=month" in r.url, timeout=30_000):
                page.get_by_role("button", name=by_month).click()
            expect(rows).to_have_count(1)
            expect(page.locator("#bview-every button[data-every='month']")).to_have_attribute(
                "aria-pressed", "true")
            expect(svg.locator("rect.bar[data-code='01B00']")).to_have_count(1)
            month = httpx.get(f"{stack.url}/api/v1/sites/{site}/buildings/hospital/energy",
                              params={"every": "month", "start": "2026-10-02",
                                      "end": "2026-10-04"},
                              headers=auth(INSPECTOR_TOKEN), timeout=60).json()
            total = month["buckets"][0]["total"]
            expect(rows.first.locator("td.total")).to_have_text(f"{total:,.0f}")
            # by ISO week: the week from Monday 28 September
            with page.expect_response(lambda r: "every=week" in r.url, timeout=30_000):
                page.click("#bview-every button[data-every='week']")
            expect(rows.first.locator("td").first).to_contain_text(
                "第40周" if lang == "zh-CN" else "week 40")
            if viewport == "desktop":
                page.screenshot(path=str(artifacts / f"console-energy-week-{lang}.png"),
                                full_page=True)
            assert page.errors == []
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
def test_a_notifications_console_link_marks_its_alert(stack: Stack, artifacts: Path) -> None:
    """The console link of a notification (``?site=…&alert=<fingerprint>``) opens the console
    with that alert marked in the list, also after the language switch reloads the page."""
    from playwright.sync_api import expect, sync_playwright

    fp = stack.fire("gate-main", "gatehouse")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
            page.goto(f"{stack.url}/?site=demo-campus&alert={fp}", timeout=30_000)
            page.fill("#token", MANAGER_TOKEN)
            page.click("#login-form button[type=submit]")
            row = page.locator(f"#alert-table tr[data-fp='{fp}']")
            expect(row).to_have_class("wanted", timeout=15_000)
            assert page.locator("#alert-table tr.wanted").count() == 1
            page.screenshot(path=str(artifacts / "console-alert-link-zh-CN-phone.png"))
            page.select_option("#lang", "en")
            expect(page.locator("html")).to_have_attribute("lang", "en", timeout=15_000)
            assert f"alert={fp}" in page.url
            expect(page.locator(f"#alert-table tr[data-fp='{fp}']")).to_have_class(
                "wanted", timeout=15_000)
        finally:
            browser.close()
