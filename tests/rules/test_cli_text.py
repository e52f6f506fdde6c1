"""``enmon rules alerts`` / ``silence`` against a running rules HTTP API: a table in
Chinese by default (English with --lang en or ENMON_LANG), times in the site's zone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from typer.testing import CliRunner

from enmon.localrun import free_port
from enmon.summaries import Summary
from rules.cli import app
from rules.config import RulesConfig
from rules.service import RulesService

T0 = 1_763_726_400_000  # 2025-11-21 12:00 UTC = 20:00 in Asia/Shanghai


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[str]:
    svc = RulesService(RulesConfig.model_validate({"state_dir": str(tmp_path / "s")}))
    svc.book.observe(rule="meter_offline", labels={"site": "campus", "building": "office-1",
                                                   "device": "m1"},
                     active=True, now=T0, severity="critical",
                     summary=Summary("meter_offline", {"device": "m1", "duration": 930}))
    runner = web.AppRunner(svc.api())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
    svc.outbox.close()


async def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    r = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert r.exit_code == 0, r.output
    return r.output


async def test_alerts_table_in_chinese_with_site_time(api: str) -> None:
    out = await _cli("alerts", "--url", api, env={"COLUMNS": "200"})
    assert "规则" in out and "开始时间" in out  # headers
    assert "表计离线" in out and "严重" in out and "告警中" in out
    assert "2025-11-21 20:00 +08:00" in out
    assert "m1 已 15分30秒 无读数" in out  # the summary too, with its figures


async def test_alerts_table_in_english(api: str) -> None:
    out = await _cli("alerts", "--url", api, env={"ENMON_LANG": "en", "COLUMNS": "200"})
    assert "rule" in out and "meter offline" in out and "critical" in out
    assert "no reading from m1 for 15 min 30 s" in out


async def test_silence_prints_its_end_in_site_time(api: str) -> None:
    out = await _cli("silence", "--url", api, "--match", "building=office-1", "--for", "2h",
                     "--tz", "Asia/Shanghai")
    assert out.startswith("静默 ") and "building=office-1" in out
    assert "+08:00" in out and "epoch" not in out and "{" not in out
    out = await _cli("silence", "--url", api, "--match", "site=campus", "--lang", "en")
    assert out.startswith("silence ") and "site=campus" in out


async def test_outbox_tables_in_chinese_and_english(tmp_path: Path) -> None:
    """``enmon rules outbox``: counts per channel and state, and each message that gave up
    with its rule, where, when it was queued (site time) and its last error."""
    from rules.channels import NotifyError
    from rules.outbox import Outbox

    class Refusing:
        name = "wx"

        async def send(self, note: dict[str, object]) -> None:
            raise NotifyError("wecom wx: robot refused: errcode=93000 invalid webhook url",
                              retryable=False)

    state = tmp_path / "state"
    state.mkdir()
    ob = Outbox(state / "outbox.db", {"wx": Refusing(), "mail": Refusing()},
                clock=lambda: T0 / 1000)
    note = {"kind": "firing", "rule": "meter_offline", "labels": {"site": "campus",
                                                                 "building": "office-1"}}
    ob.enqueue(note)
    assert await ob.deliver_once("wx") == 0.0  # refused for good: dead
    ob.close()
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(f"state_dir: {state}\n", encoding="utf-8")
    out = await _cli("outbox", "-c", str(cfg), "--dead", env={"COLUMNS": "200"})
    assert "通道" in out and "已放弃" in out and "待发送" in out and "表计离线" in out
    assert "office-1" in out and "2025-11-21 20:00:00" in out and "errcode=93000" in out
    out = await _cli("outbox", "-c", str(cfg), "--dead", "--lang", "en",
                     env={"COLUMNS": "200"})
    assert "channel" in out and "gave up" in out and "waiting to be sent" in out
    assert "meter offline" in out
    r = await asyncio.to_thread(CliRunner().invoke, app, ["outbox", "-c", str(cfg), "--lang",
                                                          "fr"])
    assert r.exit_code == 2 and "zh-CN or en" in r.output and "Traceback" not in r.output


def test_check_and_errors_in_chinese_and_english() -> None:
    site = str(Path(__file__).resolve().parents[2] / "rules" / "sample-site.yaml")
    r = CliRunner().invoke(app, ["check", "--site", site], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "表计数" in r.output and "限额（年能耗强度）" in r.output
    r = CliRunner().invoke(app, ["check", "--site", site, "--lang", "en"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "meters" in r.output and "quota (annual intensity)" in r.output
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = CliRunner().invoke(app, ["alerts", "--url", dead])
    assert r.exit_code == 1 and r.output.startswith("错误：无法连接规则服务")
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["ack", "abc", "--url", dead, "--lang", "en"])
    assert r.exit_code == 1 and r.output.startswith("error: cannot reach the rules service")


async def test_outbox_lists_held_groups_and_scheduled_escalations(tmp_path: Path) -> None:
    """Alerts waiting for their group and escalations not yet due are shown beside the
    messages (site time), so an operator sees why a manager has not been told yet."""
    import sqlite3

    from rules.outbox import Outbox

    state = tmp_path / "state"
    state.mkdir()
    Outbox(state / "outbox.db", {}, clock=lambda: T0 / 1000).close()  # the real schema
    db = sqlite3.connect(state / "outbox.db")
    with db:
        for fp in ("aaa1", "bbb2"):
            db.execute("INSERT INTO grouped (channel, group_key, fingerprint, due_at, body) "
                       "VALUES ('wx', 'campus|office-1', ?, ?, '{}')", (fp, T0 / 1000 + 30))
        db.execute("INSERT INTO escalation (fingerprint, fired_at, target, source, notified_at, "
                   "due_at, body) VALUES ('ccc3', ?, 'director', 'wx', ?, ?, '{}')",
                   (T0, T0 / 1000, T0 / 1000 + 1800))
    db.close()
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(f"state_dir: {state}\n", encoding="utf-8")
    out = await _cli("outbox", "-c", str(cfg), env={"COLUMNS": "200"})
    assert "等待分组发送的告警" in out and "campus|office-1" in out and "2025-11-21 20:00:30" in out
    assert "待升级的告警" in out and "director" in out and "ccc3" in out
    assert "2025-11-21 20:30:00" in out
    out = await _cli("outbox", "-c", str(cfg), "--lang", "en", env={"COLUMNS": "200"})
    assert "alerts waiting for their group" in out and "scheduled escalations" in out
