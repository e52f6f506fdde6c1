"""``enmon history``, ``enmon report`` and ``enmon api``: the inspector tools on the command line.

Only typer is imported here; the database client, openpyxl, WeasyPrint and
FastAPI are imported inside the commands, so ``enmon --help`` stays fast and a
gateway install never touches them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer

# a one-command group (its callback is the command): let options follow the arguments
_ONE = {"allow_interspersed_args": True}
history_app = typer.Typer(help="One meter's (or a building's) history: values, gaps, flags, "
                               "rejected data; CSV/XLSX export.", context_settings=_ONE)
report_app = typer.Typer(help="Monthly or annual energy report (HTML/PDF/JSON) for a site or "
                              "building.", context_settings=_ONE)
api_app = typer.Typer(help="The inspector HTTP API and web console; access tokens.",
                      no_args_is_help=True)

# ``report --demo`` simulates a month first; the simulator and the code that drives it sit
# above the inspector (``stack.month.load_month``), so the ``enmon`` command hands it in
# when it mounts this app. The inspector itself imports no simulator and no rule engine.
demo_month: Callable[..., Any] | None = None

_CONFIG = typer.Option(None, "-c", "--config", help="inspector YAML (influx:, sites:, tokens:)")
_URL = typer.Option(None, "--influx-url", help="InfluxDB URL (overrides the config)",
                    envvar="ENMON_INFLUX_URL")
_DB = typer.Option(None, "--database", help="InfluxDB database (overrides the config)")


def _config(config: Path | None, url: str | None, database: str | None) -> Any:
    from inspector.config import InspectorConfig, load_config

    cfg = load_config(config) if config else InspectorConfig()
    upd: dict[str, Any] = {}
    if url:
        upd["url"] = url
    if database:
        upd["database"] = database
    if upd:
        cfg = cfg.model_copy(update={"influx": cfg.influx.model_copy(update=upd)})
    return cfg


def _site_model(cfg: Any, site: str) -> Any:
    """The site file of ``site`` among the config's (poll intervals, counter settings)."""
    from energy.site import load_site

    for p in cfg.sites:
        s = load_site(p)
        if s.site == site:
            return s
    return None


def _site_tz(cfg: Any, site: str) -> str:
    s = _site_model(cfg, site)
    return str(s.timezone) if s is not None else str(cfg.timezone)


@history_app.callback(invoke_without_command=True)
def history(
    site: str = typer.Argument(..., help="site id"),
    device: str = typer.Argument(None, help="device (meter) name; omit with --building"),
    building: str = typer.Option(None, "--building", "-b",
                                 help="every meter of this building (rolled up)"),
    start: str = typer.Option(..., "--from", help="2026-10-01 or 2026-10-01T08:00 (site time)"),
    end: str = typer.Option(None, "--to", help="end (exclusive), same forms; default and at "
                                               "most: now"),
    mode: str = typer.Option("raw", "--mode", help="raw readings, or rolled up: hour, day"),
    quantity: list[str] = typer.Option(None, "--quantity", "-q",
                                       help="quantity to show (repeat; 'all' for every one)"),
    csv_out: Path = typer.Option(None, "--csv", help="write the history to this CSV file"),
    xlsx_out: Path = typer.Option(None, "--xlsx", help="write an XLSX workbook (readings, gaps, "
                                                       "flags, rejected, about)"),
    gap_factor: float = typer.Option(2.5, "--gap-factor",
                                     help="a gap is a silence longer than this × the meter's "
                                          "poll interval (site file poll_interval_s)"),
    config: Path = _CONFIG,
    influx_url: str = _URL,
    database: str = _DB,
) -> None:
    """Show a meter's history over a time range, with gaps, flags and refused data.

    Examples:

      enmon history demo-campus school-main --from 2026-10-01 --to 2026-11-01

      enmon history demo-campus mall-main --from 2026-10-01 --to 2026-11-01 --mode day
      --xlsx mall.xlsx

      enmon history demo-campus --building admin --from 2026-10-01 --to 2026-10-08 --csv admin.csv
    """
    if (device is None) == (building is None):
        raise typer.BadParameter("give a device, or --building (not both)")
    if mode not in ("raw", "hour", "day"):
        raise typer.BadParameter("--mode: raw, hour or day")
    cfg = _config(config, influx_url, database)
    asyncio.run(_history(cfg, site, device, building, start, end, mode, quantity or None,
                         csv_out, xlsx_out, gap_factor))


