"""zh-CN by default, English on request: catalogs, report, API, CLI and the CJK font check.

The catalogs are checked against a fresh extraction (``inspector/babel.cfg``), so a
sentence added to the code or a template without its Chinese fails here. The Chinese
report is checked against the catalog: no English sentence of the report's messages may
appear in its visible text. The font check runs against a fontconfig that knows no font
(``FONTCONFIG_FILE``), as on a server without ``fonts-noto-cjk``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from enmon.influx import InfluxConfig, InfluxQL
from inspector import i18n, render
from inspector.report import Report, period_of
from inspector.store import Store, fetch_report
from tests.inspector.conftest import DB, INSPECTOR_TOKEN, MONTH, Loaded, Stack, auth

ROOT = Path(__file__).resolve().parents[2]
SITE = "demo-campus"


def _extracted() -> dict[str, list[str]]:
    """msgid → files, extracted now with the project's babel.cfg (as ``pybabel extract``)."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with (ROOT / "inspector" / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    out: dict[str, list[str]] = {}
    for filename, _lineno, message, _comments, _ctx in extract_from_dir(
            str(ROOT / "inspector"), method_map, options_map):
        msgid = message if isinstance(message, str) else message[0]
        out.setdefault(msgid, []).append(filename)
    return out


def test_the_catalogs_hold_every_message_the_code_uses_translated() -> None:
    extracted = _extracted()
    assert len(extracted) > 150
    zh = i18n.catalog("zh-CN")
    en = i18n.catalog("en")
    assert sorted(set(extracted) - set(zh)) == []  # run pybabel update (see babel.cfg)
    assert sorted(set(extracted) - set(en)) == []
    untranslated = [m for m in extracted if zh[m] == m and not _language_neutral(m)]
    assert untranslated == []
    # placeholders survive translation (a lost %(name)s would drop a figure)
    for msgid, text in zh.items():
        assert sorted(re.findall(r"%\((\w+)\)s", msgid)) == sorted(
            re.findall(r"%\((\w+)\)s", text)), msgid


def _language_neutral(msgid: str) -> bool:
    """Units and symbols read the same in both languages."""
    return msgid in {"CO₂ kg"}


def test_the_energy_domains_remarks_are_in_the_catalog() -> None:
    """energy/ words its remarks in English; the report shows them translated by their
    exact text, so a reworded remark must be reworded here too."""
    from energy import figures
    from inspector import labels

    assert figures.NOT_AN_ENERGY in labels.ENERGY_NOTES
    assert i18n.gettext_for("zh-CN")(labels.ENERGY_NOTES[figures.NOT_AN_ENERGY]).startswith("水")


def test_language_tags() -> None:
    assert i18n.normalize("zh_CN") == i18n.normalize("zh-Hans") == i18n.normalize("zh") == "zh-CN"
    assert i18n.normalize("en-US") == "en" and i18n.normalize("fr") is None
    assert i18n.from_accept_language("fr;q=1, en-US;q=0.8, zh-CN;q=0.9") == "zh-CN"
    assert i18n.from_accept_language("en-GB,en;q=0.9") == "en"
    assert i18n.from_accept_language("de, fr;q=0.5") is None
    assert i18n.fmt_number(1234567.8, "zh-CN") == "1,234,568"
    assert i18n.fmt_percent(0.973, "en") == "97.3%"


@pytest.fixture(scope="module")
def report(loaded: Loaded) -> Report:
    async def go() -> Report:
        store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
        try:
            return await fetch_report(store, site=loaded.data.site, period=MONTH,
                                      now_ms=period_of(MONTH, "Asia/Shanghai").end)
        finally:
            await store.close()
    return asyncio.run(go())


def _visible_text(html: str) -> str:
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _english_pieces(msgid: str) -> list[str]:
    """The literal parts of a message between its placeholders that are English words
    (two words or more: a lone word such as "quota" may be a code or a CSS class)."""
    return [p.strip(" .,;:()") for p in re.split(r"%\(\w+\)s", msgid)
            if len(re.findall(r"[A-Za-z]{2,}", p)) >= 2]


def test_a_chinese_report_has_the_chinese_texts_and_no_english_sentence(report: Report) -> None:
    html = render.render_html(report)  # the default language
    assert '<html lang="zh-CN">' in html
    text = _visible_text(html)
    for zh in ("能耗报告", "各建筑汇总", "数据完整率", "本期告警", "折算系数及其来源", "分类能耗",
               "分项用电", "照明插座用电", "空调用电", "动力用电", "特殊用电", "总用电", "表计",
               "能耗限额", "2026年10月",
               "第 \" counter(page) \" 页，共 \" counter(pages) \" 页"):
        assert zh in (html if "counter" in zh else text), zh
    msgids = [m for m, files in _extracted().items() if not _language_neutral(m)
              and any(f.startswith(("templates/report", "labels", "render", "report"))
                     for f in files)]
    leaked = sorted({piece for m in msgids for piece in _english_pieces(m)
                     if piece and piece in text})
    assert leaked == []
    d = render.report_dict(report)
    admin = next(b for b in d["buildings"] if b["id"] == "admin")
    assert {s["code"]: s["name"] for s in admin["subitems"]}["01A00"] == "照明插座用电"
    assert d["lang"] == "zh-CN" and d["period_text"] == "2026年10月"
    assert admin["type_text"] and admin["energy"][0]["energy_text"] == "电"


