"""Pure parts: folding the ``alert`` history into episodes, and token roles."""

from __future__ import annotations

from inspector.alerts import episodes, from_book, matches
from inspector.auth import Principal, TokenBook, new_token, token_hash


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
    from inspector.store import parse_series_key

    key = r"meter,building=main\ hall,category=01A00,device=m\,1,gateway=gw\=a,site=s"
    assert parse_series_key(key) == {"building": "main hall", "category": "01A00",
                                     "device": "m,1", "gateway": "gw=a", "site": "s"}
