"""``enmon upload …``: run the sender, inspect the outbox, put documents, revive dead ones."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from upload.outbox import Outbox

app = typer.Typer(
    help="Key energy-using unit statistics (重点用能单位): a durable outbox of daily/monthly "
         "documents and their upload to the provincial monitoring platform.\n\n"
         "See upload/README.md and upload/sample.yaml.",
    no_args_is_help=True,
)

CONFIG = typer.Option(..., "-c", "--config", help="upload YAML file (see upload/sample.yaml)")


def _open(config: Path) -> Outbox:
    from upload.config import load_config
    from upload.outbox import Outbox

    cfg = load_config(config)
    return Outbox(cfg.outbox, backoff=cfg.backoff)


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@app.command()
def run(config: Path = CONFIG) -> None:
    """Send queued documents until Ctrl-C / SIGTERM (the send in flight is finished)."""
    import logging

    from upload.config import load_config
    from upload.outbox import Outbox
    from upload.transport import create

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = load_config(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        transport = create(cfg)
        with Outbox(cfg.outbox, backoff=cfg.backoff, send_timeout_s=cfg.timeout_s * 2) as box:
            try:
                await box.run(transport, stop, poll_s=cfg.poll_s)
            finally:
                await transport.aclose()

    asyncio.run(main())


@app.command()
def status(config: Path = CONFIG,
           state: str = typer.Option(None, "--state", help="only pending, sent or dead")) -> None:
    """One line per record: state, revision sent/acknowledged, receipt, last error."""
    from rich.console import Console
    from rich.table import Table

    if state not in (None, "pending", "sent", "dead"):
        typer.echo(f"--state {state!r}: use pending, sent or dead", err=True)
        raise typer.Exit(2)
    with _open(config) as box:
        recs = box.records(state)  # type: ignore[arg-type]
        counts = box.counts()
    table = Table("id", "record", "state", "rev", "acked", "failures", "next try", "receipt",
                  "acknowledged", "last error", title=f"outbox: {counts['pending']} pending, "
                  f"{counts['sent']} sent, {counts['dead']} dead")
    styles = {"pending": "yellow", "sent": "green", "dead": "bold red"}
    for r in recs:
        table.add_row(str(r.id), r.record_id, f"[{styles[r.state]}]{r.state}[/]",
                      str(r.revision), str(r.acked_revision or "—"), str(r.failures),
                      _when(r.next_at) if r.state == "pending" else "—",
                      r.receipt_id or "—", _when(r.acked_at), r.last_error[:60])
    Console().print(table)


@app.command()
def show(id: str = typer.Argument(..., help="row id or record id (UNIT:KIND:PERIOD)"),
         config: Path = CONFIG,
         as_json: bool = typer.Option(False, "--json", help="the whole record as JSON")) -> None:
    """A record's revisions (what was sent), attempts and receipts (what was acknowledged)."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    with _open(config) as box:
        rec = box.get(id)
        if rec is None:
            typer.echo(f"no record {id!r} in the outbox", err=True)
            raise typer.Exit(1)
        revs, atts = box.revisions(rec.id), box.attempts(rec.id)
    if as_json:
        typer.echo(json.dumps({"record": asdict(rec), "revisions": [asdict(v) for v in revs],
                               "attempts": [asdict(a) for a in atts]},
                              ensure_ascii=False, indent=2))
        return
    con = Console()
    con.print(f"[bold]{rec.record_id}[/] (id {rec.id}): {rec.state}, revision {rec.revision}, "
              f"acknowledged revision {rec.acked_revision or '—'}"
              + (f", receipt {rec.receipt_id} at {rec.received_at}" if rec.receipt_id else "")
              + (f"\nlast error: {rec.last_error}" if rec.last_error else ""))
    rt = Table("rev", "queued", "digest", "receipt", "platform time", "acknowledged",
               title="revisions")
    for v in revs:
        rt.add_row(str(v.revision), _when(v.put_at), v.digest[:12], v.receipt_id or "—",
                   v.received_at or "—", _when(v.acked_at))
    con.print(rt)
    at = Table("#", "rev", "started", "outcome", "HTTP", "receipt / detail", title="attempts")
    for a in atts:
        at.add_row(str(a.id), str(a.revision), _when(a.started_at),
                   a.outcome or "[red]interrupted[/]", str(a.status or "—"),
                   a.receipt_id or a.detail[:80])
    con.print(at)
    if revs:
        con.print_json(json.dumps(revs[-1].document, ensure_ascii=False))


