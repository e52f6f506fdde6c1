"""Channels receive notifications by severity; state changes always go to the history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rules.config import RulesConfig
from rules.lifecycle import AlertBook
from rules.service import ALERT_DB, ALERT_MQTT, RulesService


class Null:
    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, note: dict[str, Any]) -> None:
        return None


def test_min_severity_routes_notifications(tmp_path: Path) -> None:
    cfg = RulesConfig.model_validate({
        "state_dir": str(tmp_path / "state"),
        "channels": [{"type": "webhook", "name": "all", "url": "http://127.0.0.1:9/x"},
                     {"type": "webhook", "name": "night", "url": "http://127.0.0.1:9/y",
                      "min_severity": "critical"}]})
    svc = RulesService(cfg)
    svc.outbox.senders = {n: Null(n) for n in ("all", "night", ALERT_DB, ALERT_MQTT)}
    book: AlertBook = svc.book
    svc.apply(book.observe(rule="peak", labels={"site": "s"}, active=True, now=0,
                           severity="warning"))
    svc.apply(book.observe(rule="gw", labels={"site": "s"}, active=True, now=0,
                           severity="critical"))
    counts = svc.outbox.counts()
    assert counts["all"] == {"pending": 2}
    assert counts["night"] == {"pending": 1}          # only the critical one
    assert counts[ALERT_DB] == {"pending": 4}          # pending + firing of both alerts
    svc.outbox.close()


def test_each_building_manager_gets_only_their_building(tmp_path: Path) -> None:
    cfg = RulesConfig.model_validate({
        "state_dir": str(tmp_path / "state"),
        "channels": [
            {"type": "webhook", "name": "office-mgr", "url": "http://127.0.0.1:9/a",
             "match": {"building": "office-1"}},
            {"type": "webhook", "name": "labs-mgr", "url": "http://127.0.0.1:9/b",
             "match": {"site": "campus", "building": ["lab-*", "annex"]}},
            {"type": "webhook", "name": "energy-office", "url": "http://127.0.0.1:9/c",
             "match": {"rule": "quota_*"}, "min_severity": "warning"}]})
    svc = RulesService(cfg)
    svc.outbox.senders = {n: Null(n) for n in ("office-mgr", "labs-mgr", "energy-office",
                                                ALERT_DB, ALERT_MQTT)}
    book: AlertBook = svc.book
    for rule, building in (("meter_offline", "office-1"), ("meter_offline", "lab-2"),
                           ("quota_exceeded", "lab-2"), ("meter_offline", "annex")):
        svc.apply(book.observe(rule=rule, labels={"site": "campus", "building": building},
                               active=True, now=0, severity="warning"))
    svc.apply(book.observe(rule="gateway_offline", labels={"site": "campus"}, active=True,
                           now=0, severity="critical"))  # no building: no manager's channel
    rows = {ch: [json.loads(r["body"])["labels"].get("building") for r in svc.outbox.rows()
                 if r["channel"] == ch] for ch in ("office-mgr", "labs-mgr", "energy-office")}
    assert rows == {"office-mgr": ["office-1"], "labs-mgr": ["lab-2", "lab-2", "annex"],
                    "energy-office": ["lab-2"]}
    body = next(json.loads(r["body"]) for r in svc.outbox.rows() if r["channel"] == "labs-mgr")
    assert body["tz"] == "Asia/Shanghai"  # no site file: the config's zone
    svc.outbox.close()


def _grouped_service(tmp_path: Path, clock: list[float]) -> RulesService:
    cfg = RulesConfig.model_validate({
        "state_dir": str(tmp_path / "state"),
        "grouping": {"group_by": ["site", "building"], "group_wait_s": 30,
                     "group_interval_s": 300},
        "channels": [{"type": "webhook", "name": "mgr", "url": "http://127.0.0.1:9/a"}]})
    svc = RulesService(cfg)
    svc.outbox.senders = {n: Null(n) for n in ("mgr", ALERT_DB, ALERT_MQTT)}
    svc.outbox.clock = lambda: clock[0]
    return svc


def _queued(svc: RulesService) -> list[tuple[str, list[str]]]:
    out = []
    for r in svc.outbox.rows():
        if r["channel"] == "mgr":
            b = json.loads(r["body"])
            out.append((b["kind"], [a["labels"]["device"] for a in b.get("alerts", [b])]))
    return out


async def test_a_group_waits_and_a_resolution_never_overtakes_its_held_firing(
        tmp_path: Path) -> None:
    """Held firings are released as one message when group_wait_s has passed; the next
    message of the same group waits for group_interval_s; a resolution of a held alert
    releases its group first (order kept within a channel)."""
    clock = [1000.0]
    svc = _grouped_service(tmp_path, clock)
    book = svc.book
    for dev in ("m1", "m2"):
        svc.apply(book.observe(rule="meter_offline", labels={"site": "s", "building": "b1",
                                                             "device": dev}, active=True, now=0))
    assert svc.outbox.counts()["mgr"] == {"grouping": 2}
    assert await svc.outbox.deliver_once("mgr") == 30.0  # not yet: group_wait_s
    clock[0] += 30
    svc.outbox.release_due("mgr")
    assert _queued(svc) == [("group", ["m1", "m2"])]
    # a third alert of the same place 60 s later: held until 300 s after the last message
    clock[0] += 60
    svc.apply(book.observe(rule="meter_offline", labels={"site": "s", "building": "b1",
                                                         "device": "m3"}, active=True, now=1))
    assert svc.outbox.release_due("mgr") == 240.0
    # ... unless it resolves first: its firing goes out before its resolution
    svc.apply(book.observe(rule="meter_offline", labels={"site": "s", "building": "b1",
                                                         "device": "m3"}, active=False, now=2))
    assert _queued(svc) == [("group", ["m1", "m2"]), ("firing", ["m3"]), ("resolved", ["m3"])]
    assert "grouping" not in svc.outbox.counts()["mgr"]
    svc.outbox.close()


async def test_an_escalation_counts_from_the_group_message_and_waits_out_a_silence(
        tmp_path: Path) -> None:
    """A firing held for its group is first notified when the group goes out: its escalation
    is due ``after_s`` after that, not after the firing. A silenced alert does not escalate
    while the silence lasts, and does once it ends (still firing, unacknowledged)."""
    from rules.lifecycle import Silence

    clock = [1000.0]
    cfg = RulesConfig.model_validate({
        "state_dir": str(tmp_path / "state"),
        "grouping": {"group_wait_s": 30},
        "channels": [{"type": "webhook", "name": "mgr", "url": "http://127.0.0.1:9/a",
                      "escalate": {"after_s": 10, "channels": ["boss"]}},
                     {"type": "webhook", "name": "boss", "url": "http://127.0.0.1:9/b",
                      "escalation_only": True}]})
    svc = RulesService(cfg)
    svc.outbox.senders = {n: Null(n) for n in ("mgr", "boss", ALERT_DB, ALERT_MQTT)}
    svc.outbox.clock = lambda: clock[0]
    labels = {"site": "s", "building": "b1", "device": "m1"}
    svc.apply(svc.book.observe(rule="meter_offline", labels=labels, active=True, now=0))
    assert [e["due_at"] for e in svc.outbox.escalations()] == [1040.0]
    svc.book.add_silence(Silence("x", {"building": "b1"}, 0, 2**62))
    clock[0] = 1045.0
    assert svc.escalate(1) == 0 and len(svc.outbox.escalations()) == 1  # silenced: waits
    svc.book.silences.clear()
    assert svc.escalate(2) == 1 and svc.outbox.escalations() == []
    assert svc.escalate(3) == 0  # once
    (boss,) = [json.loads(r["body"]) for r in svc.outbox.rows() if r["channel"] == "boss"]
    assert boss["kind"] == "escalated" and boss["unacked_s"] == 15.0
    assert boss["escalated_from"] == "mgr" and boss["device"] == "m1"
    svc.outbox.close()
