"""``enmon rules …``: run the rule engine, check site files, acknowledge and silence alerts."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Rule engine: quotas, boiler efficiency, data quality and thresholds → alerts → "
         "webhook / WeCom / DingTalk / Feishu / e-mail / MQTT and the InfluxDB `alert` history.\n\n"
         "Start with `enmon rules check -c rules.yaml`, then `enmon rules run -c rules.yaml`. "
         "See rules/README.md and rules/sample-rules.yaml, rules/sample-site.yaml.",
    no_args_is_help=True,
)

URL = typer.Option("http://127.0.0.1:8095", "--url", help="the rules service's HTTP API")
TOKEN = typer.Option(None, "--token-env", help="env var holding the API bearer token")


@app.command()
def run(config: Path = typer.Option(..., "-c", "--config", help="rules YAML file")) -> None:
    """Run the rule engine until Ctrl-C / SIGTERM."""
    import logging

    from rules.config import load_config
    from rules.service import run as run_service

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = load_config(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_service(cfg, stop)

    # A pass builds hundreds of thousands of short-lived objects (readings, intervals,
    # lines); the start-up heap (imports, config) never becomes garbage: frozen out of the
    # collector's scans, which then run less often (as ingest does).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    asyncio.run(main())


LANG = typer.Option(None, "--lang", help="zh-CN (default) or en; default: $ENMON_LANG")


@app.command()
def check(config: Path = typer.Option(None, "-c", "--config", help="rules YAML file"),
          site: list[Path] = typer.Option([], "--site", help="a site file to check on its own"),
          lang: str | None = LANG) -> None:
    """Validate a rules file and its site files; print what will be watched and against what."""
    from rich.console import Console
    from rich.table import Table

    from energy.quota import building_intensity
    from energy.site import load_site
    from enmon.i18n import gettext_for
    from rules.config import load_config

    _ = gettext_for(_lang(lang))
    files = list(site)
    if config is not None:
        cfg = load_config(config)
        files += cfg.sites
        typer.echo(_("%(config)s: ok — %(thresholds)s thresholds, %(channels)s channels, "
                     "state in %(state_dir)s", config=str(config),
                     thresholds=len(cfg.thresholds), channels=len(cfg.all_channels()),
                     state_dir=str(cfg.state_dir)))
    table = Table(_("site"), _("building"), "m²", _("meters"), _("boilers"),
                  _("quota (annual intensity)"))
    for f in files:
        s = load_site(f)
        for b in s.buildings:
            if b.quota is None:
                q = "—"
            elif b.quota.ref:
                q = (f"{building_intensity(b):.2f} {b.quota.quota_unit} "
                     f"({b.quota.ref}, {b.quota.level})")
            else:
                q = f"{b.quota.value:g} {b.quota.unit} ({b.quota.source})"
            table.add_row(s.site, b.id, f"{b.floor_area_m2:g}", str(len(b.meters)),
                          str(len(b.boilers)), q)
    Console().print(table)


def _call(method: str, url: str, body: dict[str, Any] | None, token_env: str | None,
          lang: str | None = None) -> Any:
    from enmon.i18n import gettext_for

    _ = gettext_for(_lang(lang))
    headers = {"Content-Type": "application/json"}
    if token_env:
        headers["Authorization"] = f"Bearer {os.environ.get(token_env, '')}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        typer.echo(_("error: the rules service answered HTTP %(code)s: %(detail)s",
                     code=exc.code, detail=detail), err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(_("error: cannot reach the rules service at %(url)s: %(error)s", url=url,
                     error=str(exc)), err=True)
        raise typer.Exit(1) from None


TZ = typer.Option("Asia/Shanghai", "--tz", envvar="ENMON_TZ",
                  help="time zone the times are shown in (the site's)")


def _lang(option: str | None) -> Any:
    from enmon.i18n import cli_lang

    try:
        return cli_lang(option)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def alerts(url: str = URL, all_: bool = typer.Option(False, "--all", help="include resolved"),
           token_env: str | None = TOKEN, lang: str | None = LANG, tz: str = TZ) -> None:
    """List pending and firing alerts as a table: rule, where, since (site time), summary."""
    from rich.console import Console
    from rich.table import Table

    from enmon import names, summaries
    from enmon.i18n import gettext_for, local_time

    lg = _lang(lang)
    _ = gettext_for(lg)
    rows = _call("GET", f"{url}/alerts", None, token_env, lang)
    table = Table()
    # the fingerprint is what `enmon rules ack` takes: never cut, whatever the terminal width
    table.add_column(_("fingerprint"), no_wrap=True, min_width=16)
    for header in (_("state"), _("severity"), _("rule"), _("where"), _("since"), _("summary"),
                   _("acknowledged by")):
        table.add_column(header, overflow="fold")
    for a in rows:
        if not all_ and a["state"] not in ("pending", "firing"):
            continue
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
        since = a.get("fired_at") or a.get("active_since")
        table.add_row(a["fingerprint"], names.name(names.STATES, a["state"], lg),
                      names.name(names.SEVERITIES, a["severity"], lg),
                      names.name(names.RULES, a["rule"], lg), labels,
                      local_time(int(since), tz) if since else "",
                      summaries.text_of(a, lg, tz=tz),
                      a.get("acked_by") or "")
    Console().print(table)


@app.command()
def ack(fingerprint: str = typer.Argument(..., help="alert fingerprint (unique prefix is enough)"),
        by: str = typer.Option(os.environ.get("USER", "cli"), "--by", help="who acknowledges"),
        url: str = URL, token_env: str | None = TOKEN, lang: str | None = LANG) -> None:
    """Acknowledge an alert: no more repeats until it resolves and fires again."""
    from enmon.i18n import gettext_for

    _ = gettext_for(_lang(lang))
    r = _call("POST", f"{url}/alerts/{fingerprint}/ack", {"by": by}, token_env, lang)
    typer.echo(_("acknowledged %(fingerprint)s by %(by)s", fingerprint=r["acknowledged"],
                 by=r["by"]))


def _duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not m:
        raise typer.BadParameter("use e.g. 30m, 2h, 1d")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@app.command()
def silence(match: list[str] = typer.Option(..., "--match", help="label=pattern, repeatable"),
            for_: str = typer.Option("2h", "--for", help="how long, e.g. 30m, 2h, 1d"),
            comment: str = typer.Option("", "--comment"),
            by: str = typer.Option(os.environ.get("USER", "cli"), "--by"),
            url: str = URL, token_env: str | None = TOKEN, lang: str | None = LANG,
            tz: str = TZ) -> None:
    """Silence matching alerts for a while (state changes are still recorded)."""
    from enmon.i18n import gettext_for, local_time

    _ = gettext_for(_lang(lang))
    matchers = dict(m.split("=", 1) for m in match if "=" in m)
    if len(matchers) != len(match):
        raise typer.BadParameter("each --match is label=pattern")
    r = _call("POST", f"{url}/silences", {"match": matchers, "duration_s": _duration(for_),
                                           "comment": comment, "by": by}, token_env, lang)
    typer.echo(_("silence %(id)s until %(ends)s for %(match)s", id=r["id"],
                 ends=local_time(int(r["ends"]), tz),
                 match=", ".join(f"{k}={v}" for k, v in sorted(r["matchers"].items()))))


@app.command()
def recompute(
    config: Path = typer.Option(..., "-c", "--config", help="rules YAML file"),
    site: list[str] = typer.Option([], "--site", help="site id (repeatable; default: all)"),
    from_: str = typer.Option(..., "--from", help="first day to recompute, e.g. 2026-01-01"),
    to: str = typer.Option("", "--to", help="last day (default: today)"),
    lang: str | None = LANG,
) -> None:
    """Mark a period for recomputation: the running rule engine rebuilds its roll-ups.

    Roll-ups follow what ingest marks as stored. Use this after changing a site file
    (a recorded meter replacement, a rollover value, a new virtual meter), after writing
    readings into InfluxDB by other means, or after upgrading from a version without
    markers. The next scheduled pass recomputes every hour, day and month of the period.

    Example:

      enmon rules recompute -c rules.yaml --site campus --from 2026-01-01
    """
    import datetime as dt
    import time
    from zoneinfo import ZoneInfo

    from enmon import touched as tch
    from enmon.errors import ConfigError
    from enmon.i18n import gettext_for
    from enmon.influx import make_writer
    from rules.config import load_config

    _ = gettext_for(_lang(lang))
    cfg = load_config(config)
    from energy.site import load_site

    sites = [load_site(p) for p in cfg.sites]
    chosen = [s for s in sites if not site or s.site in site]
    unknown = set(site) - {s.site for s in sites}
    if unknown:
        raise ConfigError(str(config), "sites", f"no site {sorted(unknown)} in the rules file",
                          fix=f"one of {', '.join(s.site for s in sites)}")

    def day(text: str, tz: str, end: bool) -> int:
        try:
            d = dt.date.fromisoformat(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a date like 2026-01-01") from None
        t = dt.datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz))
        return int(((t + dt.timedelta(days=1)) if end else t).timestamp() * 1000)

    stamp = tch.Stamper()

    async def main() -> None:
        w = make_writer(cfg.influx)
        try:
            for s in chosen:
                lo = day(from_, s.timezone, False)
                hi = day(to, s.timezone, True) if to else int(time.time() * 1000)
                ranges = {(m.gateway, m.device): (lo, hi) for _, m in s.meters()}
                await w.write([tch.marker_line(s.site, "recompute", ranges,
                                               stamp(int(time.time() * 1000)))])
                first = f"{dt.datetime.fromtimestamp(lo / 1000, ZoneInfo(s.timezone)):%Y-%m-%d}"
                typer.echo(_("%(site)s: %(meters)d meters marked from %(day)s — the rule "
                             "engine recomputes them on its next pass", site=s.site,
                             meters=len(ranges), day=first))
        finally:
            await w.close()

    asyncio.run(main())


def _held(db: Any, console: Any, _: Any, tz: str) -> None:
    """What waits in the outbox besides messages: alerts held for their group, and the
    escalations scheduled for alerts nobody has acknowledged (none: nothing printed)."""
    import datetime as dt
    import sqlite3
    from zoneinfo import ZoneInfo

    from rich.table import Table

    def when(ts: float) -> str:
        return f"{dt.datetime.fromtimestamp(float(ts), ZoneInfo(tz)):%Y-%m-%d %H:%M:%S}"

    try:
        groups = db.execute("SELECT channel, group_key, COUNT(*), MIN(due_at) FROM grouped "
                            "GROUP BY channel, group_key ORDER BY 4").fetchall()
        escalations = db.execute("SELECT target, fingerprint, source, due_at FROM escalation "
                                 "ORDER BY due_at").fetchall()
    except sqlite3.OperationalError:  # an outbox written before grouping existed
        return
    if groups:
        t = Table(title=_("alerts waiting for their group"))
        for header in (_("channel"), _("group"), _("alerts"), _("sent at")):
            t.add_column(header, overflow="fold")
        for ch, key, n, due in groups:
            t.add_row(ch, key, str(n), when(due))
        console.print(t)
    if escalations:
        t = Table(title=_("scheduled escalations"))
        for header in (_("to channel"), _("alert"), _("first notified on"), _("escalated at")):
            t.add_column(header, overflow="fold")
        for target, fp, source, due in escalations:
            t.add_row(target, fp, source, when(due))
        console.print(t)


@app.command()
def outbox(config: Path = typer.Option(..., "-c", "--config", help="rules YAML file"),
           dead: bool = typer.Option(False, "--dead", help="list messages that gave up"),
           lang: str | None = LANG, tz: str = TZ) -> None:
    """Show queued and undeliverable notifications (read-only): a table of messages per
    channel and state, and with --dead each message that gave up, with its last error."""
    import datetime as dt
    import sqlite3
    from zoneinfo import ZoneInfo

    from rich.console import Console
    from rich.table import Table

    from enmon import names
    from enmon.i18n import gettext_for
    from rules.config import load_config

    lg = _lang(lang)
    _ = gettext_for(lg)
    cfg = load_config(config)
    path = cfg.state_dir / "outbox.db"
    if not path.exists():
        typer.echo(_("error: no outbox at %(path)s: the rule engine has not run with this "
                     "state_dir yet", path=str(path)), err=True)
        raise typer.Exit(1)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    console = Console()
    counts = Table(title=_("notifications in the outbox"))
    for header in (_("channel"), _("state"), _("messages")):
        counts.add_column(header)
    for ch, state, n in db.execute(
            "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state ORDER BY 1, 2"):
        counts.add_row(ch, names.name(names.OUTBOX_STATES, state, lg), str(n))
    console.print(counts)
    _held(db, console, _, tz)
    if not dead:
        return
    table = Table(title=_("messages that gave up"))
    table.add_column("#", no_wrap=True)
    for header in (_("channel"), _("rule"), _("where"), _("queued at"), _("attempts"),
                   _("last error")):
        table.add_column(header, overflow="fold")
    for rid, ch, body, attempts, created, err in db.execute(
            "SELECT id, channel, body, attempts, created_at, last_error FROM outbox "
            "WHERE state = 'dead' ORDER BY id"):
        try:
            note = json.loads(body)
        except ValueError:
            note = {}
        labels = note.get("labels") or {}
        where = labels.get("building") or labels.get("device") or labels.get("site", "")
        queued = dt.datetime.fromtimestamp(float(created), ZoneInfo(tz))
        table.add_row(str(rid), ch, names.name(names.RULES, str(note.get("rule", "")), lg),
                      str(where), f"{queued:%Y-%m-%d %H:%M:%S}", str(attempts), err)
    console.print(table)