async def _history(cfg: Any, site: str, device: str | None, building: str | None, start: str,
                   end: str | None, mode: str, quantity: list[str] | None, csv_out: Path | None,
                   xlsx_out: Path | None, gap_factor: float) -> None:
    import time

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from enmon.influx import InfluxQL
    from inspector import history as hist
    from inspector.api import parse_time
    from inspector.store import Store, fetch_history

    con = Console(soft_wrap=True)  # one line per fact, for grep
    model = _site_model(cfg, site)
    tz = str(model.timezone) if model is not None else str(cfg.timezone)
    now = int(time.time() * 1000)
    try:
        s = parse_time(start, tz=tz, default=0)
        e = min(parse_time(end, tz=tz, default=now), now)
    except Exception as exc:
        raise typer.BadParameter(str(getattr(exc, "detail", exc))) from None
    if e <= s:
        raise typer.BadParameter("--from must be before --to and before now")
    store = Store(InfluxQL(cfg.influx))
    try:
        if building is not None:
            devices = [m.device for m in await store.meters(site) if m.building == building]
            if not devices:
                con.print(f"[red]no meters of building {building!r} in site {site!r}[/]")
                raise typer.Exit(1)
        else:
            assert device is not None
            if await store.meter(site, device) is None:
                con.print(f"[red]no meter {device!r} in site {site!r}[/]")
                raise typer.Exit(1)
            devices = [device]
        hs = []
        with Progress(transient=True, console=Console(stderr=True)) as prog:
            task = prog.add_task("reading", total=len(devices))
            for i, d in enumerate(devices):
                def step(f: float, i: int = i) -> None:
                    prog.update(task, completed=i + f)
                hs.append(await fetch_history(
                    store, site=site, device=d, start=s, end=e, tz=tz,
                    mode=mode if building is None else (mode if mode != "raw" else "day"),
                    fields=quantity, gap_factor=gap_factor, progress=step,
                    site_model=model, now_ms=now))
                prog.update(task, completed=i + 1)
    finally:
        await store.close()
    for h in hs:
        t = Table(title=f"{site} / {h.device}  {hist.local_iso(h.start, tz)} → "
                        f"{hist.local_iso(h.end, tz)}  ({h.mode})")
        t.add_column("time")
        for c in h.columns:
            t.add_column(f"{c} [{hist.unit_of(c)}]", justify="right")
        rows = h.rows if len(h.rows) <= 40 else [*h.rows[:20], None, *h.rows[-20:]]
        for r in rows:
            if r is None:
                t.add_row(f"… {len(h.rows) - 40} more …", *[""] * len(h.columns))
                continue
            t.add_row(hist.local_iso(r["time"], tz),
                      *("" if r.get(c) is None else f"{r[c]:,.3f}" for c in h.columns))
        con.print(t)
        con.print(f"{h.readings} readings, expected every "
                  f"{hist.human_duration(h.interval_ms or 0)} "
                  f"({h.meta.get('interval_source', '')}); {len(h.gaps)} gap(s), "
                  f"{len(h.flags)} flagged value(s), {len(h.rejected)} rejected record(s)")
        for g in h.gaps:
            con.print(f"  [yellow]gap[/] {hist.local_iso(g.start, tz)} → "
                      f"{hist.local_iso(g.end, tz)} ({hist.human_duration(g.duration_ms)})")
        for f in h.flags:
            con.print(f"  [red]flag[/] {hist.local_iso(f.ts, tz)} {f.quantity}={f.value} "
                      f"{f.flag}")
        for r in h.rejected:
            con.print(f"  [magenta]rejected[/] {hist.local_iso(r['time'], tz)} {r['reason']}: "
                      f"{str(r['detail'])[:120]}")
        for e in h.entries:  # manual readings and corrections, with who and why
            what = (f"corrected {e['quantity']} {e['original']} → {e['value']}"
                    if e["kind"] == "correction" else f"manual {e['quantity']}={e['value']}")
            con.print(f"  [cyan]{e['kind']}[/] {hist.local_iso(e['reading_ts'], tz)} {what} "
                      f"by {e['author']} at {hist.local_iso(e['entered_at'], tz)}: "
                      f"{e['reason']}", markup=True)
    if csv_out is not None:
        with csv_out.open("w", newline="", encoding="utf-8") as f:
            n = hist.write_csv(hs[0], f) if building is None else hist.write_building_csv(hs, f)
        con.print(f"wrote {csv_out} ({n} rows)")
    if xlsx_out is not None:
        if len(hs) == 1:
            hist.write_xlsx(hs[0], xlsx_out)
        else:
            for h in hs:
                p = xlsx_out.with_name(f"{xlsx_out.stem}_{h.device}{xlsx_out.suffix}")
                hist.write_xlsx(h, p)
        con.print(f"wrote {xlsx_out}")


