"""Manual readings and corrections: worked examples against a real influxd.

- A correction of a glitched month-end reading changes the building's month total in the
  report, shows in the meter's history with its author and reason, keeps the original
  queryable (the audit trail), and the rule engine's roll-ups (a real pass) follow it.
- A meter replaced mid-month whose old index was read by hand: the month total, the hours
  and the ledger rest on the manual reading and the site file's replacement.
- What cannot be right is refused with a reason: backwards counters, a correction without a
  reason or of a reading that is not stored, a manual reading where one is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from energy.manual import Entry, ManualError
from energy.site import Site
from enmon import touched as tch
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.lineproto import line
from enmon.localrun import InfluxDB1
from inspector import manual
from inspector.report import period_of
from inspector.store import Store, fetch_history, fetch_report
from tests.support import influx_rows, rules_pass

SH = ZoneInfo("Asia/Shanghai")
DB = "enmon"
SITE_ID = "plant"
MONTH = "2026-11"
DAY = datetime(2026, 11, 20, tzinfo=SH)
STEP = timedelta(minutes=15)
SWAP = DAY + timedelta(hours=12, minutes=30)   # the sub-meter is swapped at 12:30
HAND_READ = SWAP - timedelta(minutes=5)        # its old index read by hand at 12:25
OLD_FINAL = 5000.0 + 5.0 * (HAND_READ - DAY) / STEP  # 5 kWh per 15 min, by elapsed time


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


SITE = Site.model_validate({
    "site": SITE_ID, "timezone": "Asia/Shanghai",
    "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
        {"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
         "category": "01000", "building_total": True, "poll_interval_s": 900},
        {"id": "sub", "gateway": "gw-01", "device": "sub", "energy_type": "electricity",
         "category": "01B00", "poll_interval_s": 900,
         "replacements": [{"at": ms(SWAP), "old_final": OLD_FINAL, "new_initial": 0.0}]}]}]})
GLITCH = 500.0  # the month-end reading of main was stored 500 kWh too high


def steps(start: datetime, end: datetime) -> list[datetime]:
    out, t = [], start
    while t <= end:
        out.append(t)
        t += STEP
    return out


def main_counter(t: datetime) -> float:
    return 1000.0 + 10.0 * ((t - DAY) / STEP)


def sub_counter(t: datetime) -> float | None:
    """The old meter until 10:00 (then its link failed), the new one from 12:45."""
    if t <= DAY + timedelta(hours=10):
        return 5000.0 + 5.0 * ((t - DAY) / STEP)
    if t > SWAP:
        return 5.0 * ((t - SWAP) / STEP)
    return None


def meter_line(device: str, t: datetime, v: float, seq: int) -> str:
    return line("meter", {"site": SITE_ID, "gateway": "gw-01", "device": device,
                          "building": "b1", "category": "01000" if device == "main" else "01B00",
                          "energy_type": "electricity"},
                {"active_energy_import_kwh": v, "seq": seq}, ms(t))


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    server = InfluxDB1(workdir=tmp_path_factory.mktemp("manual") / "influxd")
    server.start()

    async def load() -> None:
        cfg = InfluxConfig(url=server.url, database=DB)
        q, w = InfluxQL(cfg), InfluxV1Writer(cfg)
        try:
            await q.create_database()
            day = steps(DAY, DAY + timedelta(days=1))
            lines = [meter_line("main", t, main_counter(t) + (GLITCH if t == day[-1] else 0), i)
                     for i, t in enumerate(day)]
            lines += [meter_line("sub", t, v, i) for i, t in enumerate(day)
                      if (v := sub_counter(t)) is not None]
            lines.append(tch.marker_line(SITE_ID, "test", {
                ("gw-01", "main"): (ms(day[0]), ms(day[-1])),
                ("gw-01", "sub"): (ms(day[0]), ms(day[-1]))}, int(time.time() * 1000)))
            await w.write(lines)
        finally:
            await q.close()
            await w.close()
    try:
        asyncio.run(load())
        yield server
    finally:
        server.stop()


def run(influx: InfluxDB1, fn: Any) -> Any:
    async def go() -> Any:
        cfg = InfluxConfig(url=influx.url, database=DB)
        store, w = Store(InfluxQL(cfg)), InfluxV1Writer(cfg)
        try:
            return await fn(store, w)
        finally:
            await store.close()
            await w.close()
    return asyncio.run(go())


END_OF_MONTH = period_of(MONTH, "Asia/Shanghai").end


def month_total(influx: InfluxDB1, meter: str) -> float:
    async def go(store: Store, _: Any) -> float:
        rep = await fetch_report(store, site=SITE, period=MONTH, now_ms=END_OF_MONTH)
        b = rep.buildings[0]
        return float(next(m.amount for m in b.meters if m.meter == meter))
    return float(run(influx, go))


def entry(kind: str, device: str, t: datetime, value: float, reason: str = "",
          author: str = "王工") -> Entry:
    return Entry(kind, SITE_ID, "gw-01", device, "active_energy_import_kwh",  # type: ignore[arg-type]
                 ms(t), value, author, reason)


async def one_pass(influx: InfluxDB1, now: int) -> None:
    await rules_pass(influx.url, DB, [SITE], now)


def monthly_rollup(influx: InfluxDB1, meter: str) -> float:
    rows = influx_rows(influx.url, DB, "SELECT amount FROM energy_monthly WHERE "
                       f"meter = '{meter}' AND time = {ms(datetime(2026, 11, 1, tzinfo=SH))}ms")
    return float(rows[0]["amount"])


def test_a_correction_changes_the_month_total_and_history_keeps_who_why_and_the_original(
        influx: InfluxDB1) -> None:
    end = DAY + timedelta(days=1)
    assert month_total(influx, "main") == pytest.approx(960.0 + GLITCH)
    asyncio.run(one_pass(influx, END_OF_MONTH))
    assert monthly_rollup(influx, "main") == pytest.approx(960.0 + GLITCH)

    checked = run(influx, lambda s, w: manual.enter(
        s, w, entry("correction", "main", end, main_counter(end), "表计显示 1960，采集值跳变"),
        site_model=SITE, now_ms=END_OF_MONTH))
    assert checked.entry.original == pytest.approx(main_counter(end) + GLITCH)

    # the report, and the rule engine's roll-ups after its next pass, follow the correction
    assert month_total(influx, "main") == pytest.approx(960.0)
    asyncio.run(one_pass(influx, END_OF_MONTH + 1000))
    assert monthly_rollup(influx, "main") == pytest.approx(960.0)

    # the history shows the corrected value, flagged, with who, when, why and the original
    async def hist(store: Store, _: Any) -> Any:
        return await fetch_history(store, site=SITE_ID, device="main", start=ms(DAY),
                                   end=ms(end) + 1, site_model=SITE, now_ms=END_OF_MONTH)
    h = run(influx, hist)
    last = h.rows[-1]
    assert last["time"] == ms(end) and last["active_energy_import_kwh"] == main_counter(end)
    assert any(f.ts == ms(end) and f.flag == "corrected" for f in h.flags)
    (e,) = [e for e in h.entries if e["kind"] == "correction"]
    assert (e["author"], e["reason"]) == ("王工", "表计显示 1960，采集值跳变")
    assert e["original"] == pytest.approx(main_counter(end) + GLITCH)
    assert e["value"] == pytest.approx(main_counter(end)) and e["reading_ts"] == ms(end)
    assert h.as_dict()["entries"] == h.entries
    # one reading at that time, not two: the correction wrote the meter's own series
    n = influx_rows(influx.url, DB, "SELECT count(active_energy_import_kwh) AS n FROM meter "
                    f"WHERE device = 'main' AND time = {ms(end)}ms")
    assert n[0]["n"] == 1

    # the gateway resends the batch it never saw confirmed: the measured value lands on the
    # point again (as ingest writes it) and the report would disagree with the audit trail
    async def resend(_: Store, w: Any) -> None:
        await w.write([meter_line("main", end, main_counter(end) + GLITCH, 96),
                       tch.marker_line(SITE_ID, "ingest", {("gw-01", "main"): (ms(end), ms(end))},
                                       int(time.time() * 1000))])
    run(influx, resend)
    assert month_total(influx, "main") == pytest.approx(960.0 + GLITCH)
    # the rule engine's next pass writes the correction back from the audit record, and
    # the roll-ups follow it the pass after
    asyncio.run(one_pass(influx, END_OF_MONTH + 2000))
    back = influx_rows(influx.url, DB, "SELECT active_energy_import_kwh AS v, "
                       "flag_active_energy_import_kwh AS f FROM meter "
                       f"WHERE device = 'main' AND time = {ms(end)}ms")
    assert (back[0]["v"], back[0]["f"]) == (pytest.approx(main_counter(end)), "corrected")
    assert month_total(influx, "main") == pytest.approx(960.0)
    asyncio.run(one_pass(influx, END_OF_MONTH + 3000))
    assert monthly_rollup(influx, "main") == pytest.approx(960.0)
    # a reading that holds its correction is left alone: nothing written the next time
    before = influx_rows(influx.url, DB, "SELECT count(ranges) AS n FROM energy_touched "
                         "WHERE worker = 'corrections'")[0]["n"]
    asyncio.run(one_pass(influx, END_OF_MONTH + 4000))
    assert influx_rows(influx.url, DB, "SELECT count(ranges) AS n FROM energy_touched "
                       "WHERE worker = 'corrections'")[0]["n"] == before == 1


def test_a_meter_replaced_mid_month_with_its_final_index_read_by_hand(
        influx: InfluxDB1) -> None:
    # without the hand-read index the old meter's last 2.5 h are spread over the swap gap;
    # the month total already holds them (the site file's old_final), the hours do not
    truth = (OLD_FINAL - 5000.0) + 5.0 * ((DAY + timedelta(days=1) - SWAP) / STEP)
    assert month_total(influx, "sub") == pytest.approx(truth)

    checked = run(influx, lambda s, w: manual.enter(
        s, w, entry("reading", "sub", HAND_READ, OLD_FINAL, "换表前抄表（旧表止码）"),
        site_model=SITE, now_ms=END_OF_MONTH))
    assert checked.entry.kind == "reading" and checked.entry.entered_at > 0
    assert month_total(influx, "sub") == pytest.approx(truth)

    async def entries(store: Store, _: Any) -> Any:
        return await store.manual_entries(SITE_ID, ms(DAY), ms(DAY + timedelta(days=1)))
    (row,) = run(influx, entries)
    assert (row["device"], row["value"]) == ("sub", OLD_FINAL)
    assert row["reason"] == "换表前抄表（旧表止码）"
    # the hours now show the old meter's use up to the hand reading at 12:25
    asyncio.run(one_pass(influx, END_OF_MONTH + 2000))
    hourly = {int(r["time"]): r["amount"] for r in influx_rows(
        influx.url, DB, "SELECT amount FROM energy_hourly WHERE meter = 'sub'")}
    h12 = ms(DAY + timedelta(hours=12))
    # 12:00–12:25 of the old meter (interpolated from 10:00) + the replacement interval share
    assert sum(hourly.values()) == pytest.approx(truth)
    assert hourly[h12] > 0


@pytest.mark.parametrize("kind,device,when,value,reason,why", [
    ("correction", "main", DAY + timedelta(hours=6), 5.0, "misread", "below the reading before"),
    ("correction", "main", DAY + timedelta(hours=6), 1e9, "misread", "above the reading after"),
    ("correction", "main", DAY + timedelta(hours=6), 1240.0, "", "needs a reason"),
    ("correction", "main", DAY + timedelta(hours=6, minutes=1), 1240.0, "x", "no stored reading"),
    ("reading", "main", DAY + timedelta(hours=6), 1240.0, "x", "already stored"),
    ("reading", "main", DAY + timedelta(days=40), 1e5, "x", "future"),
    ("reading", "ghost", DAY + timedelta(hours=6), 1.0, "x", "no meter ghost"),
])
def test_what_cannot_be_right_is_refused_with_its_reason(
        influx: InfluxDB1, kind: str, device: str, when: datetime, value: float, reason: str,
        why: str) -> None:
    before = influx_rows(influx.url, DB, "SELECT count(value) AS n FROM manual_entry")
    with pytest.raises(ManualError, match=why):
        run(influx, lambda s, w: manual.enter(s, w, entry(kind, device, when, value, reason),
                                              site_model=SITE, now_ms=END_OF_MONTH))
    after = influx_rows(influx.url, DB, "SELECT count(value) AS n FROM manual_entry")
    assert after == before  # nothing written


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_config(influx: InfluxDB1, tmp_path: Path) -> Path:
    import yaml

    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(SITE.model_dump(mode="json", exclude_none=True),
                                        allow_unicode=True), encoding="utf-8")
    cfg = tmp_path / "inspector.yaml"
    cfg.write_text(yaml.safe_dump({"influx": {"url": influx.url, "database": DB},
                                   "sites": [str(site_file)]}), encoding="utf-8")
    return cfg


def test_template_filled_in_and_imported_row_by_row(cli_config: Path, tmp_path: Path,
                                                     influx: InfluxDB1) -> None:
    """The clerk's round trip: the template lists the meters, two rows are filled in (one
    good, one that would run the counter backwards), the good one is stored, the bad one is
    refused with its row and reason in Chinese, exit 1, no traceback."""
    from openpyxl import load_workbook
    from typer.testing import CliRunner

    from inspector.manual_cli import app

    book = tmp_path / "抄表.xlsx"
    runner = CliRunner(env={"COLUMNS": "200"})  # rich tables as wide as a terminal's
    r = runner.invoke(app, ["template", SITE_ID, str(book), "-c", str(cli_config)])
    assert r.exit_code == 0, r.output
    wb = load_workbook(book)
    ws = wb.active
    assert [c.value for c in ws[1]][:4] == ["网关", "设备", "表计", "计量项"]
    devices = {ws.cell(row=i, column=2).value: i for i in range(2, ws.max_row + 1)}
    assert set(devices) == {"main", "sub"}
    good = datetime(2026, 11, 20, 3, 5)            # between two stored readings of main
    ws.cell(row=devices["main"], column=6, value=good)
    ws.cell(row=devices["main"], column=7, value=main_counter(good.replace(tzinfo=SH)))
    ws.cell(row=devices["sub"], column=6, value=datetime(2026, 11, 20, 3, 5))
    ws.cell(row=devices["sub"], column=7, value=1.0)  # below 5000: backwards
    wb.save(book)

    r = runner.invoke(app, ["import", SITE_ID, str(book), "-c", str(cli_config),
                            "--author", "李工"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    assert "累计值会倒走" in r.output and "已保存 1 条，拒绝 1 条" in r.output
    rows = influx_rows(influx.url, DB, "SELECT * FROM manual_entry WHERE source = 'xlsx'")
    assert [(x["device"], x["author"]) for x in rows] == [("main", "李工")]

    r = runner.invoke(app, ["list", SITE_ID, "--from", "2026-11-20", "--to", "2026-11-21",
                            "-c", str(cli_config), "--lang", "en"])
    assert r.exit_code == 0 and "李工" in r.output and "manual reading" in r.output


@pytest.mark.parametrize("args,says", [
    (["add", SITE_ID, "main", "--at", "yesterday", "--value", "1", "--author", "x"],
     "无法识别"),
    (["add", SITE_ID, "nowhere", "--at", "2026-11-20T06:00", "--value", "1", "--author", "x"],
     "不在配置的站点文件中"),
    (["correct", SITE_ID, "main", "--at", "2026-11-20T06:01", "--value", "1", "--author", "x",
      "--reason", "x"], "没有已存的"),
    (["import", SITE_ID, "__FILE__"], "不是可读取的 XLSX 模板"),
])
def test_cli_errors_are_one_clear_sentence(cli_config: Path, tmp_path: Path, args: list[str],
                                           says: str) -> None:
    from typer.testing import CliRunner

    from inspector.manual_cli import app

    junk = tmp_path / "junk.xlsx"
    junk.write_text("not a workbook")
    args = [str(junk) if a == "__FILE__" else a for a in args]
    r = CliRunner().invoke(app, [*args, "-c", str(cli_config)])
    assert r.exit_code in (1, 2), r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    assert says in r.output


def test_every_refusal_is_translated() -> None:
    import re

    from inspector.i18n import gettext_for

    zh = gettext_for("zh-CN")
    src = (Path(__file__).parents[2] / "energy" / "manual.py").read_text(encoding="utf-8")
    src += (Path(__file__).parents[2] / "inspector" / "manual.py").read_text(encoding="utf-8")
    found = re.findall(r'ManualError\(((?:"[^"]*"\s*)+)', src)
    found += re.findall(r'warnings\.append\(\(((?:"[^"]*"\s*)+)', src)
    msgids = ["".join(re.findall(r'"([^"]*)"', m)) for m in found]
    assert len(msgids) >= 12
    assert [m for m in msgids if zh(m) == m] == []


def test_the_api_enters_under_the_tokens_name_and_fails_closed(influx: InfluxDB1) -> None:
    """POST /entries: no token 401, an inspector 403 (inspectors audit, they do not enter),
    a data clerk's entry stored under the clerk's name, a backwards one 422 with the reason
    in Chinese. (FastAPI's in-process test client drives the real app and a real influxd.)"""
    from fastapi.testclient import TestClient

    from inspector.api import create_app
    from inspector.auth import token_hash
    from inspector.config import InspectorConfig

    clerk, insp = "enm_clerk-token-0123456789abcdef", "enm_insp-token-0123456789abcdef"
    cfg = InspectorConfig.model_validate({
        "influx": {"url": influx.url, "database": DB},
        "tokens": [{"name": "zhao.clerk", "role": "data_clerk", "sha256": token_hash(clerk)},
                   {"name": "wang.inspector", "role": "inspector",
                    "sha256": token_hash(insp)}]})
    body = {"kind": "reading", "device": "main", "time": "2026-11-20T05:05",
            "value": main_counter(DAY + timedelta(hours=5, minutes=5))}
    url = f"/api/v1/sites/{SITE_ID}/entries"
    with TestClient(create_app(cfg, sites={SITE_ID: SITE})) as c:
        nobody = c.post(url, json=body)
        assert nobody.status_code == 401 and "令牌" in nobody.json()["detail"]
        assert nobody.headers["www-authenticate"] == "Bearer"
        denied = c.post(url, json=body, headers={"Authorization": f"Bearer {insp}"})
        assert denied.status_code == 403 and "无权录入" in denied.json()["detail"], denied.text
        ok = c.post(url, json=body, headers={"Authorization": f"Bearer {clerk}"})
        assert ok.status_code == 201, ok.text
        assert ok.json()["author"] == "zhao.clerk"
        bad = c.post(url, json={**body, "time": "2026-11-20T05:10", "value": 1.0},
                     headers={"Authorization": f"Bearer {clerk}"})
        assert bad.status_code == 422 and "倒走" in bad.json()["detail"]
        # a time it cannot read and a meter the site file lacks: refused in Chinese too
        when = c.post(url, json={**body, "time": "20.11.2026 05:10"},
                      headers={"Authorization": f"Bearer {clerk}"})
        assert when.status_code == 422 and "2026-10-01T08:00" in when.json()["detail"]
        assert "时间" in when.json()["detail"], when.json()
        who = c.post(url, json={**body, "device": "nowhere"},
                     headers={"Authorization": f"Bearer {clerk}"})
        assert who.status_code == 422 and "站点文件" in who.json()["detail"], who.json()
        en = c.post(url, json={**body, "device": "nowhere"},
                    headers={"Authorization": f"Bearer {clerk}", "Accept-Language": "en"})
        assert "not in the site file" in en.json()["detail"]
        listed = c.get(url, params={"start": "2026-11-20", "end": "2026-11-21"},
                       headers={"Authorization": f"Bearer {insp}"}).json()["entries"]
        assert any(e["author"] == "zhao.clerk" and e["source"] == "api" for e in listed)


def test_the_ledger_lists_the_entries_and_keeps_the_reports_figures(influx: InfluxDB1) -> None:
    """After the examples above: the month's ledger shows the correction (original, author,
    reason) and the hand-read index beside the report's consumption."""
    from inspector.ledger import fetch_ledger

    led, rep = run(influx, lambda s, _w: fetch_ledger(s, site=SITE, period=MONTH,
                                                      now_ms=END_OF_MONTH))
    (b,) = led.buildings
    (fix,) = [c for c in b.corrections if c.meter == "main"]
    assert (fix.author, fix.original) == ("王工", pytest.approx(main_counter(
        DAY + timedelta(days=1)) + GLITCH))
    assert any(e.meter == "sub" and e.value == OLD_FINAL for e in b.manual)
    assert {m.meter: m.consumption for m in b.meters} == {
        m.meter: m.amount for m in rep.buildings[0].meters}