@app.command()
def retry(ids: list[str] = typer.Argument(..., help="row ids or record ids of dead records"),
          config: Path = CONFIG) -> None:
    """Move dead records back to pending (after fixing what the platform refused)."""
    bad = 0
    with _open(config) as box:
        for i in ids:
            if box.retry(i):
                typer.echo(f"{i}: pending again")
            else:
                rec = box.get(i)
                typer.echo(f"{i}: " + ("no such record" if rec is None else
                                       f"is {rec.state}, not dead"), err=True)
                bad += 1
    if bad:
        raise typer.Exit(1)


@app.command()
def put(files: list[Path] = typer.Argument(..., help="JSON files, one document each"),
        config: Path = CONFIG) -> None:
    """Queue documents (enmon.keyunit/1 JSON); an identical one is a no-op."""
    from upload.outbox import DocumentError

    with _open(config) as box:
        for f in files:
            try:
                res = box.put(json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError, DocumentError) as exc:
                typer.echo(f"{f}: {exc}", err=True)
                raise typer.Exit(2) from None
            typer.echo(f"{f}: {res.record_id} revision {res.revision}"
                       + ("" if res.changed else " (unchanged)"))


@app.command()
def collect(
    period: str = typer.Argument(None, help="a day (2026-11-03) or a month (2026-11); "
                                 "default: yesterday in the site's time zone"),
    site_file: Path = typer.Option(..., "--site", "-s", help="rules site file with key_units:"),
    unit: str = typer.Option(None, "--unit", help="the unit's code (default: the site's only "
                             "key unit)"),
    config: Path = typer.Option(None, "-c", "--config", help="upload YAML; without it the "
                                "documents are printed as JSON, not queued"),
    influx_url: str = typer.Option("http://127.0.0.1:8086", "--influx-url",
                                   envvar="ENMON_INFLUX_URL", help="InfluxDB URL"),
    database: str = typer.Option("enmon", "--database", help="InfluxDB database"),
) -> None:
    """Compute a unit's day or month statistics from the database and queue them.

    A month queues each of its days and the month (the platform's Σ-days rule compares
    them). A period already queued with the same figures is a no-op; changed figures (late
    data, a correction) become the record's next revision. Run it daily after 00:05:

      enmon upload collect -s site.yaml -c upload.yaml            # yesterday
      enmon upload collect 2026-11 -s site.yaml -c upload.yaml    # November again
    """
    import datetime as dt
    from zoneinfo import ZoneInfo

    from energy.site import load_site
    from enmon.errors import ConfigError
    from enmon.influx import InfluxConfig, InfluxQL
    from upload import collect as col

    try:
        site = load_site(site_file)
        ku = col.key_unit(site, unit) if unit else None
    except (ConfigError, KeyError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    units = [u.code for u in site.key_units]
    if ku is None:
        if len(units) != 1:
            typer.echo(f"error: give --unit (the site has {len(units)} key units: "
                       f"{', '.join(units) or 'none'})", err=True)
            raise typer.Exit(2)
        code = units[0]
    else:
        code = ku.code
    if period is None:
        period = (dt.datetime.now(ZoneInfo(site.timezone)) - dt.timedelta(days=1)
                  ).strftime("%Y-%m-%d")
    kind = "day" if len(period) == 10 else "month" if len(period) == 7 else None
    if kind is None:
        typer.echo(f"error: period {period!r}: write a day 2026-11-03 or a month 2026-11",
                   err=True)
        raise typer.Exit(2)

    async def go() -> list[dict[str, object]]:
        ql = InfluxQL(InfluxConfig(url=influx_url, database=database))
        try:
            return await col.documents(ql, site, code, kind, period,  # type: ignore[arg-type]
                                       now_ms=int(time.time() * 1000))
        finally:
            await ql.close()
    try:
        docs = asyncio.run(go())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if config is None:
        typer.echo(json.dumps(docs, ensure_ascii=False, indent=1))
        return
    with _open(config) as box:
        for d in docs:
            res = box.put(d)
            typer.echo(f"{res.record_id} revision {res.revision}"
                       + ("" if res.changed else " (unchanged)"))
