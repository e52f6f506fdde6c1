"""One meter's history as an inspector reads it: values, gaps, flags, refusals; CSV and XLSX.

Pure (no I/O apart from the file an export is written to). The store hands in
rows; this module decides what is a gap, which values were doubtful and what
the rolled-up figures are, so the CLI, the API and the console all show the
same history.

A *gap* is a stretch where readings were expected and none is stored: longer
than ``gap_factor`` (:data:`GAP_TOLERANCE`, 2.5) × the meter's **configured**
poll interval (``poll_interval_s`` of its meter in the site file), including a
silent start or end of the range. The range never runs past now: the future
holds no readings and owes none. A failed read produces no value (never 0), so
a gap is exactly what the gateway could not read or what never arrived.

The median spacing of the readings is no measure of what was expected: a meter
with hourly history and 15-minute recent data has a 15-minute median over a
week (every hourly spacing then looked like a gap) and an hourly one over a
year (a 2-hour outage of the live data vanished). It is used only for a meter no
site file knows, and the history says so (``meta["interval_source"]``).
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TextIO
from zoneinfo import ZoneInfo

from enmon import quantities

if TYPE_CHECKING:
    from energy.site import Meter

Mode = Literal["raw", "hour", "day"]
# a gap: no reading for more than this × the poll interval. One missed poll (2 ×) is
# noise a report absorbs; two and a half intervals is at least two missed reads in a row.
GAP_TOLERANCE = 2.5


@dataclass(frozen=True, slots=True)
class Gap:
    """No reading between ``start`` and ``end`` (epoch ms)."""

    start: int
    end: int
    edge: bool = False  # touches the start or end of the requested range

    @property
    def duration_ms(self) -> int:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "duration_s": self.duration_ms / 1000,
                "edge": self.edge}


@dataclass(frozen=True, slots=True)
class FlagEvent:
    """A value the gateway or ingest marked as doubtful."""

    ts: int
    quantity: str
    flag: str
    value: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "quantity": self.quantity, "flag": self.flag, "value": self.value}


@dataclass(slots=True)
class History:
    site: str
    device: str
    start: int
    end: int
    tz: str
    mode: Mode
    columns: list[str]
    rows: list[dict[str, Any]]  # {"time": ms, column: value, ...}
    gaps: list[Gap] = field(default_factory=list)
    flags: list[FlagEvent] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    interval_ms: int | None = None
    readings: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    # manual readings and corrections of this meter's readings in the range, oldest entry
    # first: who entered which value, when and why, and what a correction replaced
    entries: list[dict[str, Any]] = field(default_factory=list)

    def stretches(self) -> list[tuple[int, int]]:
        """The spans of the range that have data: the range minus its gaps, in time order.

        The console draws one line per stretch, so the line breaks at a real gap only.
        """
        out: list[tuple[int, int]] = []
        t = self.start
        for g in self.gaps:
            if g.start > t:
                out.append((t, g.start))
            t = max(t, g.end)
        if t < self.end and (self.readings or not self.gaps):
            out.append((t, self.end))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "stretches": [list(s) for s in self.stretches()],
            "gap_tolerance": self.meta.get("gap_tolerance"),
            "site": self.site, "device": self.device, "start": self.start, "end": self.end,
            "tz": self.tz, "mode": self.mode, "columns": self.columns, "rows": self.rows,
            "gaps": [g.as_dict() for g in self.gaps], "flags": [f.as_dict() for f in self.flags],
            "rejected": self.rejected, "interval_s": (self.interval_ms or 0) / 1000,
            "readings": self.readings, "meta": self.meta, "entries": self.entries,
            "units": {c: unit_of(c) for c in self.columns},
        }


def unit_of(column: str) -> str:
    """The unit of a history column (``active_power_kw_mean`` → ``kW``)."""
    for suffix in ("_mean", "_min", "_max", "_consumption"):
        if column.endswith(suffix):
            column = column[: -len(suffix)]
            break
    if column.endswith("_count"):
        return "readings"
    q = quantities.QUANTITIES.get(column)
    return q.unit if q else ""


def typical_interval(times: Sequence[int]) -> int | None:
    """The median spacing of readings: the fallback for a meter no site file knows."""
    diffs = [b - a for a, b in itertools.pairwise(times) if b > a]
    return int(statistics.median(diffs)) if diffs else None


def find_gaps(times: Sequence[int], start: int, end: int, *, interval_ms: int | None,
              gap_factor: float = GAP_TOLERANCE) -> list[Gap]:
    """Stretches longer than ``gap_factor × interval_ms`` without a reading, in time order.

    ``interval_ms`` is the spacing readings were expected at (the poll interval).

    With no readings at all the whole range is one gap.
    """
    if not times:
        return [Gap(start, end, edge=True)] if end > start else []
    if interval_ms is None:
        return []
    limit = gap_factor * interval_ms
    out: list[Gap] = []
    if times[0] - start > limit:
        out.append(Gap(start, times[0], edge=True))
    for a, b in itertools.pairwise(times):
        if b - a > limit:
            out.append(Gap(a, b))
    if end - times[-1] > limit:
        out.append(Gap(times[-1], end, edge=True))
    return out


def raw_history(*, site: str, device: str, start: int, end: int, tz: str,
                fields: Sequence[str], rows: Iterable[dict[str, Any]] = (),
                columns: Mapping[str, Sequence[Any]] | None = None,
                rejected: Iterable[dict[str, Any]] = (), gap_factor: float = GAP_TOLERANCE,
                poll_interval_s: float | None = None,
                meta: dict[str, Any] | None = None) -> History:
    """Raw readings with gaps and flags found.

    The readings come as ``rows`` (one dict per point, ``{"time": ms, field: value,
    "flag_<field>": text}``) or, from the store, as ``columns`` (``"time"`` and those keys
    → one list each, by time), which a year of points is read as: the values are then
    converted a column at a time and the flags looked for only in a flag column that has
    one.

    ``poll_interval_s`` is the meter's configured poll interval (the site file's); without
    it the median spacing stands in and ``meta["interval_source"]`` says so.
    """
    if columns is None:
        listed = list(rows)
        names = ["time", *fields, *(f"flag_{f}" for f in fields), "flag_ts"]
        columns = {n: [r.get(n) for r in listed] for n in names}
    times = [t if type(t) is int else int(t) for t in columns["time"]]
    n = len(times)
    none_col: list[Any] = [None] * n
    values = [_floats(columns.get(f) or none_col) for f in fields]
    found: list[tuple[int, int, FlagEvent]] = []  # (point, field's place, event): row order
    for j, f in enumerate(fields):
        fc = columns.get(f"flag_{f}")
        if fc and any(fc):
            vals = values[j]
            found += [(i, j, FlagEvent(times[i], f, str(x), vals[i]))
                      for i, x in enumerate(fc) if x]
    tc = columns.get("flag_ts")
    if tc and any(tc):
        found += [(i, len(fields), FlagEvent(times[i], "ts", str(x), None))
                  for i, x in enumerate(tc) if x]
    found.sort(key=lambda e: (e[0], e[1]))
    out_rows = _rows(times, list(fields), values)
    if poll_interval_s is not None:
        interval: int | None = int(poll_interval_s * 1000)
        source = "site file poll_interval_s"
    else:
        interval = typical_interval(times)
        source = "median spacing of the readings (no site file names this meter)"
    info = {**(meta or {}), "interval_source": source, "gap_tolerance": gap_factor}
    return History(site=site, device=device, start=start, end=end, tz=tz, mode="raw",
                   columns=list(fields), rows=out_rows,
                   gaps=find_gaps(times, start, end, interval_ms=interval, gap_factor=gap_factor),
                   flags=[e for _, _, e in found], rejected=relevant_rejected(rejected, device),
                   interval_ms=interval, readings=n, meta=info)


def _rows(times: list[int], fields: list[str], values: list[list[float | None]]
          ) -> list[dict[str, Any]]:
    """``{"time": ms, field: value, …}`` per point. A dict display of one to three fields
    (a history's usual one or two) builds a 35,040-point year in a third of the time
    ``dict(zip(keys, row))`` takes."""
    if len(fields) == 1:
        (f0,), (v0,) = fields, values
        return [{"time": t, f0: a} for t, a in zip(times, v0, strict=True)]
    if len(fields) == 2:
        (f0, f1), (v0, v1) = fields, values
        return [{"time": t, f0: a, f1: b} for t, a, b in zip(times, v0, v1, strict=True)]
    if len(fields) == 3:
        (f0, f1, f2), (v0, v1, v2) = fields, values
        return [{"time": t, f0: a, f1: b, f2: c}
                for t, a, b, c in zip(times, v0, v1, v2, strict=True)]
    keys = ["time", *fields]
    return [dict(zip(keys, r, strict=True)) for r in zip(times, *values, strict=True)]


def _floats(col: Sequence[Any]) -> list[float | None]:
    """A column of values as floats (the JSON of a float field holds ``1000`` for 1000.0)."""
    return [None if v is None else float(v) for v in col]


def rolled_history(*, raw: History, gauges: Sequence[str], bucket_rows: Iterable[dict[str, Any]],
                   counters: dict[str, list[tuple[int, float]]], mode: Mode,
                   meter: Meter | None = None) -> History:
    """The same history rolled up per hour or day: gauges as mean/min/max/count (computed
    by the database), counters as consumption per bucket (``energy.figures.meter_intervals``
    with the site file's rollover, replacements and jitter of ``meter``, so resets,
    rollovers, swaps and gaps are treated as in every report)."""
    from energy import accounting, figures

    assert mode in ("hour", "day")
    columns: list[str] = []
    for g in gauges:
        columns += [f"{g}_mean", f"{g}_min", f"{g}_max", f"{g}_count"]
    by_ts: dict[int, dict[str, Any]] = {}
    for r in bucket_rows:
        ts = int(r["time"])
        if ts < raw.start or ts >= raw.end:
            continue
        row = by_ts.setdefault(ts, {"time": ts})
        for c in columns:
            if c in r:
                row[c] = r[c]
    for counter, pts in counters.items():
        col = f"{counter}_consumption"
        columns.append(col)
        own = meter is not None and meter.counter == counter  # its settings are this counter's
        ivs = (figures.meter_intervals(meter, pts) if own and meter is not None
               else accounting.intervals(pts))
        for ts, amount in accounting.rollup(ivs, mode, raw.tz).items():
            if raw.start <= ts < raw.end:
                by_ts.setdefault(ts, {"time": ts})[col] = amount
    rows = [by_ts[k] for k in sorted(by_ts)]
    for row in rows:
        for c in columns:
            row.setdefault(c, None)
    return History(site=raw.site, device=raw.device, start=raw.start, end=raw.end, tz=raw.tz,
                   mode=mode, columns=columns, rows=rows, gaps=raw.gaps, flags=raw.flags,
                   rejected=raw.rejected, interval_ms=raw.interval_ms, readings=raw.readings,
                   meta=raw.meta, entries=raw.entries)


def relevant_rejected(rows: Iterable[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """Refusals that concern this device: named it, or refused a whole payload of its gateway
    (a garbage payload cannot say which devices it carried)."""
    out = []
    for r in rows:
        dev = r.get("device")
        if dev in (None, "", device):
            out.append({"time": int(r["time"]), "reason": r.get("reason", ""),
                        "detail": r.get("detail", ""), "device": dev or "",
                        "quantity": r.get("quantity") or "", "gateway": r.get("gateway", ""),
                        "payload_sha256": r.get("payload_sha256", "")})
    return sorted(out, key=lambda r: r["time"])


# --------------------------------------------------------------------------- formatting


def local_iso(ts_ms: int, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).isoformat(timespec="seconds")


def human_duration(ms: int) -> str:
    minutes = round(ms / 60_000)
    d, rem = divmod(minutes, 1440)
    h, m = divmod(rem, 60)
    parts = ([f"{d} d"] if d else []) + ([f"{h} h"] if h or d else []) + [f"{m} min"]
    return " ".join(parts)


def notes(h: History) -> list[tuple[int, str]]:
    """What an inspector must read beside the numbers, by time: gaps and refusals."""
    out = [(g.start, f"gap: no reading for {human_duration(g.duration_ms)} "
                     f"(until {local_iso(g.end, h.tz)})") for g in h.gaps]
    out += [(int(r["time"]), f"rejected {r['reason']}: {str(r['detail'])[:200]}")
            for r in h.rejected]
    for e in h.entries:
        what = (f"corrected {e['quantity']} {e['original']} -> {e['value']}"
                if e["kind"] == "correction" else f"manual reading {e['quantity']} {e['value']}")
        out.append((int(e["reading_ts"]), f"{what} by {e['author']} at "
                    f"{local_iso(int(e['entered_at']), h.tz)}: {e['reason']}"))
    return sorted(out)


# --------------------------------------------------------------------------- export


_FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")


def neutral(value: Any) -> Any:
    """A cell value a spreadsheet will not run: text from a sender (a device id, a rejected
    payload's detail) that starts like a formula gets a leading apostrophe (OWASP's advice
    for CSV); numbers and our own text pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_LEAD):
        return "'" + value
    return value


