"""Alert summaries as data: a template id and its figures, written in the reader's language.

The rule engine says *what* happened and with which numbers
(``Summary("meter_offline", {"device": "m1", "silent_s": 930})``); every surface — a
notification, the console, the API, the CLI — writes it in its reader's language from the
core catalog (``enmon/locale/{zh_CN,en}/LC_MESSAGES/summaries.po``). The id and the figures
are stored with the alert (the state file, the outbox, the ``alert`` measurement's
``summary_id`` and ``summary_args`` fields) beside its English text in ``summary``, which
older readers, Grafana and grep keep reading. An alert stored before summaries were data
has only that text, and is shown as it is (:func:`text_of`).

Figures are formatted here and only here, the same in both languages: the format of each
figure belongs to its template (``.2f``, ``,.0f``, ``.0%`` …), a unit is named after its
number, durations are in the reader's words (``2 h 5 min``, ``2小时5分钟``) and days in the
site's zone. The arguments are plain JSON (numbers, strings, lists, nested parts), so what
the engine stored renders the same after a restart, in another process or another language.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from enmon import names
from enmon.i18n import N_, Lang, gettext_for

log = logging.getLogger("enmon.summaries")

# a stored summary without its site's zone: the zone of the sites this product is for
DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class Summary:
    """What an alert says, as data: a template id of :data:`TEMPLATES` and its arguments."""

    id: str
    args: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form a part of another summary takes (``{"id": …, "args": …}``)."""
        return {"id": self.id, "args": self.args}


def part(sid: str, **args: Any) -> dict[str, Any]:
    """A summary nested in another one (a ``parts`` argument), in its JSON form."""
    return {"id": sid, "args": args}


@dataclass(frozen=True, slots=True)
class Template:
    """A sentence of the catalog and how each of its figures is written.

    ``fields`` maps a placeholder to its format: ``text`` (as given), ``quantity`` (the
    quantity's name), ``dur`` (seconds), ``day`` (epoch ms, site-local date), ``list`` (names
    joined), ``parts`` (nested summaries joined), or a Python format spec (``.2f``, ``,.0f``,
    ``.0%`` …) optionally followed by ``@arg``: the unit held by that argument is named after
    the number.
    """

    msgid: str
    fields: dict[str, str]


def _t(msgid: str, **fields: str) -> Template:
    return Template(msgid, fields)


