"""``enmon ledger``: the month's energy ledger (能源台账) and the year's disclosure (能效公示).

Both are views of the report of the same period (:mod:`inspector.ledger`): the figures are
the report's, beside them the counters at the period's edges, the manual readings and the
corrections with who entered them and why. PDF to file and sign, XLSX to work in, HTML and
JSON for other systems. Chinese by default (``--lang en``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True, help="Energy ledger (台账) of a month and the annual "
                  "energy disclosure (能效公示): PDF, XLSX, HTML or JSON, the report's figures.")

_CONFIG = typer.Option(None, "-c", "--config", help="inspector YAML (influx:, sites:)")
_SITE = typer.Option(None, "--site", "-s", help="rules site file; default: the config's first")
_OUT = typer.Option(..., "-o", "--out", help="file to write: .pdf, .xlsx, .html or .json")
_LANG = typer.Option(None, "--lang", help="zh-CN (default) or en")
_URL = typer.Option(None, "--influx-url", help="InfluxDB URL (overrides the config)",
                    envvar="ENMON_INFLUX_URL")
_DB = typer.Option(None, "--database", help="InfluxDB database (overrides the config)")
SUFFIXES = (".pdf", ".xlsx", ".html", ".json")


def _prepare(config: Path | None, url: str | None, database: str | None,
             site_file: Path | None, out: Path, lang: str | None) -> tuple[Any, Any, Any]:
    from energy.site import load_site
    from inspector.cli import _config, _fail, _require_cjk_font
    from inspector.i18n import normalize

    if out.suffix not in SUFFIXES:
        _fail(f"-o must end in {', '.join(SUFFIXES)}")
    chosen = normalize(lang)
    if lang is not None and chosen is None:
        _fail(f"--lang {lang!r}: use zh-CN or en")
    if out.suffix == ".pdf":
        _require_cjk_font()
    cfg = _config(config, url, database)
    paths = [site_file] if site_file else list(cfg.sites)
    if not paths:
        _fail("give --site FILE (or sites: in the config)")
    return cfg, load_site(paths[0]), chosen or cfg.language


def _write(out: Path, lang: Any, doc: Any, html: Any, pdf: Any, as_dict: Any, book: Any
           ) -> None:
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pdf":
        pdf(doc, out, lang)
    elif out.suffix == ".xlsx":
        book(doc, out, lang)
    elif out.suffix == ".html":
        out.write_text(html(doc, lang), encoding="utf-8")
    else:
        out.write_text(json.dumps(as_dict(doc, lang), ensure_ascii=False, indent=1),
                       encoding="utf-8")
    typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes): {doc.site} {doc.period.label}, "
               f"{len(doc.buildings)} building(s)")


async def _fetch(cfg: Any, fn: Any, **kw: Any) -> Any:
    from enmon.influx import InfluxQL
    from inspector.store import Store

    store = Store(InfluxQL(cfg.influx))
    try:
        return await fn(store, **kw)
    finally:
        await store.close()


@app.command("month")
def month(
    period: str = typer.Argument(..., help="the month, e.g. 2026-11"),
    out: Path = _OUT, building: str = typer.Option(None, "--building", "-b"),
    site_file: Path = _SITE, lang: str = _LANG, config: Path = _CONFIG,
    influx_url: str = _URL, database: str = _DB,
) -> None:
    """Write the month's energy ledger.

    Per meter: the counter at the month's start and end, what a reset or meter swap added,
    the consumption (the report's), readings and completeness; per building the energy
    lines with kgce and CO2; the manual readings and corrections with author and reason.

      enmon ledger month 2026-11 -c inspector.yaml -o 台账-2026-11.pdf
    """
    from inspector import ledger, xlsx
    from inspector.cli import _fail

    cfg, site, lg = _prepare(config, influx_url, database, site_file, out, lang)
    try:
        doc, _rep = asyncio.run(_fetch(cfg, ledger.fetch_ledger, site=site, period=period,
                                       building=building))
    except (KeyError, ValueError) as exc:
        _fail(str(exc.args[0]) if exc.args else repr(exc))
    _write(out, lg, doc, ledger.ledger_html, ledger.ledger_pdf, ledger.ledger_dict,
           xlsx.write_ledger)


@app.command("disclosure")
def disclosure(
    year: str = typer.Argument(..., help="the year, e.g. 2026"),
    out: Path = _OUT, building: str = typer.Option(None, "--building", "-b"),
    site_file: Path = _SITE, lang: str = _LANG, config: Path = _CONFIG,
    influx_url: str = _URL, database: str = _DB,
) -> None:
    """Write the year's energy disclosure (for the notice board and the authority).

    Per building: total energy in tce, CO2 in t, energy per m² and per person, electricity
    per m², against the quota — the annual report's figures.

      enmon ledger disclosure 2026 -c inspector.yaml -o 能效公示-2026.pdf
    """
    from inspector import ledger, xlsx
    from inspector.cli import _fail

    cfg, site, lg = _prepare(config, influx_url, database, site_file, out, lang)
    try:
        doc, _rep = asyncio.run(_fetch(cfg, ledger.fetch_disclosure, site=site, year=year,
                                       building=building))
    except (KeyError, ValueError) as exc:
        _fail(str(exc.args[0]) if exc.args else repr(exc))
    _write(out, lg, doc, ledger.disclosure_html, ledger.disclosure_pdf,
           ledger.disclosure_dict, xlsx.write_disclosure)
