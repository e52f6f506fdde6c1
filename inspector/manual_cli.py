"""``enmon manual``: readings entered by hand and corrections of stored readings.

    enmon manual add plant coal-yard -q coal_mass_t --at 2026-11-30T08:00 --value 1234.5 \\
        --author 王工 --reason 地磅单 20261130-03
    enmon manual correct plant main --at 2026-11-21 --value 1960 --author 王工 \\
        --reason "表计显示 1960，采集值跳变"
    enmon manual list plant --from 2026-11-01 --to 2026-12-01
    enmon manual template plant 抄表.xlsx      # one row per meter, fill in and import
    enmon manual import plant 抄表.xlsx --author 王工

Every entry is checked against the stored readings first (a counter may not run
backwards; a correction needs a reason and a stored reading to correct) and refused with
the reason; ``--dry-run`` checks without storing. What is entered is kept with its author,
time and reason (:mod:`inspector.manual`). Texts are in Chinese by default (``--lang en``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any, NoReturn

import typer

from inspector.i18n import N_

app = typer.Typer(no_args_is_help=True, help="Manual readings (抄表) and corrections (更正) of "
                  "stored readings, with author, time and reason kept; XLSX template and import.")

_CONFIG = typer.Option(None, "-c", "--config", help="inspector YAML (influx:, sites:)")
_URL = typer.Option(None, "--influx-url", help="InfluxDB URL (overrides the config)",
                    envvar="ENMON_INFLUX_URL")
_DB = typer.Option(None, "--database", help="InfluxDB database (overrides the config)")
_LANG = typer.Option(None, "--lang", help="zh-CN (default) or en", envvar="ENMON_LANG")
_Q = typer.Option(None, "-q", "--quantity",
                  help="the quantity (default: the meter's counter in the site file)")
_AT = typer.Option(..., "--at", help="the reading's time: 2026-11-30T08:00 (site time) or epoch ms")
_AUTHOR = typer.Option(..., "--author", help="who enters it (kept with the entry)")

# the columns of the import template, in order: (key, header msgid)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("gateway", N_("Gateway")), ("device", N_("Device")), ("meter", N_("Meter")),
    ("quantity", N_("Quantity")), ("unit", N_("Unit")), ("time", N_("Reading time")),
    ("value", N_("Reading")), ("kind", N_("Kind (reading / correction)")),
    ("author", N_("Entered by")), ("reason", N_("Reason or note")))
KINDS = {"reading": "reading", "抄表": "reading", "manual": "reading",
         "correction": "correction", "更正": "correction", "corrected": "correction"}


def _lang(option: str | None) -> Any:
    from enmon.i18n import cli_lang

    return cli_lang(option)


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def _ctx(config: Path | None, url: str | None, database: str | None, site: str) -> Any:
    """The config, the site's model (None when no site file names it) and its time zone."""
    from inspector.cli import _config, _site_model

    cfg = _config(config, url, database)
    model = _site_model(cfg, site)
    return cfg, model, str(model.timezone) if model is not None else str(cfg.timezone)


def _time(text: str, tz: str, _: Any) -> int:
    from fastapi import HTTPException

    from inspector.api import parse_time

    try:
        return parse_time(text, tz=tz, default=0)
    except HTTPException as exc:
        _fail(_("time %(text)s: use 2026-11-30T08:00 (site time) or epoch milliseconds",
                text=text[:40]))
        raise AssertionError from exc


def _meter(model: Any, device: str, gateway: str | None) -> Any:
    if model is None:
        return None
    from energy import figures

    return figures.find_meter(model, device, gateway)


async def _enter(cfg: Any, model: Any, entries: list[Any], *, dry_run: bool,
                 allow_decrease: bool) -> list[Any]:
    from enmon.influx import InfluxQL, make_writer
    from inspector import manual
    from inspector.store import Store

    store, writer = Store(InfluxQL(cfg.influx)), make_writer(cfg.influx)
    try:
        return await manual.enter_many(store, writer, entries, site_model=model,
                                       dry_run=dry_run, allow_decrease=allow_decrease)
    finally:
        await store.close()
        await writer.close()


