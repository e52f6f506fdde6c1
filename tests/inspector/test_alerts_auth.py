"""Folding the ``alert`` history into episodes, token roles, and alert summaries written
in the reader's language (pure, then through the real API stack of ``conftest``)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from inspector.alerts import episodes, from_book, matches
from inspector.auth import Principal, TokenBook, new_token, token_hash
from tests.inspector.conftest import INSPECTOR_TOKEN, Stack, auth


def _row(t: int, state: str, fp: str = "f1", **kw: object) -> dict[str, object]:
    return {"time": t, "state": state, "fingerprint": fp, "rule": "peak", "severity": "critical",
            "site": "s", "building": "b", "device": "d", "summary": f"{state} at {t}", **kw}


def test_episodes_follow_the_lifecycle() -> None:
    rows = [
        _row(10, "pending"), _row(20, "firing", value=9.0),
        _row(25, "acknowledged", acked_by="li"), _row(40, "resolved", value=1.0),
        _row(50, "pending"),                       # fires again: a new episode
        _row(55, "firing"),
        _row(60, "pending", fp="f2"), _row(61, "inactive", fp="f2"),  # a blip that never fired
        _row(5, "resolved", fp="f3"),              # history that starts mid-episode: ignored
    ]
    eps = episodes(reversed(rows))  # order of the rows does not matter
    assert [(e["fingerprint"], e["since"], e["state"]) for e in eps] == [
        ("f2", 60, "inactive"), ("f1", 50, "firing"), ("f1", 10, "resolved")]
    first = eps[2]
    assert (first["fired_at"], first["resolved_at"], first["acked_by"], first["acked_at"]) == (
        20, 40, "li", 25)
    assert first["labels"] == {"site": "s", "building": "b", "device": "d"}
    assert first["value"] == 1.0 and first["summary"] == "resolved at 40"
    assert eps[1]["acked_by"] is None  # an acknowledgement lasts one firing cycle
    assert matches(first, site="s", device="d") and not matches(first, building="x")


def test_live_book_shape() -> None:
    eps = from_book([{"fingerprint": "a", "rule": "r", "labels": {"site": "s"}, "state": "firing",
                      "active_since": 5, "fired_at": 6, "acked_by": "li", "acked_at": 7,
                      "severity": "warning", "summary": "x", "value": 1.5, "changed_at": 6}])
    assert eps[0]["since"] == 5 and eps[0]["acked_by"] == "li" and eps[0]["state"] == "firing"


def test_tokens_are_checked_by_hash_and_roles_limit_actions() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("enm_") and len(a) > 30
    book = TokenBook([("wang", "inspector", token_hash(a)), ("li", "facility_manager",
                                                             token_hash(b).upper())])
    assert book.who(a) == Principal("wang", "inspector")
    assert book.who(b) == Principal("li", "facility_manager")
    assert book.who(None) is None and book.who("") is None and book.who(a + "x") is None
    assert book.who(token_hash(a)) is None  # the stored hash is not itself a token
    assert book.who(a).may("read") and not book.who(a).may("ack")  # type: ignore[union-attr]
    assert book.who(b).may("ack")  # type: ignore[union-attr]


def test_series_keys_are_parsed_with_escapes() -> None:
    from enmon.lineproto import parse_series_key

    key = r"meter,building=main\ hall,category=01A00,device=m\,1,gateway=gw\=a,site=s"
    assert parse_series_key(key) == {"building": "main hall", "category": "01A00",
                                     "device": "m,1", "gateway": "gw=a", "site": "s"}


def test_summaries_are_written_in_the_readers_language_from_the_stored_data() -> None:
    from inspector.alerts import localized

    args = json.dumps({"device": "m1", "duration": 930})  # the alert measurement's JSON text
    rows = [_row(10, "firing", rule="meter_offline", summary="no reading from m1 for 15 min 30 s",
                 summary_id="meter_offline", summary_args=args),
            _row(10, "firing", fp="old", summary="no reading from m9 for 930 s")]  # before
    eps = {e["fingerprint"]: e for e in episodes(rows)}
    zh = {e["fingerprint"]: e["summary"] for e in localized(eps.values(), "zh-CN",
                                                             lambda _: "Asia/Shanghai")}
    en = {e["fingerprint"]: e["summary"] for e in localized(eps.values(), "en",
                                                             lambda _: "Asia/Shanghai")}
    assert zh == {"f1": "m1 已 15分30秒 无读数", "old": "no reading from m9 for 930 s"}
    assert en == {"f1": "no reading from m1 for 15 min 30 s", "old": "no reading from m9 for 930 s"}
    book = from_book([{"fingerprint": "a", "rule": "meter_offline", "labels": {"site": "s"},
                       "state": "firing", "active_since": 5, "summary": "x",
                       "summary_id": "meter_offline", "summary_args": {"device": "m1",
                                                                       "duration": 45}}])
    assert localized(book, "zh-CN", lambda _: "Asia/Shanghai")[0]["summary"] == "m1 已 45秒 无读数"


def test_the_api_and_console_list_alert_summaries_in_chinese_by_default(stack: Stack) -> None:
    """The live alert (a real batch over the threshold, from the rules API) and the stored
    history (rows the rules outbox wrote into influxd) both say it in the reader's language."""
    def alerts(**params: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{stack.url}/api/v1/alerts", headers=auth(INSPECTOR_TOKEN),
                      params=params, timeout=30)
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()["alerts"]
        return out

    fp = stack.live_fingerprint
    live = {a["fingerprint"]: a["summary"] for a in alerts(active_only="true")}
    assert live[fp] == "hosp-main 的有功功率为 812.50 kW（限值 500 kW）"
    live_en = {a["fingerprint"]: a["summary"] for a in alerts(active_only="true", lang="en")}
    assert live_en[fp] == "active power of hosp-main is 812.50 kW (limit 500 kW)"
    # the simulated days' alerts come from the alert measurement (JSON arguments in a field)
    mall = alerts(days="400", device="mall-main")
    assert [a["rule"] for a in mall] == ["peak_demand"]
    assert re.fullmatch(r"mall-main 的有功功率已回落至 [\d.]+ kW（低于 [\d.]+ kW）",
                        mall[0]["summary"]), mall[0]["summary"]


def test_the_reports_alert_table_says_it_in_the_reports_language(stack: Stack) -> None:
    from tests.inspector.conftest import MONTH

    site = stack.loaded.data.site.site

    def report_alerts(lang: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{stack.url}/api/v1/sites/{site}/reports/{MONTH}",
                      headers=auth(INSPECTOR_TOKEN), params={"lang": lang}, timeout=60)
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()["alerts"]
        return out

    zh = [a["summary"] for a in report_alerts("zh-CN") if a["rule"] == "peak_demand"]
    en = [a["summary"] for a in report_alerts("en") if a["rule"] == "peak_demand"]
    assert zh and all("的有功功率" in s and " kW" in s for s in zh), zh
    assert en and all(s.startswith("active power of ") for s in en), en
    html = httpx.get(f"{stack.url}/api/v1/sites/{site}/reports/{MONTH}",
                     headers=auth(INSPECTOR_TOKEN), params={"format": "html"}, timeout=60).text
    assert zh[0] in html
