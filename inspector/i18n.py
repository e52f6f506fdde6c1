"""Languages of the inspector's reader-facing texts: zh-CN by default, English as the alternative.

Our readers are Chinese energy-supervision inspectors and facility managers, so every
text a person reads in a report (HTML, PDF, the JSON's ``*_text`` fields) or in the
console goes through a gettext catalog (``inspector/locale/<lang>/LC_MESSAGES/messages.po``,
extracted with ``pybabel extract -F inspector/babel.cfg``), as whole sentences with
named placeholders — never pieces glued together in code, which no translator can order.
Numbers and dates are formatted by Babel for the locale. Log lines stay English.

The ``.po`` files are the only thing committed: they are compiled in memory when first
used (:func:`translations`). A committed ``.mo`` would be a second copy that can go stale
beside its source and a binary in review; compiling a few hundred messages takes
milliseconds, works on a fresh ``pip install -e``, in an installed wheel and in CI alike,
and needs no build step anyone can forget.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from enmon.i18n import N_ as N_  # one vocabulary of languages for every part (re-exported)
from enmon.i18n import normalize as normalize

LOCALE_DIR = Path(__file__).parent / "locale"
Lang = Literal["zh-CN", "en"]
LANGS: tuple[Lang, ...] = ("zh-CN", "en")
DEFAULT_LANG: Lang = "zh-CN"
# English dates as the report always wrote them: day before month ("1 – 3 Oct")
_BABEL = {"zh-CN": "zh_CN", "en": "en_GB"}
_CATALOG_DIR = {"zh-CN": "zh_CN", "en": "en"}


def from_accept_language(header: str | None) -> Lang | None:
    """The best of our languages in an ``Accept-Language`` header (RFC 9110 q-values)."""
    if not header:
        return None
    ranked: list[tuple[float, int, Lang]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        m = re.search(r"q=([0-9.]+)", params)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                q = 0.0
        lang = normalize(tag)
        if lang is not None and q > 0:
            ranked.append((-q, i, lang))
    return min(ranked)[2] if ranked else None


def babel_locale(lang: Lang) -> str:
    return _BABEL[lang]


def po_path(lang: Lang) -> Path:
    """The main catalog's source: ``inspector/locale/{zh_CN,en}/LC_MESSAGES/messages.po``."""
    return LOCALE_DIR / _CATALOG_DIR[lang] / "LC_MESSAGES" / "messages.po"


def po_paths(lang: Lang) -> list[Path]:
    """Every catalog file of ``lang``: ``messages.po`` first, then one ``<feature>.po`` per
    feature (cost, manual data, ledger …), so that work on two features never edits the
    same file. Together they are one catalog; a msgid defined twice keeps the first."""
    folder = po_path(lang).parent
    return [po_path(lang), *sorted(p for p in folder.glob("*.po") if p.name != "messages.po")]


def _read_catalog(lang: Lang) -> Any:
    """The merged :class:`babel.messages.catalog.Catalog` of every ``.po`` of ``lang``."""
    from babel.messages.pofile import read_po

    merged = None
    for path in po_paths(lang):
        with path.open("rb") as fh:
            cat = read_po(fh, locale=babel_locale(lang))
        if merged is None:
            merged = cat
            continue
        for msg in cat:
            if msg.id and msg.id not in merged:
                merged[msg.id] = msg
    _core_names(merged, lang)
    return merged


def _core_names(merged: Any, lang: Lang) -> None:
    """The names of codes (``enmon/names.py``: sub-items, energy types, rules, states …) are
    translated once, in the core catalog: they take the place of any copy of the same msgid
    left in ours from when ``labels.py`` held them, so the console, the report and a
    notification name a code alike. A msgid our own pages also use as a word of their own
    (``acknowledged`` as the column of who acknowledged) keeps our translation there."""
    from babel.messages.catalog import Message

    from enmon import i18n as core
    from enmon import names

    cat = core.catalog(lang)
    for msgid in sorted(names.msgids()):
        text = cat.gettext(msgid)
        text = "" if text == msgid else text  # English: the msgid is the text
        old = merged.get(msgid)
        if old is not None and any(not path.endswith("labels.py") for path, _ in old.locations):
            continue
        if old is None:
            merged[msgid] = Message(msgid, text)
        else:  # Catalog.__setitem__ would keep the old string
            old.string = text
            old.flags.discard("fuzzy")