def _report(results: list[Any], lang: Any, tz: str, rows: list[int] | None = None) -> int:
    """Print what was stored and what was refused; the number refused."""
    from rich.console import Console
    from rich.table import Table

    from energy.manual import ManualError
    from inspector.i18n import gettext_for

    _ = gettext_for(lang)
    t = Table(show_lines=False)
    if rows is not None:
        t.add_column(_("Row"), justify="right")
    for h in (_("Device"), _("Quantity"), _("Reading time"), _("Reading"), _("Result")):
        t.add_column(h)
    why: list[str] = []
    for i, r in enumerate(results):
        lead = [str(rows[i])] if rows is not None else []
        if isinstance(r, ManualError):
            text = _(r.message, **r.params)
            why.append(_("row %(row)s: %(reason)s", row=rows[i], reason=text)
                       if rows is not None else text)
            t.add_row(*lead, "", "", "", "", f"[red]{_('refused')}[/]")
            continue
        e = r.entry
        warn = "; ".join(_(m, **p) for m, p in r.warnings)
        t.add_row(*lead, e.device, e.quantity, _local(e.ts, tz), f"{e.value:,.3f}",
                  _("stored") + (f" ({warn})" if warn else ""))
    con = Console(soft_wrap=True)
    con.print(t)
    for line in why:  # whole sentences, one per line, never cut by a column width
        con.print(f"{_('refused')}: {line}", markup=False)
    return len(why)


