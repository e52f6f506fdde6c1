"""Channels receive notifications by severity; state changes always go to the history."""

from __future__ import annotations

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