class _NeutralWriter:
    """``csv.writer`` whose every cell goes through :func:`neutral`."""

    def __init__(self, out: TextIO) -> None:
        self._w = csv.writer(out, lineterminator="\n")

    def writerow(self, row: Sequence[Any]) -> None:
        self._w.writerow([neutral(v) for v in row])


def _xl_row(ws: Any, row: Sequence[Any]) -> list[Any]:
    """XLSX cells: strings are stored as text, never as formulas (openpyxl would make any
    string starting with "=" a live formula)."""
    from openpyxl.cell import WriteOnlyCell

    out: list[Any] = []
    for v in row:
        if isinstance(v, str):
            c = WriteOnlyCell(ws, value=v)
            c.data_type = "s"
            out.append(c)
        else:
            out.append(v)
    return out


def write_csv(h: History, out: TextIO) -> int:
    """Readings, one row each, with flags beside the value and gap/refusal rows in place.

    Returns the number of rows written (without the header).
    """
    flag_cols = sorted({f.quantity for f in h.flags}) if h.mode == "raw" else []
    flag_at = {(f.ts, f.quantity): f.flag for f in h.flags}
    w = _NeutralWriter(out)
    w.writerow(["time", "epoch_ms", *(f"{c} [{unit_of(c)}]" if unit_of(c) else c
                                      for c in h.columns),
                *(f"flag_{q}" for q in flag_cols), "note"])
    pending = notes(h)
    i = 0
    n = 0
    for row in h.rows:
        ts = row["time"]
        while i < len(pending) and pending[i][0] < ts:
            w.writerow([local_iso(pending[i][0], h.tz), pending[i][0], *[""] * len(h.columns),
                        *[""] * len(flag_cols), pending[i][1]])
            i += 1
            n += 1
        note = []
        while i < len(pending) and pending[i][0] == ts:
            note.append(pending[i][1])
            i += 1
        w.writerow([local_iso(ts, h.tz), ts, *("" if row.get(c) is None else row[c]
                                               for c in h.columns),
                    *(flag_at.get((ts, q), "") for q in flag_cols), "; ".join(note)])
        n += 1
    for ts, text in pending[i:]:
        w.writerow([local_iso(ts, h.tz), ts, *[""] * len(h.columns), *[""] * len(flag_cols), text])
        n += 1
    return n