def _local(ts: int, tz: str) -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(ts / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _one(kind: str, site: str, device: str, quantity: str | None, at: str, value: float,
         author: str, reason: str, gateway: str | None, dry_run: bool, allow_decrease: bool,
         config: Path | None, influx_url: str | None, database: str | None,
         lang: str | None) -> None:
    from energy.manual import Entry
    from inspector.i18n import gettext_for

    lg = _lang(lang)
    _ = gettext_for(lg)
    cfg, model, tz = _ctx(config, influx_url, database, site)
    m = _meter(model, device, gateway)
    gw = gateway or (m.gateway if m is not None else None)
    q = quantity or (m.counter if m is not None else None)
    if gw is None or q is None:
        _fail(_("meter %(device)s is not in a site file of the config: give --gateway and "
                "--quantity", device=device))
    entry = Entry(kind, site, gw, device, q, _time(at, tz, _), value, author,  # type: ignore[arg-type]
                  reason, source="cli")
    results = asyncio.run(_enter(cfg, model, [entry], dry_run=dry_run,
                                 allow_decrease=allow_decrease))
    if _report(results, lg, tz):
        raise typer.Exit(1)


@app.command("add")
def add(
    site: str = typer.Argument(..., help="site id"),
    device: str = typer.Argument(..., help="device (meter) name"),
    at: str = _AT,
    value: float = typer.Option(..., "--value", help="the reading, in the quantity's unit"),
    author: str = _AUTHOR,
    reason: str = typer.Option("", "--reason", help="a note: where the figure comes from"),
    quantity: str = _Q,
    gateway: str = typer.Option(None, "--gateway", help="gateway (default: the site file's)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check, store nothing"),
    allow_decrease: bool = typer.Option(False, "--allow-decrease",
                                        help="accept a counter below the reading before it"),
    config: Path = _CONFIG, influx_url: str = _URL, database: str = _DB, lang: str = _LANG,
) -> None:
    """Enter a reading taken by hand.

    A meter without a gateway, coal weighed, a meter's final index at a swap. Refused
    where a reading is already stored: correct that one.
    """
    _one("reading", site, device, quantity, at, value, author, reason, gateway, dry_run,
         allow_decrease, config, influx_url, database, lang)


@app.command("correct")
def correct(
    site: str = typer.Argument(..., help="site id"),
    device: str = typer.Argument(..., help="device (meter) name"),
    at: str = _AT,
    value: float = typer.Option(..., "--value", help="the right value"),
    author: str = _AUTHOR,
    reason: str = typer.Option(..., "--reason", help="why (kept with the correction)"),
    quantity: str = _Q,
    gateway: str = typer.Option(None, "--gateway", help="gateway (default: the site file's)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check, store nothing"),
    allow_decrease: bool = typer.Option(False, "--allow-decrease",
                                        help="accept a counter below the reading before it"),
    config: Path = _CONFIG, influx_url: str = _URL, database: str = _DB, lang: str = _LANG,
) -> None:
    """Correct one stored reading (the replaced value stays in the audit trail).

    Every report, roll-up and chart follows the correction.
    """
    _one("correction", site, device, quantity, at, value, author, reason, gateway, dry_run,
         allow_decrease, config, influx_url, database, lang)


@app.command("list")
def list_entries(
    site: str = typer.Argument(..., help="site id"),
    start: str = typer.Option(..., "--from", help="readings from (site time)"),
    end: str = typer.Option(None, "--to", help="readings before (default: now)"),
    device: str = typer.Option(None, "--device", help="one meter only"),
    config: Path = _CONFIG, influx_url: str = _URL, database: str = _DB, lang: str = _LANG,
) -> None:
    """Manual readings and corrections in a time range, with who, when and why."""
    from rich.console import Console
    from rich.table import Table

    from enmon.influx import InfluxQL
    from inspector.i18n import gettext_for
    from inspector.store import Store

    _ = gettext_for(_lang(lang))
    cfg, _model, tz = _ctx(config, influx_url, database, site)
    s = _time(start, tz, _)
    e = _time(end, tz, _) if end else int(time.time() * 1000)

    async def go() -> list[dict[str, Any]]:
        store = Store(InfluxQL(cfg.influx))
        try:
            return await store.entries(site, s, e, device=device)
        finally:
            await store.close()
    rows = asyncio.run(go())
    t = Table(title=f"{site}: {_local(s, tz)} → {_local(e, tz)}")
    for h in (_("Reading time"), _("Device"), _("Quantity"), _("Kind"), _("Reading"),
              _("Replaced value"), _("Entered by"), _("Entered at"), _("Reason or note")):
        t.add_column(h)
    kinds = {"reading": _("manual reading"), "correction": _("correction")}
    for r in rows:
        t.add_row(_local(r["reading_ts"], tz), r["device"], r["quantity"],
                  kinds.get(r["kind"], r["kind"]), f"{r['value']:,.3f}",
                  "" if r["original"] is None else f"{r['original']:,.3f}", r["author"],
                  _local(r["entered_at"], tz), r["reason"])
    Console(soft_wrap=True).print(t)
    typer.echo(_("%(n)s entries", n=len(rows)))


@app.command("template")
def template(
    site: str = typer.Argument(..., help="site id"),
    out: Path = typer.Argument(..., help="the XLSX file to write"),
    config: Path = _CONFIG, lang: str = _LANG,
) -> None:
    """Write an XLSX sheet with one row per meter, to fill in and import.

    Fill in the reading time and the reading, then ``enmon manual import``.
    """
    from openpyxl import Workbook

    from enmon import quantities
    from inspector.cli import _config, _site_model
    from inspector.i18n import gettext_for

    _ = gettext_for(_lang(lang))
    model = _site_model(_config(config, None, None), site)
    if model is None:
        _fail(_("no site file for site %(site)s in the config (sites:)", site=site))
    wb = Workbook()
    ws = wb.active
    ws.title = _("Manual readings")
    ws.append([_(h) for _k, h in COLUMNS])
    for _b, m in model.meters():
        ws.append([m.gateway, m.device, m.id, m.counter, quantities.get(m.counter).unit, None,
                   None, "reading", None, None])
    for col, width in zip("ABCDEFGHIJ", (10, 14, 16, 26, 6, 18, 14, 12, 10, 30), strict=True):
        ws.column_dimensions[col].width = width
    ws.freeze_panes = "A2"
    wb.save(out)
    typer.echo(_("wrote %(path)s (%(n)s meters)", path=str(out), n=ws.max_row - 1))


def read_sheet(path: Path, site: str, tz: str, author: str | None
               ) -> tuple[list[Any], list[int], list[tuple[int, str, dict[str, Any]]]]:
    """The entries of a filled-in template: (entries, their row numbers, rows refused)."""
    from zoneinfo import ZoneInfo

    from openpyxl import load_workbook

    from energy.manual import Entry
    from inspector.api import parse_time

    wb = load_workbook(path, read_only=True, data_only=True)
    ws = wb.worksheets[0]
    entries: list[Any] = []
    numbers: list[int] = []
    bad: list[tuple[int, str, dict[str, Any]]] = []
    keys = [k for k, _h in COLUMNS]
    for n, raw in enumerate(ws.iter_rows(min_row=2, values_only=True), start=2):
        row = dict(zip(keys, raw, strict=False))
        if row.get("value") in (None, ""):
            continue  # a meter not read this time
        when = row.get("time")
        try:
            if isinstance(when, dt.datetime):
                ts = int((when if when.tzinfo else when.replace(tzinfo=ZoneInfo(tz))
                          ).timestamp() * 1000)
            else:
                ts = parse_time(str(when or ""), tz=tz, default=-1)
            value = float(str(row["value"]))
        except Exception:
            bad.append((n, N_("row %(row)s: time or reading unreadable"), {"row": n}))
            continue
        kind = KINDS.get(str(row.get("kind") or "reading").strip())
        if kind is None or ts < 0:
            bad.append((n, N_("row %(row)s: kind is reading/抄表 or correction/更正, and a "
                              "time is needed"), {"row": n}))
            continue
        entries.append(Entry(kind, site, str(row.get("gateway") or ""),  # type: ignore[arg-type]
                             str(row.get("device") or ""), str(row.get("quantity") or ""), ts,
                             value, str(row.get("author") or author or ""),
                             str(row.get("reason") or ""), source="xlsx"))
        numbers.append(n)
    return entries, numbers, bad


@app.command("import")
def import_sheet(
    site: str = typer.Argument(..., help="site id"),
    path: Path = typer.Argument(..., help="a filled-in template (enmon manual template)",
                                exists=True, dir_okay=False),
    author: str = typer.Option(None, "--author", help="who, for rows that do not say"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check every row, store nothing"),
    config: Path = _CONFIG, influx_url: str = _URL, database: str = _DB, lang: str = _LANG,
) -> None:
    """Enter every filled-in row of a template.

    Each row is checked on its own: a refused row is listed with its reason and does not
    stop the others; exit 1 if any was refused.
    """
    from inspector.i18n import gettext_for

    lg = _lang(lang)
    _ = gettext_for(lg)
    cfg, model, tz = _ctx(config, influx_url, database, site)
    try:
        entries, numbers, bad = read_sheet(path, site, tz, author)
    except Exception as exc:  # not a workbook, or not ours
        _fail(_("%(path)s is not a readable XLSX template: %(error)s", path=str(path),
                error=str(exc)[:200]))
    for _n, msg, params in bad:
        typer.echo(_(msg, **params), err=True)
    results = asyncio.run(_enter(cfg, model, entries, dry_run=dry_run, allow_decrease=False))
    refused = _report(results, lg, tz, numbers) + len(bad)
    typer.echo(_("%(ok)s stored, %(refused)s refused", ok=len(results) - refused + len(bad),
                 refused=refused) if not dry_run else
               _("%(ok)s would be stored, %(refused)s refused",
                 ok=len(results) - refused + len(bad), refused=refused))
    if refused:
        raise typer.Exit(1)

