"""Languages of the texts people read outside the inspector: notifications, CLI messages.

zh-CN is the default, English the alternative (``language:`` in a config, ``--lang`` or
``ENMON_LANG`` on the command line). As in ``inspector/i18n.py``, every sentence is a
msgid in a gettext catalog (``enmon/locale/{zh_CN,en}/LC_MESSAGES/*.po``) with named
placeholders, never pieces glued together in code; log lines stay English.

The catalogs are read here with a small stdlib ``.po`` reader instead of Babel: the
gateway (a Raspberry Pi installing the ``gateway`` extra only) prints CLI messages too,
and Babel, although pure Python, installs about 36 MB of CLDR data that the core does not
need — it formats no locale-specific numbers or dates, only fills sentences. The reader
covers what ``pybabel extract``/``msgmerge`` write: comments, flags (a ``fuzzy`` entry is
skipped), ``msgctxt``, ``msgid_plural`` with ``msgstr[n]``, multi-line strings and C
escapes. Like the inspector's, the ``.po`` files are the only thing committed and are
compiled in memory on first use.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

LOCALE_DIR = Path(__file__).parent / "locale"
Lang = Literal["zh-CN", "en"]
LANGS: tuple[Lang, ...] = ("zh-CN", "en")
DEFAULT_LANG: Lang = "zh-CN"
_CATALOG_DIR = {"zh-CN": "zh_CN", "en": "en"}


def N_(message: str) -> str:
    """Mark a message for extraction where it is defined; it is translated where shown."""
    return message


def normalize(lang: str | None) -> Lang | None:
    """``zh-CN``/``zh_CN``/``zh``/``zh-Hans`` → ``"zh-CN"``; ``en``/``en-US`` → ``"en"``;
    anything else → ``None`` (the caller falls back to its default)."""
    if not lang:
        return None
    tag = lang.strip().replace("_", "-").lower()
    if tag == "zh" or tag.startswith(("zh-cn", "zh-hans", "zh-sg")):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


def cli_lang(option: str | None) -> Lang:
    """The CLI's language: ``--lang``, else ``ENMON_LANG``, else zh-CN.

    Raises:
        ValueError: ``option`` names a language we do not have.
    """
    if option is not None:
        chosen = normalize(option)
        if chosen is None:
            raise ValueError(f"--lang {option!r}: use zh-CN or en")
        return chosen
    return normalize(os.environ.get("ENMON_LANG")) or DEFAULT_LANG


# ------------------------------------------------------------------ the .po reader


@dataclass(slots=True)
class _Entry:
    ctxt: str | None = None
    msgid: str = ""
    plural: str | None = None
    strings: dict[int, str] = field(default_factory=dict)
    fuzzy: bool = False


def _unquote(line: str, path: Path, lineno: int) -> str:
    text = line.strip()
    if not (len(text) >= 2 and text[0] == text[-1] == '"'):
        raise ValueError(f"{path}:{lineno}: expected a quoted string, got {text[:40]!r}")
    # a .po string is a C string literal: the same escapes as a Python one (\n, \t, \", \\)
    value = ast.literal_eval(text)
    assert isinstance(value, str)
    return value


def parse_po(path: Path) -> list[_Entry]:
    """Every entry of one ``.po`` file (the header's empty msgid included)."""
    entries: list[_Entry] = []
    cur: _Entry | None = None
    target: tuple[str, int] = ("", 0)  # which string of ``cur`` a continuation line extends
    fuzzy_next = False

    def close() -> None:
        nonlocal cur
        if cur is not None:
            entries.append(cur)
        cur = None

    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            close()
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy_next = True
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            if cur is None:
                raise ValueError(f"{path}:{lineno}: a string outside an entry")
            piece = _unquote(line, path, lineno)
            kind, n = target
            if kind == "ctxt":
                cur.ctxt = (cur.ctxt or "") + piece
            elif kind == "id":
                cur.msgid += piece
            elif kind == "plural":
                cur.plural = (cur.plural or "") + piece
            else:
                cur.strings[n] = cur.strings.get(n, "") + piece
            continue
        if keyword in ("msgctxt", "msgid") and cur is not None and (
                cur.strings or (keyword == "msgctxt")):
            close()
        if cur is None:
            cur = _Entry(fuzzy=fuzzy_next)
            fuzzy_next = False
        value = _unquote(rest, path, lineno)
        if keyword == "msgctxt":
            cur.ctxt, target = value, ("ctxt", 0)
        elif keyword == "msgid":
            cur.msgid, target = value, ("id", 0)
        elif keyword == "msgid_plural":
            cur.plural, target = value, ("plural", 0)
        elif keyword == "msgstr":
            cur.strings[0], target = value, ("str", 0)
        elif keyword.startswith("msgstr[") and keyword.endswith("]"):
            n = int(keyword[7:-1])
            cur.strings[n], target = value, ("str", n)
        else:
            raise ValueError(f"{path}:{lineno}: unknown keyword {keyword!r}")
    close()
    return entries


def po_paths(lang: Lang) -> list[Path]:
    """Every catalog file of ``lang``, ``messages.po`` first then one ``<feature>.po`` per
    feature; together they are one catalog (a msgid defined twice keeps the first)."""
    folder = LOCALE_DIR / _CATALOG_DIR[lang] / "LC_MESSAGES"
    main = folder / "messages.po"
    rest = sorted(p for p in folder.glob("*.po") if p.name != "messages.po")
    return [main, *rest] if main.exists() else rest


@dataclass(frozen=True, slots=True)
class Catalog:
    """The compiled messages of one language: ``(context, msgid)`` → forms."""

    lang: Lang
    messages: dict[tuple[str | None, str], tuple[str, ...]]

    def plural_index(self, n: int) -> int:
        # zh: one form (nplurals=1); en: singular for 1 (nplurals=2; plural=(n != 1))
        return 0 if self.lang == "zh-CN" else int(n != 1)

    def gettext(self, msgid: str, context: str | None = None) -> str:
        forms = self.messages.get((context, msgid))
        return forms[0] if forms and forms[0] else msgid

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        forms = self.messages.get((None, singular))
        i = self.plural_index(n)
        if forms and i < len(forms) and forms[i]:
            return forms[i]
        return singular if n == 1 else plural


@cache
def catalog(lang: Lang) -> Catalog:
    """The catalog of ``lang``, read from its ``.po`` files once per process."""
    out: dict[tuple[str | None, str], tuple[str, ...]] = {}
    for path in po_paths(lang):
        for e in parse_po(path):
            if not e.msgid or e.fuzzy or (e.ctxt, e.msgid) in out:
                continue
            out[(e.ctxt, e.msgid)] = tuple(e.strings[i] for i in sorted(e.strings))
    return Catalog(lang, out)


def gettext_for(lang: Lang) -> Callable[..., str]:
    """``_(msgid, **named)``: the translated sentence with its placeholders filled."""
    cat = catalog(lang)

    def _(message: str, **params: Any) -> str:
        text = cat.gettext(message)
        return text % params if params else text

    return _


def ngettext_for(lang: Lang) -> Callable[..., str]:
    cat = catalog(lang)

    def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
        return cat.ngettext(singular, plural, n) % {"num": n, **params}

    return ngettext


# ------------------------------------------------------------------ times


def local_time(ts_ms: int, tz: str, *, seconds: bool = False) -> str:
    """A time in the site's zone with its offset, the same in both languages:
    ``2026-12-02 13:26 +08:00`` — what the console shows, and unambiguous on a phone
    whose own zone may differ."""
    d = dt.datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))
    off = d.strftime("%z")
    return d.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + (
        f" {off[:3]}:{off[3:]}" if off else "")