_Q = {"quantity": "quantity", "device": "text"}
TEMPLATES: dict[str, Template] = {
    # thresholds (the user's rules): the quantity's unit after each figure
    "threshold_above": _t(N_("%(quantity)s of %(device)s is %(value)s (limit %(limit)s)"),
                          **_Q, value=".2f@unit", limit="g@unit"),
    "threshold_back": _t(N_("%(quantity)s of %(device)s back to %(value)s (below %(clear)s)"),
                         **_Q, value=".2f@unit", clear="g@unit"),
    # counters and gauges
    "counter_backwards": _t(N_("%(quantity)s of %(device)s went from %(before)s to %(after)s"),
                            **_Q, before="g@unit", after="g@unit"),
    "implausible_jump": _t(N_("%(quantity)s of %(device)s rose %(amount)s in %(minutes)s min "
                              "(%(rate)s/h > %(max_rate)s/h)"),
                           **_Q, amount="g@unit", minutes=".1f", rate=".1f@unit",
                           max_rate="g@unit"),
    "flatline": _t(N_("%(quantity)s of %(device)s stuck at %(value)s for %(duration)s"),
                   **_Q, value="g@unit", duration="dur"),
    # silence
    "meter_offline": _t(N_("no reading from %(device)s for %(duration)s"),
                        device="text", duration="dur"),
    "gateway_offline": _t(N_("gateway %(gateway)s offline for %(duration)s"),
                          gateway="text", duration="dur"),
    "completeness": _t(N_("%(received)s/%(expected)s readings (%(ratio)s < %(target)s)"),
                       received="d", expected="d", ratio=".1%", target=".0%"),
    # quota and budget
    "quota": _t(N_("year-to-date %(ytd)s of %(allowance)s (%(fraction)s of the year's use "
                   "due)"), ytd=",.0f@unit", allowance=",.0f@unit", fraction=".0%"),
    "quota_projected": _t(N_("year-to-date %(ytd)s of %(allowance)s (%(fraction)s of the "
                             "year's use due), projected %(projected)s"),
                          ytd=",.0f@unit", allowance=",.0f@unit", fraction=".0%",
                          projected=",.0f@unit"),
    "budget": _t(N_("budget %(budget)s: %(used)s of %(amount)s used (%(ratio)s)"),
                 budget="text", used=",.0f@unit", amount=",.0f@unit", ratio=".0%"),
    # boilers
    "boiler_low": _t(N_("boiler %(boiler)s efficiency %(efficiency)s %% below the %(limit)s %% "
                        "limit%(detail)s"),
                     boiler="text", efficiency=".1f", limit="g", detail="parts"),
    "boiler_ok": _t(N_("boiler %(boiler)s efficiency %(efficiency)s %% meets the %(limit)s %% "
                       "limit%(detail)s"),
                    boiler="text", efficiency=".1f", limit="g", detail="parts"),
    "boiler_indirect_low": _t(N_("boiler %(boiler)s indirect (heat-loss) efficiency "
                                 "%(efficiency)s %% below the %(limit)s %% limit"),
                              boiler="text", efficiency=".1f", limit="g"),
    "boiler_indirect_ok": _t(N_("boiler %(boiler)s indirect (heat-loss) efficiency "
                                "%(efficiency)s %% meets the %(limit)s %% limit"),
                             boiler="text", efficiency=".1f", limit="g"),
    "boiler_window": _t(N_(" (direct method over %(window_h)s h, %(qualified_h)s h above "
                           "%(min_load)s %% load; limit from %(source)s)"),
                        window_h="g", qualified_h=".1f", min_load="g", source="parts"),
    "boiler_window_indirect": _t(N_(" (direct method over %(window_h)s h, %(qualified_h)s h "
                                    "above %(min_load)s %% load; limit from %(source)s; "
                                    "indirect (heat-loss) method %(indirect)s %%)"),
                                 window_h="g", qualified_h=".1f", min_load="g",
                                 source="parts", indirect=".1f"),
    "limit_site_file": _t(N_("the site file")),
    "limit_gb24500": _t(N_("GB 24500-2020 grade 3")),
    "boiler_implausible": _t(N_("boiler %(boiler)s: %(method)s efficiency %(efficiency)s %% is "
                                "above the physical ceiling %(ceiling)s %% [%(mark)s] "
                                "(%(source)s); no efficiency verdict%(check)s"),
                             boiler="text", method="parts", efficiency=".1f", ceiling="g",
                             mark="text", source="text", check="parts"),
    "method_direct": _t(N_("direct-method")),
    "method_indirect": _t(N_("indirect-method")),
    "check_flue": _t(N_(": check the flue gauges (%(instruments)s: flue_temp_c, flue_o2_pct, "
                        "combustion air) and other_losses_pct %(other_losses)s"),
                     instruments="text", other_losses="g"),
    "check_meters": _t(N_(": check the fuel meter %(fuel_meter)s, the output meter "
                          "%(output_meter)s and ncv_mj_per_unit %(ncv)s (%(fuel)s)"),
                       fuel_meter="parts", output_meter="parts", ncv="g", fuel="text"),
    "meter_where": _t(N_("%(meter)s (%(gateway)s/%(device)s %(quantity)s)"),
                      meter="text", gateway="text", device="text", quantity="text"),
    "meter_id": _t(N_("%(meter)s"), meter="text"),
    # master vs sub-item meters
    "submeter_balance": _t(N_("building %(building)s: sub-item meters (%(parts)s) and main "
                              "meter (%(mains)s) differ by more than %(share)s on %(bad)s of "
                              "%(days)s days; %(worst)s"),
                           building="text", parts="list", mains="list", share=".0%", bad="d",
                           days="d", worst="parts"),
    "balance_day": _t(N_("%(day)s: sub-items %(parts_kwh)s vs main %(main_kwh)s kWh "
                         "(%(deviation)s)"),
                      day="day", parts_kwh=",.1f", main_kwh=",.1f", deviation="+.1%"),
    # several reasons at once (the rule engine degraded, both methods of a boiler implausible)
    "joined": _t(N_("%(reasons)s"), reasons="parts"),
    # the rule engine itself
    "no_broker": _t(N_("no broker connection for %(duration)s"), duration="dur"),
    "passes_failed": _t(N_("%(passes)s scheduled passes in a row failed (InfluxDB)"),
                        passes="d"),
    "rules_recovered": _t(N_("the rule engine hears and reads again")),
}

