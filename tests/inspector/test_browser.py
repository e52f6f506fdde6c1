"""The web console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

A facility manager signs in, finds a meter by typing part of its name, opens it,
sees its history chart with the outage drawn as a gap, acknowledges the live
alert (the acknowledgement must reach the rules service's alert book) and
downloads a building's monthly report, all in the default language (zh-CN); then switches
the console to English and back. A screenshot of the console and the
downloaded PDF are saved under ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inspector.conftest import MANAGER_TOKEN, Stack

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