def write_xlsx(h: History, path: str | Path | IO[bytes], *, title: str = "") -> None:
    """A workbook an inspector can file: Readings, Gaps, Flags, Rejected and About sheets."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Readings")
    ws.append(_xl_row(ws, ["time", "epoch_ms", *(f"{c} [{unit_of(c)}]" if unit_of(c) else c
                                     for c in h.columns)]))
    for row in h.rows:
        ws.append(_xl_row(ws, [local_iso(row["time"], h.tz), row["time"],
                               *(row.get(c) for c in h.columns)]))
    ws = wb.create_sheet("Gaps")
    ws.append(_xl_row(ws, ["from", "to", "duration", "duration_s", "at range edge"]))
    for g in h.gaps:
        ws.append(_xl_row(ws, [local_iso(g.start, h.tz), local_iso(g.end, h.tz),
                               human_duration(g.duration_ms), g.duration_ms / 1000,
                               "yes" if g.edge else "no"]))
    ws = wb.create_sheet("Flags")
    ws.append(_xl_row(ws, ["time", "quantity", "flag", "value"]))
    for f in h.flags:
        ws.append(_xl_row(ws, [local_iso(f.ts, h.tz), f.quantity, f.flag, f.value]))
    ws = wb.create_sheet("Rejected")
    ws.append(_xl_row(ws, ["time", "reason", "detail", "device", "quantity", "gateway",
                           "payload_sha256"]))
    for r in h.rejected:
        ws.append(_xl_row(ws, [local_iso(r["time"], h.tz), r["reason"], r["detail"],
                               r["device"], r["quantity"], r["gateway"], r["payload_sha256"]]))
    ws = wb.create_sheet("About")
    for k, v in [("title", title or f"{h.site} / {h.device}"), ("site", h.site),
                 ("device", h.device), ("from", local_iso(h.start, h.tz)),
                 ("to", local_iso(h.end, h.tz)), ("time zone", h.tz), ("mode", h.mode),
                 ("readings", h.readings),
                 ("expected interval", human_duration(h.interval_ms or 0)),
                 ("gaps", len(h.gaps)), ("flagged values", len(h.flags)),
                 ("rejected records", len(h.rejected)),
                 *[(k2, str(v2)) for k2, v2 in h.meta.items()]]:
        ws.append(_xl_row(ws, [k, v]))
    wb.save(path if not isinstance(path, Path) else str(path))


def write_building_csv(hs: Sequence[History], out: TextIO) -> int:
    """A building's meters side by side: one row per bucket, one consumption column per
    meter's counter, and a note column naming each meter's gaps and refusals in place."""
    cols: list[tuple[int, str]] = [(i, c) for i, h in enumerate(hs) for c in h.columns
                                   if c.endswith("_consumption")]
    by_ts: dict[int, dict[tuple[int, str], Any]] = {}
    for i, h in enumerate(hs):
        for r in h.rows:
            slot = by_ts.setdefault(r["time"], {})
            for j, c in cols:
                if j == i:
                    slot[(j, c)] = r.get(c)
    tz = hs[0].tz if hs else "UTC"
    pending = sorted((ts, f"{h.device}: {text}") for h in hs for ts, text in notes(h))
    w = _NeutralWriter(out)
    w.writerow(["time", "epoch_ms", *(f"{hs[i].device} {c} [{unit_of(c)}]" for i, c in cols),
                "note"])
    n = 0
    k = 0
    times = sorted(by_ts)
    for idx, ts in enumerate(times):
        nxt = times[idx + 1] if idx + 1 < len(times) else None
        here = []
        while k < len(pending) and (nxt is None or pending[k][0] < nxt):
            here.append(pending[k][1])
            k += 1
        w.writerow([local_iso(ts, tz), ts,
                    *("" if by_ts[ts].get(key) is None else by_ts[ts][key] for key in cols),
                    "; ".join(here)])
        n += 1
    return n