@report_app.callback(invoke_without_command=True)
def report(
    period: str = typer.Option(None, "--period", "--month", "-p",
                               help="a month (2026-10) or a year (2026)"),
    site_file: Path = typer.Option(None, "--site", "-s", help="rules site file (buildings, "
                                   "floor areas, quotas); default: the config's first site"),
    building: str = typer.Option(None, "--building", "-b", help="only this building"),
    out: Path = typer.Option(..., "-o", "--out", help="report file: .pdf, .html, .json or "
                             ".xlsx (the same figures, unrounded, as a workbook)"),
    demo: bool = typer.Option(False, "--demo", help="simulate the month first: start a "
                              "throw-away influxd, push the simulated campus through the wire "
                              "contract and ingest, then report on it"),
    lang: str = typer.Option(None, "--lang", help="zh-CN (default) or en; default: the "
                             "config's language:"),
    config: Path = _CONFIG,
    influx_url: str = _URL,
    database: str = _DB,
) -> None:
    """Write an energy report: consumption by energy type and sub-item, kgce and CO2 with the
    factors' sources, intensity against the quota, data completeness, alerts; with charts.

    Examples:

      enmon report --demo --month 2026-10 -o docs/sample-report.pdf

      enmon report -c inspector.yaml --site site.yaml --period 2026 -o campus-2026.pdf
    """
    if period is None:
        raise typer.BadParameter("--period (or --month) is required, e.g. 2026-10")
    from inspector.report import period_of

    try:  # before starting a server or reading anything: a typo costs one line, not minutes
        period_of(period, "Asia/Shanghai")
    except ValueError as exc:
        _fail(f"--period: {exc}")
    if out.suffix not in (".pdf", ".html", ".json", ".xlsx"):
        raise typer.BadParameter("-o must end in .pdf, .html, .json or .xlsx")
    from inspector.i18n import normalize

    chosen = normalize(lang)
    if lang is not None and chosen is None:
        raise typer.BadParameter(f"--lang {lang!r}: use zh-CN or en")
    if out.suffix == ".pdf":
        _require_cjk_font()  # before minutes of querying or simulating, not after
    if demo:
        try:
            rc = asyncio.run(_demo_report(period, building, out, chosen or "zh-CN"))
        except (KeyError, ValueError) as exc:  # no such building in the demo campus
            _fail(str(exc.args[0]) if exc.args else repr(exc))
        raise typer.Exit(rc)
    cfg = _config(config, influx_url, database)
    chosen = chosen or cfg.language
    from energy.site import load_site

    paths = [site_file] if site_file else list(cfg.sites)
    if not paths:
        raise typer.BadParameter("give --site FILE (or sites: in the config)")
    site = load_site(paths[0])
    if building is not None and not any(b.id == building for b in site.buildings):
        _fail(f"--building {building!r}: no such building in site {site.site!r} "
              f"(buildings: {', '.join(b.id for b in site.buildings)})")
    try:
        asyncio.run(_report(cfg.influx, site, period, building, out, chosen))
    except (KeyError, ValueError) as exc:
        _fail(str(exc.args[0]) if exc.args else repr(exc))