_UNITS = {"m3": "m³", "m3/h": "m³/h", "1": ""}


def unit_text(unit: str) -> str:
    """A canonical unit as reports write it (``m3`` → ``m³``; a ratio has none)."""
    return _UNITS.get(unit, unit)


def duration(seconds: float, lang: Lang) -> str:
    """Seconds in the reader's words, two units at most: ``45 s``, ``2 min 10 s``,
    ``2 h 5 min``, ``3 d 4 h`` (``45秒``, ``2分10秒``, ``2小时5分钟``, ``3天4小时``)."""
    _ = gettext_for(lang)
    if not math.isfinite(seconds):
        return _("ever")
    s = max(0, round(seconds))
    if s < 60:
        return _("%(n)s s", n=s)
    if s < 3600:
        m, sec = divmod(s, 60)
        return _("%(m)s min %(s)s s", m=m, s=sec) if sec else _("%(n)s min", n=m)
    h, m = divmod(round(s / 60), 60)
    if h < 48:
        return _("%(h)s h %(m)s min", h=h, m=m) if m else _("%(n)s h", n=h)
    d, h = divmod(h, 24)
    return _("%(d)s d %(h)s h", d=d, h=h) if h else _("%(n)s d", n=d)


def _number(value: Any, spec: str, args: Mapping[str, Any]) -> str:
    fmt, _, unit_arg = spec.partition("@")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "?" if value is None else str(value)
    if fmt == "d":
        return f"{int(value):d}"
    text = format(float(value), fmt)
    unit = unit_text(str(args.get(unit_arg) or "")) if unit_arg else ""
    return f"{text} {unit}" if unit else text


def _field(spec: str, value: Any, args: Mapping[str, Any], lang: Lang, tz: str) -> str:
    _ = gettext_for(lang)
    if spec == "text":
        return "" if value is None else str(value)
    if spec == "quantity":
        return names.quantity(str(value or ""), lang)
    if spec == "dur":
        return duration(float(value), lang) if isinstance(value, int | float) else "?"
    if spec == "day":
        return f"{dt.datetime.fromtimestamp(int(value) / 1000, ZoneInfo(tz)):%Y-%m-%d}"
    if spec == "list":
        return _(", ").join(str(v) for v in value or ())
    if spec == "parts":
        if isinstance(value, Mapping):
            value = [value]
        return _("; ").join(render(str(p["id"]), p.get("args") or {}, lang, tz=tz)
                            for p in value or ())
    return _number(value, spec, args)


def render(sid: str, args: Mapping[str, Any], lang: Lang, *, tz: str | None = None) -> str:
    """The summary ``sid`` with ``args`` in ``lang``; times in ``args["tz"]``, else ``tz``.

    Raises:
        KeyError: ``sid`` is not a template (see :func:`text_of` for the stored fallback).
    """
    t = TEMPLATES[sid]
    zone = str(args.get("tz") or tz or DEFAULT_TZ)
    values = {k: _field(spec, args.get(k), args, lang, zone) for k, spec in t.fields.items()}
    return gettext_for(lang)(t.msgid, **values) if values else gettext_for(lang)(t.msgid)


def english(s: Summary) -> str:
    """The English text stored in ``summary`` beside the id and arguments."""
    return render(s.id, s.args, "en")


def text_of(record: Mapping[str, Any], lang: Lang, *, tz: str | None = None) -> str:
    """What an alert, a change or a notification (as stored or as JSON) says, in ``lang``.

    Its ``summary_id`` and ``summary_args`` when it has them (``summary_args`` may be the
    JSON text the ``alert`` measurement stores), else its stored ``summary`` text — an
    alert recorded before summaries were data, or one whose template this version does
    not know, still reads as it was written.
    """
    sid = record.get("summary_id")
    stored = str(record.get("summary") or "")
    if not sid:
        return stored
    args = record.get("summary_args") or {}
    try:
        if isinstance(args, str):
            import json

            args = json.loads(args)
        return render(str(sid), args, lang, tz=tz)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("event=summary_unrenderable summary_id=%s error=%r", sid, str(exc)[:200])
        return stored
