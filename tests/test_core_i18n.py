"""The core catalogs (enmon/locale): complete in zh-CN, read the same as Babel reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from enmon import i18n, names

ROOT = Path(__file__).resolve().parents[1]
# every file whose people-facing text goes through enmon.i18n
USERS = ["enmon/names.py", "rules/channels.py", "rules/cli.py"]


def _extracted() -> set[str]:
    from babel.messages.extract import extract_from_file

    kw = {"N_": None, "_": None, "ngettext": (1, 2)}
    return {msg for f in USERS for _, msg, _, _ in
            extract_from_file("python", str(ROOT / f), keywords=kw) if isinstance(msg, str)}


def test_every_message_has_a_chinese_translation() -> None:
    zh = i18n.catalog("zh-CN").messages
    missing = [m for m in sorted(_extracted()) if not (zh.get((None, m)) or ("",))[0]]
    assert missing == []


@pytest.mark.parametrize("lang", i18n.LANGS)
def test_the_stdlib_reader_agrees_with_babel(lang: i18n.Lang) -> None:
    from babel.messages.pofile import read_po

    for path in i18n.po_paths(lang):
        with path.open("rb") as fh:
            babel = {m.id: m.string for m in read_po(fh) if m.id and not m.fuzzy}
        ours = {k[1]: v[0] for k, v in i18n.catalog(lang).messages.items()}
        assert {k: v for k, v in ours.items() if k in babel} == babel


def test_names_in_both_languages() -> None:
    assert names.category("01A00", "zh-CN") == "照明插座用电 (01A00)"
    assert names.name(names.RULES, "meter_offline", "zh-CN") == "表计离线"
    assert names.name(names.ENERGY_TYPES, "gas", "en") == "gas"
    assert names.name(names.RULES, "my_threshold", "zh-CN") == "my_threshold"  # user-named


def test_site_time_has_its_offset() -> None:
    assert i18n.local_time(1_763_726_400_000, "Asia/Shanghai") == "2025-11-21 20:00 +08:00"


def test_cli_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENMON_LANG", raising=False)
    assert i18n.cli_lang(None) == "zh-CN"
    monkeypatch.setenv("ENMON_LANG", "en_US")
    assert i18n.cli_lang(None) == "en"
    assert i18n.cli_lang("zh") == "zh-CN"
    with pytest.raises(ValueError):
        i18n.cli_lang("fr")