def _fail(message: str) -> NoReturn:
    """A bad argument: one line on stderr and exit 2, never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _require_cjk_font() -> None:
    """Exit 1 with the install hint when a PDF would print Chinese as boxes."""
    from inspector.render import MissingFontError, check_cjk_font

    try:
        check_cjk_font()
    except MissingFontError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


async def _report(influx: Any, site: Any, period: str, building: str | None, out: Path,
                  lang: Any) -> None:
    from enmon.influx import InfluxQL
    from inspector.store import Store, fetch_report

    store = Store(InfluxQL(influx))
    try:
        rep = await fetch_report(store, site=site, period=period, building=building)
    finally:
        await store.close()
    _write_report(rep, out, lang)


def _write_report(rep: Any, out: Path, lang: Any) -> None:
    import json

    from inspector import render

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pdf":
        render.render_pdf(rep, out, lang)
    elif out.suffix == ".html":
        out.write_text(render.render_html(rep, lang), encoding="utf-8")
    elif out.suffix == ".xlsx":
        from inspector import xlsx

        xlsx.write_report(rep, out, lang)
    else:
        out.write_text(json.dumps(render.report_dict(rep, lang), ensure_ascii=False, indent=1),
                       encoding="utf-8")
    typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes): {rep.site} {rep.period.label}, "
               f"{len(rep.buildings)} building(s), {rep.kgce:,.0f} kgce")


async def _demo_report(period: str, building: str | None, out: Path, lang: Any) -> int:
    import tempfile

    from rich.progress import Progress

    from enmon.influx import InfluxConfig, InfluxQL, make_writer
    from enmon.localrun import InfluxDB1
    from inspector.report import period_of
    from inspector.store import Store, fetch_report

    if len(period) != 7:
        raise typer.BadParameter("--demo simulates one month: --month 2026-10")
    if demo_month is None:
        raise typer.BadParameter("--demo needs the full enmon command (pip install 'enmon[dev]')")
    load_month = demo_month
    p = period_of(period, "Asia/Shanghai")
    import datetime as dt
    from zoneinfo import ZoneInfo

    start = dt.datetime.fromtimestamp(p.start / 1000, ZoneInfo(p.tz))
    end = dt.datetime.fromtimestamp(p.end / 1000, ZoneInfo(p.tz))
    with tempfile.TemporaryDirectory(prefix="enmon-report-demo-") as tmp:
        server = InfluxDB1(workdir=Path(tmp) / "influxd")
        server.start()
        try:
            cfg = InfluxConfig(url=server.url, database="enmon")
            q = InfluxQL(cfg)
            w = make_writer(cfg)
            await q.create_database()
            with Progress() as prog:
                task = prog.add_task(f"simulating {period}", total=1.0)
                # one hour past the month: the month's last hour needs a reading after it
                loaded = await load_month(query=q, writer=w, start=start,
                                          end=end + dt.timedelta(hours=1),
                                          scenarios=["boiler-fouls-slowly"],
                                          boiler_every_s=6 * 3600.0,
                                          progress=lambda f: prog.update(task, completed=f))
            typer.echo(f"simulated {loaded.samples:,} readings in {loaded.batches:,} batches "
                       f"({loaded.lines:,} points) in {loaded.seconds:.1f} s")
            rep = await fetch_report(Store(q), site=loaded.site, period=period,
                                     building=building, now_ms=p.end)
            await q.close()
            await w.close()
            _write_report(rep, out, lang)
        finally:
            server.stop()
    return 0


@api_app.command("run")
def api_run(
    config: Path = typer.Option(..., "-c", "--config", help="inspector YAML"),
    host: str = typer.Option("127.0.0.1", "--host", help="listen address"),
    port: int = typer.Option(8090, "--port", help="listen port"),
) -> None:
    """Serve the API (OpenAPI at /docs) and the web console (at /)."""
    import uvicorn

    from inspector.api import create_app
    from inspector.config import load_config

    cfg = load_config(config)
    if not cfg.tokens:
        typer.echo("warning: no tokens configured; nobody can sign in (enmon api token)",
                   err=True)
    uvicorn.run(create_app(cfg), host=host, port=port, log_level="info")


@api_app.command("token")
def api_token(
    name: str = typer.Option(..., "--name", help="who gets it, e.g. wang.inspector"),
    role: str = typer.Option("inspector", "--role",
                             help="inspector (reads), facility_manager (+ acknowledges), "
                                  "data_clerk (+ enters readings) or operator (+ sends "
                                  "device commands)"),
) -> None:
    """Make an access token. Prints the token once (give it to the person) and the line for
    the config's tokens: list (only its SHA-256 is stored)."""
    from inspector.auth import PERMISSIONS, new_token, token_hash

    if role not in PERMISSIONS:
        raise typer.BadParameter(f"--role: one of {', '.join(PERMISSIONS)}")
    tok = new_token()
    typer.echo(f"token (shown once): {tok}", err=True)
    sys.stdout.write(f"  - {{name: {name}, role: {role}, sha256: {token_hash(tok)}}}\n")


@api_app.command("openapi")
def api_openapi(out: Path = typer.Option(None, "-o", help="write here (default: stdout)")
                ) -> None:
    """Print the OpenAPI document (for client generators and reviews)."""
    import json

    from inspector.api import create_app
    from inspector.config import InspectorConfig

    text = json.dumps(create_app(InspectorConfig(), sites={}).openapi(), indent=1)
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text + "\n")
