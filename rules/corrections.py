"""Corrections keep standing when a gateway resends the batch they corrected.

A correction (:mod:`inspector.manual`) writes the corrected value onto the meter's own
point. A gateway resends a batch whose end-to-end acknowledgement it never got (after its
``ack_timeout_s``, also days later after an outage), and that resend writes the measured
value onto the same point again. The audit record (``manual_entry``) is never rewritten,
so it says what stands; this pass step compares the stored readings of the corrections
entered in the last :data:`WATCH_DAYS` with what their latest entry says and writes the
correction back where a resend undid it, with an ``energy_touched`` marker so the roll-ups,
quotas and Grafana follow it again. Idempotent: a reading that holds its correction is
left alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from energy.manual import FLAG, MEASUREMENT, latest
from enmon import touched as tch
from enmon.influx import ident, quote
from enmon.lineproto import line
from rules.passbase import PassBase, PassStats

log = logging.getLogger("enmon.rules.corrections")

#: corrections entered this many days back are watched (a gateway's disk queue outlives
#: a few days' outage; after that a batch resent still unconfirmed is very unlikely)
WATCH_DAYS = 14
WORKER = "corrections"
#: tags of the meter point kept from the stored reading (its series, not a second one)
SERIES = ("site", "gateway", "device", "building", "category", "energy_type")
_stamp = tch.Stamper()


class CorrectionChecks(PassBase):
    async def corrections(self, site: Any, now: int, st: PassStats) -> None:
        """Write back every watched correction a resend undid (``st.restored`` counts)."""
        since = int(time.time() * 1000) - WATCH_DAYS * 86_400_000
        rows = await self._rows(
            f'SELECT * FROM "{MEASUREMENT}" WHERE site = {quote(site.site)} '
            f"AND kind = 'correction' AND time >= {since}ms", st)
        if not rows:
            return
        stands = latest([{**r, "entered_at": r["time"]} for r in rows])
        # the stored readings at those times, one statement for all of them
        where = " OR ".join(
            f"(gateway = {quote(g)} AND device = {quote(d)} AND time = {ts}ms)"
            for g, d, _q, ts in stands)
        fields = sorted({q for _g, _d, q, _ts in stands})
        sel = ", ".join(ident(f) for q in fields for f in (q, f"flag_{q}"))
        stored = await self._rows(
            f'SELECT {sel} FROM "meter" WHERE site = {quote(site.site)} AND ({where}) '
            "GROUP BY *", st)
        at = {(str(r.get("gateway", "")), str(r.get("device", "")), int(r["time"])): r
              for r in stored}
        lines: list[str] = []
        spans: dict[tch.Key, tch.Span] = {}
        for (g, d, q, ts), entry in stands.items():
            point = at.get((g, d, ts))
            want = float(str(entry["value"]))
            if point is None or point.get(q) is None:
                continue  # the reading is gone (retention): nothing to restore it onto
            if float(point[q]) == want and point.get(f"flag_{q}") == FLAG["correction"]:
                continue
            tags = {k: str(point[k]) for k in SERIES if point.get(k)}
            lines.append(line("meter", tags, {q: want, f"flag_{q}": FLAG["correction"]}, ts))
            lo, hi = spans.get((g, d), (ts, ts))
            spans[(g, d)] = (min(lo, ts), max(hi, ts))
            log.warning("event=correction_restored site=%s gateway=%s device=%s quantity=%s "
                        "reading_ts=%d stored=%r corrected=%r", site.site, g, d, q, ts,
                        point.get(q), want)
        if lines:
            st.restored += len(lines)
            lines.append(tch.marker_line(site.site, WORKER, spans,
                                         _stamp(int(time.time() * 1000))))
            await self._write(lines, st)
