"""Alert lifecycle: pending/firing/resolved, dedup, repeat, ack, silences, restart."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from rules.lifecycle import AlertBook, Hysteresis, MaintenanceWindow, Silence, fingerprint

M = 60_000
L = {"site": "campus", "building": "b1"}


def kinds(out) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.kind for n in out.notifications]


def states(out) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(c.old, c.new) for c in out.changes]


def obs(book: AlertBook, active: bool, now: int, **kw):  # type: ignore[no-untyped-def]
    return book.observe(rule="peak", labels=L, active=active, now=now, for_ms=5 * M,
                        repeat_ms=60 * M, **kw)


def test_fingerprint_ignores_label_order_and_separates_rules() -> None:
    assert fingerprint("r", {"a": "1", "b": "2"}) == fingerprint("r", {"b": "2", "a": "1"})
    assert fingerprint("r", {"a": "1"}) != fingerprint("s", {"a": "1"})


def test_pending_then_firing_after_for_duration_then_resolved() -> None:
    book = AlertBook()
    out = obs(book, True, 0)
    assert states(out) == [("inactive", "pending")] and kinds(out) == []
    assert kinds(obs(book, True, 4 * M)) == []
    out = obs(book, True, 5 * M)
    assert states(out) == [("pending", "firing")] and kinds(out) == ["firing"]
    out = obs(book, False, 6 * M)
    assert states(out) == [("firing", "resolved")] and kinds(out) == ["resolved"]


def test_a_blip_shorter_than_for_duration_is_quiet() -> None:
    book = AlertBook()
    obs(book, True, 0)
    out = obs(book, False, 2 * M)
    assert states(out) == [("pending", "inactive")] and kinds(out) == []


def test_dedup_and_repeat_interval() -> None:
    book = AlertBook()
    obs(book, True, 0)
    notes = []
    for t in range(5, 200, 1):  # evaluated every minute for over three hours
        notes += kinds(obs(book, True, t * M))
    assert notes == ["firing", "repeat", "repeat", "repeat"]  # at 5, 65, 125, 185 min
    assert len(book.alerts) == 1


def test_ack_stops_repeats_until_next_cycle() -> None:
    book = AlertBook()
    obs(book, True, 0)
    obs(book, True, 5 * M)
    fp = fingerprint("peak", L)
    out = book.ack(fp[:8], by="zhang", now=10 * M)
    assert out.changes[0].new == "acknowledged" and out.changes[0].acked_by == "zhang"
    assert kinds(obs(book, True, 200 * M)) == []
    obs(book, False, 201 * M)
    obs(book, True, 300 * M)
    assert kinds(obs(book, True, 305 * M)) == ["firing"]  # a new cycle is news again
    with pytest.raises(KeyError):
        book.ack("nonexistent", by="x", now=0)


def test_silence_mutes_then_notifies_when_it_ends_if_still_firing() -> None:
    book = AlertBook()
    book.add_silence(Silence("s1", {"building": "b*"}, starts=0, ends=30 * M, comment="works"))
    obs(book, True, 0)
    out = obs(book, True, 5 * M)
    assert states(out) == [("pending", "firing")] and kinds(out) == []  # recorded, not notified
    assert kinds(book.tick(20 * M)) == []
    assert kinds(book.tick(30 * M)) == ["firing"]
    assert book.silences == {}


def test_resolution_of_a_never_notified_alert_is_not_notified() -> None:
    book = AlertBook()
    book.add_silence(Silence("s1", {"rule": "peak"}, starts=0, ends=60 * M))
    obs(book, True, 0)
    obs(book, True, 5 * M)
    out = obs(book, False, 10 * M)
    assert states(out) == [("firing", "resolved")] and kinds(out) == []


def test_maintenance_window_crossing_midnight() -> None:
    sh = ZoneInfo("Asia/Shanghai")
    w = MaintenanceWindow("sunday-night", {"site": "campus"}, weekdays=(6,), start="23:00",
                          end="02:00")

    def at(*a: int) -> int:
        return int(datetime(*a, tzinfo=sh).timestamp() * 1000)  # type: ignore[misc]

    # 2026-11-22 is a Sunday
    assert w.applies(L, at(2026, 11, 22, 23, 30))
    assert w.applies(L, at(2026, 11, 23, 1, 59))      # Monday early morning: still Sunday's window
    assert not w.applies(L, at(2026, 11, 23, 2, 0))
    assert not w.applies(L, at(2026, 11, 21, 23, 30))  # Saturday
    assert not w.applies({"site": "other"}, at(2026, 11, 22, 23, 30))


def test_restart_in_the_middle_of_a_firing_alert() -> None:
    book = AlertBook()
    obs(book, True, 0)
    assert kinds(obs(book, True, 5 * M)) == ["firing"]
    saved = json.dumps(book.to_dict())            # what the service writes to disk
    restored = AlertBook.from_dict(json.loads(saved))
    # after the restart: still firing, not re-notified, repeat timer continues
    assert kinds(obs(restored, True, 6 * M)) == []
    assert kinds(obs(restored, True, 65 * M)) == ["repeat"]
    assert kinds(obs(restored, False, 70 * M)) == ["resolved"]


def test_hysteresis_does_not_flap() -> None:
    h = Hysteresis(on=800, off=750)
    active = False
    seq = []
    for v in [700, 801, 790, 760, 749, 780, 801]:
        active = h.next(active, v)
        seq.append(active)
    assert seq == [False, True, True, True, False, False, True]
    low = Hysteresis(on=10, off=12, direction="below")
    assert low.next(False, 9) and low.next(True, 11.5) and not low.next(True, 12.5)
    with pytest.raises(ValueError):
        Hysteresis(on=800, off=850)


def test_ack_by_ambiguous_prefix_is_refused() -> None:
    book = AlertBook()
    for b in ("b1", "b2"):
        book.observe(rule="peak", labels={"building": b}, active=True, now=0)
    with pytest.raises(KeyError, match="matches 2 alerts"):
        book.ack("", by="x", now=1)