@cache
def translations(lang: Lang) -> gettext.NullTranslations:
    """The catalog of ``lang``, compiled from its ``.po`` in memory (see the module doc).

    English is the source language: its catalog holds the few messages whose English
    wording differs from the msgid (none today), everything else falls through.
    """
    from babel.messages.mofile import write_mo

    buf = io.BytesIO()
    write_mo(buf, _read_catalog(lang), use_fuzzy=False)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def gettext_for(lang: Lang) -> Any:
    """``_(msgid, **named)``: the translated sentence with its placeholders filled."""
    tr = translations(lang)

    def _(message: str, **params: Any) -> str:
        text = tr.gettext(message)
        return text % params if params else text

    return _


def ngettext_for(lang: Lang) -> Any:
    tr = translations(lang)

    def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
        return tr.ngettext(singular, plural, n) % {"num": n, **params}

    return ngettext


@cache
def catalog(lang: Lang, *, prefix: str = "") -> dict[str, str]:
    """msgid → translation of the messages whose location starts with ``prefix`` (the
    console gets only its own strings, as JSON). Cached: the console page asks on every
    visit; callers must not change the dict."""
    out: dict[str, str] = {}
    for msg in _read_catalog(lang):
        if not msg.id or not isinstance(msg.id, str) or msg.fuzzy:
            continue
        if prefix and not any(path.startswith(prefix) for path, _ in msg.locations):
            continue
        out[msg.id] = str(msg.string) if msg.string else msg.id
    return out


# ------------------------------------------------------------------ formatting


def fmt_number(value: float | None, lang: Lang) -> str:
    """Thousands separators, fewer decimals for bigger numbers (as ``charts.fmt``), in the
    locale's symbols."""
    from babel.numbers import format_decimal

    if value is None:
        return "–"
    a = abs(value)
    pattern = "#,##0" if a >= 100 else "#,##0.0" if a >= 1 else "@@@"
    if a == 0:
        pattern = "0"
    return format_decimal(value, format=pattern, locale=babel_locale(lang))


def fmt_percent(value: float | None, lang: Lang) -> str:
    from babel.numbers import format_percent

    if value is None:
        return "–"
    return format_percent(value, format="#,##0.0%", locale=babel_locale(lang))


def fmt_change(value: float | None, lang: Lang) -> str:
    """A relative change with its sign (环比 +25.0%, 同比 −3.2%); – when there is none."""
    from babel.numbers import format_percent

    if value is None:
        return "–"
    return format_percent(value, format="+#,##0.0%;-#,##0.0%", locale=babel_locale(lang))


def fmt_datetime(ts_ms: int | None, tz: str, lang: Lang) -> str:
    """A reading's time in the site's zone: ``2026-10-01 08:00`` in both languages (the
    form Chinese reports and the console use), digits and separators from the locale."""
    from babel.dates import format_datetime

    if ts_ms is None:
        return ""
    d = dt.datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))
    return format_datetime(d, "yyyy-MM-dd HH:mm", tzinfo=ZoneInfo(tz), locale=babel_locale(lang))


def fmt_days(start_ms: int, last_ms: int, tz: str, lang: Lang) -> str:
    """Days without their year, as the locale writes them: ``10月1日至3日``, ``1 – 3 Oct``
    (one day: ``10月1日``, ``1 Oct``)."""
    from babel.dates import format_interval, format_skeleton

    zone = ZoneInfo(tz)
    a = dt.datetime.fromtimestamp(start_ms / 1000, zone).date()
    b = dt.datetime.fromtimestamp(last_ms / 1000, zone).date()
    if a == b:
        return format_skeleton("MMMd", a, locale=babel_locale(lang))
    return format_interval(a, b, "MMMd", locale=babel_locale(lang))


def fmt_month(ts_ms: int, tz: str, lang: Lang, skeleton: str = "yMMMM") -> str:
    """A month as the locale writes it: ``2026年10月``, ``October 2026``."""
    from babel.dates import format_skeleton

    d = dt.datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).date()
    return format_skeleton(skeleton, d, locale=babel_locale(lang))