def test_lang_en_gives_english(report: Report) -> None:
    html = render.render_html(report, "en")
    assert '<html lang="en">' in html
    for en in ("Energy report", "Summary by building", "Data completeness",
               "Conversion factors and their sources", "lighting and sockets", "October 2026"):
        assert en in html, en
    assert not re.search(r"[\u4e00-\u9fff]", _visible_text(html).replace(
        report.site_name, "")) or "GB" in html  # Chinese only where the data has it
    d = render.report_dict(report, "en")
    admin = next(b for b in d["buildings"] if b["id"] == "admin")
    assert {s["code"]: s["name"] for s in admin["subitems"]}["01A00"] == "lighting and sockets"
    assert d["period_text"] == "October 2026"


def test_the_api_speaks_the_requested_language(stack: Stack) -> None:
    url = f"{stack.url}/api/v1/sites/{SITE}/reports/{MONTH}"

    def get(headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
        return httpx.get(url, params=params, headers={**auth(INSPECTOR_TOKEN), **(headers or {})},
                         timeout=60)

    assert get().json()["period_text"] == "2026年10月"  # the configured default
    assert get(lang="en").json()["period_text"] == "October 2026"
    assert get({"Accept-Language": "en-US,en;q=0.9"}).json()["period_text"] == "October 2026"
    # ?lang= wins over the browser's header
    assert get({"Accept-Language": "en"}, lang="zh-CN").json()["lang"] == "zh-CN"
    assert "Summary by building" in get(lang="en", format="html").text
    r = get(lang="fr")
    assert r.status_code == 422 and "zh-CN" in r.text
    page = httpx.get(stack.url + "/", params={"lang": "en"}, timeout=30)
    assert "enmon console" in page.text and '<html lang="en">' in page.text
    # the console's script strings travel with the page, as data
    cat = re.search(r'<script type="application/json" id="i18n-catalog">(.*?)</script>',
                    httpx.get(stack.url + "/", timeout=30).text, re.S)
    assert cat is not None
    body = json.loads(cat.group(1))
    assert body["messages"]["Acknowledge"] == "确认"
    assert body["labels"]["subitems"]["01B00"] == "空调用电"


def test_cli_lang(loaded: Loaded, tmp_path: Path) -> None:
    import yaml

    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(loaded.data.site.model_dump(mode="json"),
                                        allow_unicode=True), encoding="utf-8")
    base = [sys.executable, "-m", "enmon", "report", "--period", MONTH, "--site", str(site_file),
            "--influx-url", loaded.url, "--database", DB]
    for lang, text in ((None, "2026年10月"), ("en", "October 2026"), ("zh-CN", "2026年10月")):
        out = tmp_path / f"r-{lang}.json"
        r = subprocess.run([*base, "-o", str(out), *(["--lang", lang] if lang else [])],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(out.read_text(encoding="utf-8"))["period_text"] == text
    r = subprocess.run([*base, "-o", str(tmp_path / "x.json"), "--lang", "fr"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "zh-CN or en" in r.stderr


def _no_fonts(tmp_path: Path) -> Path:
    """A fontconfig configuration whose only font directory is empty."""
    (tmp_path / "fonts").mkdir()
    conf = tmp_path / "fonts.conf"
    conf.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
                    f"<fontconfig><dir>{tmp_path / 'fonts'}</dir>"
                    f"<cachedir>{tmp_path / 'cache'}</cachedir></fontconfig>\n",
                    encoding="utf-8")
    return conf


def test_the_chinese_pdf_embeds_a_cjk_font(report: Report, tmp_path: Path) -> None:
    assert render.check_cjk_font().startswith("Noto Sans CJK")
    pdf = render.render_pdf(report, tmp_path / "zh.pdf")
    assert pdf.startswith(b"%PDF-")
    fonts = _pdf_fonts(pdf)
    assert any(f.endswith(b"+Noto-Sans-CJK-SC") for f in fonts), fonts


def _pdf_fonts(pdf: bytes) -> set[bytes]:
    """The names of the fonts a PDF embeds (its objects are deflated in streams)."""
    import zlib

    names = set(re.findall(rb"/FontName ?/([^\s/>\]]+)", pdf))
    for m in re.finditer(rb"stream\r?\n", pdf):
        try:
            data = zlib.decompressobj().decompress(pdf[m.end():m.end() + 400_000])
        except zlib.error:
            continue
        names |= set(re.findall(rb"/FontName ?/([^\s/>\]]+)", data))
    return names


def test_no_cjk_font_refuses_the_pdf_with_the_package_to_install(
        report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FONTCONFIG_FILE", str(_no_fonts(tmp_path)))
    with pytest.raises(render.MissingFontError, match="apt-get install fonts-noto-cjk"):
        render.render_pdf(report, tmp_path / "boxes.pdf")
    assert not (tmp_path / "boxes.pdf").exists()
    # the command says so and exits non-zero before querying anything
    out = tmp_path / "r.pdf"
    r = subprocess.run([sys.executable, "-m", "enmon", "report", "--period", MONTH,
                        "--influx-url", "http://127.0.0.1:9", "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "fonts-noto-cjk" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_the_api_refuses_a_pdf_without_a_cjk_font(stack: Stack, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # the API runs in this process (conftest's stack): its fc-list sees this environment
    monkeypatch.setenv("FONTCONFIG_FILE", str(_no_fonts(tmp_path)))
    r = httpx.get(f"{stack.url}/api/v1/sites/{SITE}/reports/{MONTH}",
                  params={"format": "pdf"}, headers=auth(INSPECTOR_TOKEN), timeout=60)
    assert r.status_code == 503 and "apt-get install fonts-noto-cjk" in r.json()["detail"]
