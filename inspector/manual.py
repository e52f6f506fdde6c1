"""Entering manual readings and corrections into the database (the I/O side of
:mod:`energy.manual`).

One entry is one write of three points, in one request:

- the reading itself, on the ``meter`` series the meter's readings are stored in (the same
  tags, so it is *the* reading at that time, never a second one beside it), with
  ``flag_<quantity>`` = ``manual`` or ``corrected``;
- the audit record, a ``manual_entry`` point stamped with the time of entry: the kind,
  the reading's time, the value, the value it replaced (a correction), author, reason and
  source. Nothing ever deletes or rewrites these, so the original of every corrected
  reading stays queryable and the history shows who changed what, when and why;
- an ``energy_touched`` marker (:mod:`enmon.touched`) for the reading's time, so the rule
  engine's next pass recomputes the hours, days and months the entry changes — the
  roll-ups, the quota state and Grafana follow the correction as they follow late data.

A gateway resends a batch ingest has not acknowledged, and that resend writes the measured
value onto the point again; the rule engine's next pass writes the correction back
(:mod:`rules.corrections`, from the audit record, which says what stands).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from energy.manual import MEASUREMENT, Checked, Entry, ManualError, Neighbours, check, fields_of
from enmon import touched as tch
from enmon.influx import ident, quote
from enmon.lineproto import line

WORKER = "manual"
_stamp = tch.Stamper()

SERIES_TAGS = ("building", "category", "energy_type")


async def neighbours(store: Any, e: Entry) -> tuple[Neighbours, dict[str, str] | None]:
    """The readings of ``e``'s counter around ``e.ts``, and the tags of the stored point at
    ``e.ts`` (None when nothing is stored there)."""
    q, where = ident(e.quantity), (f"site = {quote(e.site)} AND gateway = {quote(e.gateway)} "
                                   f"AND device = {quote(e.device)}")
    at_rows = await store.q.query(
        f'SELECT {q}, {ident("flag_" + e.quantity)} FROM "meter" WHERE {where} '
        f"AND time = {e.ts}ms GROUP BY *")
    at: float | None = None
    at_flag: str | None = None
    tags: dict[str, str] | None = None
    for s in at_rows:
        for row in s.get("values", []):
            if row[1] is not None:
                at, at_flag, tags = float(row[1]), row[2], dict(s.get("tags") or {})
    before = await store.rows(f'SELECT last({q}) AS v FROM "meter" WHERE {where} '
                              f"AND time < {e.ts}ms")
    after = await store.rows(f'SELECT first({q}) AS v FROM "meter" WHERE {where} '
                             f"AND time > {e.ts}ms")

    def pick(rows: list[dict[str, Any]]) -> tuple[int, float] | None:
        for r in rows:
            if r.get("v") is not None:
                return int(r["time"]), float(r["v"])
        return None

    return Neighbours(pick(before), at, pick(after), at_flag), tags


async def series_tags(store: Any, e: Entry, site_model: Any = None) -> dict[str, str]:
    """The tags of the meter's stored series, or of its line in the site file."""
    rows = await store.q.query(
        f'SELECT last({ident(e.quantity)}) FROM "meter" WHERE site = {quote(e.site)} AND '
        f"gateway = {quote(e.gateway)} AND device = {quote(e.device)} GROUP BY *")
    for s in rows:
        if s.get("values"):
            return dict(s.get("tags") or {})
    if site_model is not None:
        for b, m in site_model.meters():
            if m.gateway == e.gateway and m.device == e.device:
                return {"building": b.id, "category": m.category, "energy_type": m.energy_type}
    raise ManualError("no meter %(device)s of gateway %(gateway)s in site %(site)s: nothing stored "
                      "and not in the site file", device=e.device, gateway=e.gateway, site=e.site)


def entry_lines(e: Entry, tags: dict[str, str]) -> list[str]:
    """The three points of one entry (see the module's docstring)."""
    meter_tags = {"site": e.site, "gateway": e.gateway, "device": e.device,
                  **{k: v for k, v in tags.items() if k in SERIES_TAGS}}
    audit: dict[str, float | int | str | bool] = {
        "reading_ts": e.ts, "value": float(e.value), "author": e.author, "reason": e.reason,
        "source": e.source}
    if e.original is not None:
        audit["original"] = float(e.original)
    return [
        line("meter", meter_tags, fields_of(e), e.ts),
        line(MEASUREMENT, {"site": e.site, "gateway": e.gateway, "device": e.device,
                           "quantity": e.quantity, "kind": e.kind}, audit, e.entered_at),
        tch.marker_line(e.site, WORKER, {(e.gateway, e.device): (e.ts, e.ts)}, e.entered_at),
    ]


async def enter(store: Any, writer: Any, entry: Entry, *, site_model: Any = None,
                now_ms: int | None = None, allow_decrease: bool = False,
                dry_run: bool = False) -> Checked:
    """Check ``entry`` against the stored readings and store it (unless ``dry_run``).

    Raises :class:`energy.manual.ManualError` for an entry that cannot be right.
    """
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    near, at_tags = await neighbours(store, entry)
    swaps: list[int] = []
    if site_model is not None:
        for _, m in site_model.meters():
            if m.gateway == entry.gateway and m.device == entry.device:
                swaps += [r.at for r in m.replacements]
    checked = check(entry, near, now_ms=now, allow_decrease=allow_decrease, swaps=swaps)
    # stamped by the wall clock whatever ``now_ms`` says: the rule engine reads the markers
    # stored since its last pass by the time they were stored
    e = replace(checked.entry, entered_at=_stamp(int(time.time() * 1000)),
                original=near.at if entry.kind == "correction" else None)
    tags = at_tags if at_tags is not None else await series_tags(store, e, site_model)
    if not dry_run:
        await writer.write(entry_lines(e, tags))
    checked.entry = e
    return checked


async def enter_many(store: Any, writer: Any, entries: Sequence[Entry], **kw: Any
                     ) -> list[Checked | ManualError]:
    """Each entry checked and stored in order; a refused one does not stop the others."""
    out: list[Checked | ManualError] = []
    for e in entries:
        try:
            out.append(await enter(store, writer, e, **kw))
        except ManualError as err:
            out.append(err)
    return out


def row_entry(r: dict[str, Any]) -> dict[str, Any]:
    """A ``manual_entry`` row as the surfaces show it (times in ms, the kind spelt out)."""
    return {"kind": r.get("kind", ""), "gateway": r.get("gateway", ""),
            "device": r.get("device", ""), "quantity": r.get("quantity", ""),
            "reading_ts": int(r.get("reading_ts") or 0), "value": r.get("value"),
            "original": r.get("original"), "author": r.get("author") or "",
            "reason": r.get("reason") or "", "source": r.get("source") or "",
            "entered_at": int(r["time"])}
