"""The signed acknowledge link of a notification, opened in a real browser (Debian's
chromium via Playwright) on a phone and a desktop, in Chinese and English.

A facility manager taps the link in the WeCom message: the page shows the alert in the
reader's language and acknowledges only when its button is pressed (a chat app's link
preview opens it too); a tampered and an expired link show a refusal and acknowledge
nothing. The real rules service's alert API serves the page; screenshots are saved under
``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from enmon.localrun import free_port

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
KEY = "k" * 32
LABELS = {"site": "campus", "building": "office-1", "device": "m1"}


@dataclass
class Served:
    svc: Any
    port: int
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` in the service's event loop (the alert book is the loop's)."""
        async def go() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def fire(self, device: str) -> str:
        from enmon.summaries import Summary

        labels = {**LABELS, "device": device}

        def do() -> str:
            self.svc.apply(self.svc.book.observe(
                rule="meter_offline", labels=labels, active=True, now=int(time.time() * 1000),
                severity="critical", summary=Summary("meter_offline",
                                                     {"device": device, "duration": 930})))
            return next(fp for fp, a in self.svc.book.alerts.items()
                        if a.labels.get("device") == device)
        return str(self.call(do))

    def link(self, fp: str, *, secret: str = KEY, ttl_s: int = 3600) -> str:
        from rules import acklink

        a = self.call(lambda: self.svc.book.alerts[fp])
        token = acklink.sign(secret, fp, int(a.fired_at or 0), int(time.time()) + ttl_s)
        return f"http://127.0.0.1:{self.port}/ack/{token}"

    def acked_by(self, fp: str) -> str | None:
        return self.call(lambda: self.svc.book.alerts[fp].acked_by)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    from aiohttp import web

    from rules.config import RulesConfig
    from rules.service import RulesService

    monkeypatch.setenv("ACK_KEY", KEY)
    monkeypatch.setenv("API_TOKEN", "t0ken-for-the-api")
    port = free_port()
    cfg = RulesConfig.model_validate({
        "state_dir": str(tmp_path / "s"), "http": {"token_env": "API_TOKEN"},
        "channels": [{"type": "webhook", "name": "log", "url": "http://127.0.0.1:9/"}],
        "ack_links": {"base_url": f"http://127.0.0.1:{port}/", "secret_env": "ACK_KEY"}})
    loop = asyncio.new_event_loop()
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def start() -> None:
        box["svc"] = RulesService(cfg)
        box["runner"] = web.AppRunner(box["svc"].api())
        await box["runner"].setup()
        await web.TCPSite(box["runner"], "127.0.0.1", port).start()
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(20), "rules API did not start"
    try:
        yield Served(box["svc"], port, loop)
    finally:
        async def stop() -> None:
            await box["runner"].cleanup()
            box["svc"].outbox.close()  # its SQLite connection belongs to the loop's thread
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
@pytest.mark.parametrize("lang,viewport", [
    ("zh-CN", {"width": 390, "height": 844}), ("en", {"width": 1280, "height": 900})],
    ids=["zh-CN-phone", "en-desktop"])
def test_the_signed_link_acknowledges_on_its_button_and_refuses_forgeries(
        served: Served, lang: str, viewport: dict[str, int]) -> None:
    from playwright.sync_api import expect, sync_playwright

    art = Path(__file__).resolve().parents[2] / "test-artifacts"
    art.mkdir(exist_ok=True)
    zh = lang == "zh-CN"
    fp = served.fire("m1")
    good = served.link(fp)
    token = good.rsplit("/", 1)[1]
    tampered = good.rsplit("/", 1)[0] + "/" + token[:-4] + ("aaaa" if token[-4:] != "aaaa"
                                                             else "bbbb")
    expired = served.link(fp, ttl_s=-10)
    forged = served.link(fp, secret="x" * 32)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport=viewport, locale=lang,  # type: ignore[arg-type]
                                    extra_http_headers={"Accept-Language": lang})
            for bad, says in ((tampered, "改动" if zh else "changed"),
                              (forged, "改动" if zh else "changed"),
                              (expired, "过期" if zh else "expired")):
                page.goto(bad, timeout=20_000)
                expect(page.locator("body")).to_contain_text(says)
                assert page.locator("form button").count() == 0  # nothing to press
            page.screenshot(path=str(art / f"acklink-refused-{lang}.png"), full_page=True)
            assert served.acked_by(fp) is None
            # the good link: the alert in the reader's language, acknowledged on the button
            page.goto(good, timeout=20_000)
            expect(page.locator("body")).to_contain_text("m1")
            assert served.acked_by(fp) is None  # opening (a preview) acknowledges nothing
            page.screenshot(path=str(art / f"acklink-confirm-{lang}.png"), full_page=True)
            name = page.locator("input[name=by]")
            if name.count():
                name.fill("李工" if zh else "Li")
            page.locator("form button").first.click()
            expect(page.locator("body")).to_contain_text("确认" if zh else "cknowledged")
            page.screenshot(path=str(art / f"acklink-done-{lang}.png"), full_page=True)
            deadline = time.monotonic() + 10
            while served.acked_by(fp) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (served.acked_by(fp) or "").startswith("李工" if zh else "Li")
        finally:
            browser.close()
