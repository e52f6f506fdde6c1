"""The alert lifecycle: pending → firing → resolved, ack, dedup, repeat, silences.

Pure state machine, no clock and no I/O: every call takes ``now`` (epoch ms) and
returns what changed (for the ``alert`` measurement and the MQTT alerts topic)
and what should be notified (for the outbox). The whole book serialises to JSON
so that a restarted rules process neither re-notifies nor forgets.

Semantics (the facility manager's view):

- A condition that holds starts a *pending* alert; it *fires* once it has held
  for ``for_ms`` (0 fires at once). If it stops holding while pending, the alert
  goes back to *inactive* quietly: a blip is not news.
- Alerts are deduplicated by fingerprint = hash(rule, labels): one building's
  quota has one alert, however often the rule is evaluated.
- A firing alert is notified once, then again every ``repeat_ms`` until it is
  acknowledged or resolves. Resolution is notified only if the firing was.
- Silences (absolute time ranges) and maintenance windows (weekly) match labels;
  while one applies, changes are still recorded but nobody is notified. An alert
  still firing when its silence ends is notified then.

What an alert says is data (``enmon.summaries.Summary``: a template id and its figures,
``summary_id`` and ``summary_args``), written in each reader's language where it is shown;
``summary`` keeps its English text for the logs, Grafana and readers of older records.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from enmon.summaries import Summary, english

Severity = Literal["info", "warning", "critical"]


class State(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Stable id of an alert: the same rule on the same thing is the same alert."""
    text = rule + "\x00" + "\x00".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Alert:
    fingerprint: str
    rule: str
    labels: dict[str, str]
    severity: str = "warning"
    state: State = State.INACTIVE
    active_since: int | None = None   # condition first held (start of pending)
    fired_at: int | None = None
    resolved_at: int | None = None
    changed_at: int = 0
    last_notified: int | None = None
    notified: bool = False            # a "firing" notification went out in this cycle
    acked_by: str | None = None
    acked_at: int | None = None
    value: float | None = None
    summary: str = ""                 # English, as stored before summaries were data
    summary_id: str = ""              # enmon.summaries template, "" in an older state file
    summary_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """One state change: a row in the ``alert`` measurement and a message on MQTT."""

    ts: int
    fingerprint: str
    rule: str
    labels: dict[str, str]
    severity: str
    old: str
    new: str
    value: float | None
    summary: str
    acked_by: str | None = None
    summary_id: str = ""
    summary_args: dict[str, Any] = field(default_factory=dict)


NotificationKind = Literal["firing", "repeat", "resolved"]


@dataclass(frozen=True, slots=True)
class Notification:
    ts: int
    kind: NotificationKind
    fingerprint: str
    rule: str
    labels: dict[str, str]
    severity: str
    value: float | None
    summary: str
    fired_at: int | None
    since: int | None = None  # when the condition first held (start of pending)
    summary_id: str = ""
    summary_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Silence:
    """Mute alerts whose labels match (shell-style patterns) between ``starts`` and ``ends``."""

    id: str
    matchers: dict[str, str]
    starts: int
    ends: int
    comment: str = ""
    created_by: str = ""

    def applies(self, labels: Mapping[str, str], now: int, rule: str = "") -> bool:
        return self.starts <= now < self.ends and _match(self.matchers, labels, rule)


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A weekly window (e.g. every Sunday 02:00–06:00 local) during which matches are muted."""

    name: str
    matchers: dict[str, str]
    weekdays: tuple[int, ...]  # 0 = Monday
    start: str                 # "HH:MM" local
    end: str                   # "HH:MM" local; may be past midnight (end < start)
    tz: str = "Asia/Shanghai"

    def applies(self, labels: Mapping[str, str], now: int, rule: str = "") -> bool:
        if not _match(self.matchers, labels, rule):
            return False
        d = datetime.fromtimestamp(now / 1000, ZoneInfo(self.tz))
        minute = d.hour * 60 + d.minute
        s = _hhmm(self.start)
        e = _hhmm(self.end)
        if s <= e:
            return d.weekday() in self.weekdays and s <= minute < e
        # crosses midnight: the part after midnight belongs to the previous day's window
        if minute >= s:
            return d.weekday() in self.weekdays
        return minute < e and (d.weekday() - 1) % 7 in self.weekdays


def _hhmm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _match(matchers: Mapping[str, str], labels: Mapping[str, str], rule: str) -> bool:
    for k, pattern in matchers.items():
        value = rule if k == "rule" else labels.get(k)
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    return True


@dataclass(slots=True)
class Outcome:
    changes: list[Change] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.changes.extend(other.changes)
        self.notifications.extend(other.notifications)


class AlertBook:
    """All alerts of one rules process, their silences and maintenance windows."""

    def __init__(self, *, retain_resolved_ms: int = 7 * 86_400_000) -> None:
        self.alerts: dict[str, Alert] = {}
        self.silences: dict[str, Silence] = {}
        self.windows: list[MaintenanceWindow] = []
        self.retain_resolved_ms = retain_resolved_ms

    # ------------------------------------------------------------------ evaluation

    def observe(self, *, rule: str, labels: Mapping[str, str], active: bool, now: int,
                for_ms: int = 0, repeat_ms: int = 4 * 3_600_000, severity: Severity = "warning",
                value: float | None = None, summary: str | Summary = "") -> Outcome:
        """Feed one evaluation of a rule for one thing (labels) at ``now``.

        ``summary`` is what the alert says now (a :class:`~enmon.summaries.Summary`; a bare
        text is taken as English, for callers that have no template); an empty one keeps
        what it said before.
        """
        fp = fingerprint(rule, labels)
        a = self.alerts.get(fp)
        out = Outcome()
        if a is None:
            if not active:
                return out
            a = self.alerts[fp] = Alert(fp, rule, dict(labels), severity)
        a.severity = severity
        if value is not None and (active or a.state == State.FIRING):
            a.value = value  # the value that resolved it is what the receiver wants to see
        if isinstance(summary, Summary):
            if summary.id != a.summary_id or summary.args != a.summary_args:
                a.summary_id, a.summary_args = summary.id, summary.args
                a.summary = english(summary)
        elif summary:
            a.summary, a.summary_id, a.summary_args = summary, "", {}
        if active and a.state in (State.INACTIVE, State.RESOLVED):
            a.active_since, a.fired_at, a.resolved_at = now, None, None
            a.notified, a.acked_by, a.acked_at, a.last_notified = False, None, None, None
            self._move(a, State.PENDING, now, out)
        since = now if a.active_since is None else a.active_since
        if active and a.state == State.PENDING and now - since >= for_ms:
            a.fired_at = now
            self._move(a, State.FIRING, now, out)
        if not active and a.state == State.PENDING:
            a.active_since = None
            self._move(a, State.INACTIVE, now, out)
        elif not active and a.state == State.FIRING:
            a.resolved_at = now
            self._move(a, State.RESOLVED, now, out)
            if a.notified and not self.muted(a, now):
                out.notifications.append(self._note(a, "resolved", now))
            a.notified = False
        self._notify_due(a, now, repeat_ms, out)
        return out

    def tick(self, now: int, *, repeat_ms: int | Mapping[str, int] = 4 * 3_600_000) -> Outcome:
        """Time passes: repeats fall due, silences end, old resolved alerts are forgotten."""
        out = Outcome()
        for fp, a in list(self.alerts.items()):
            r = repeat_ms if isinstance(repeat_ms, int) else repeat_ms.get(a.rule, 4 * 3_600_000)
            self._notify_due(a, now, r, out)
            old = now - a.changed_at > self.retain_resolved_ms
            if a.state in (State.RESOLVED, State.INACTIVE) and old:
                del self.alerts[fp]
        for sid, s in list(self.silences.items()):
            if s.ends <= now:
                del self.silences[sid]
        return out

    def _notify_due(self, a: Alert, now: int, repeat_ms: int, out: Outcome) -> None:
        if a.state != State.FIRING or self.muted(a, now):
            return
        if not a.notified:
            a.notified, a.last_notified = True, now
            out.notifications.append(self._note(a, "firing", now))
        elif (a.acked_by is None and a.last_notified is not None
              and now - a.last_notified >= repeat_ms):
            a.last_notified = now
            out.notifications.append(self._note(a, "repeat", now))

    @staticmethod
    def _stamp(a: Alert, now: int) -> int:
        # Streaming rules run on reading time and operators act on wall time; an alert's
        # own history must still read in the order things happened, one ms apart at least.
        ts = max(now, a.changed_at + 1) if a.changed_at else now
        a.changed_at = ts
        return ts

    def _move(self, a: Alert, new: State, now: int, out: Outcome) -> None:
        old, a.state = a.state, new
        ts = self._stamp(a, now)
        out.changes.append(Change(ts, a.fingerprint, a.rule, dict(a.labels), a.severity,
                                  old.value, new.value, a.value, a.summary, a.acked_by,
                                  a.summary_id, a.summary_args))

    def _note(self, a: Alert, kind: NotificationKind, now: int) -> Notification:
        return Notification(now, kind, a.fingerprint, a.rule, dict(a.labels), a.severity, a.value,
                            a.summary, a.fired_at, a.active_since, a.summary_id, a.summary_args)

    # ------------------------------------------------------------------ operator actions

    def ack(self, fp: str, *, by: str, now: int) -> Outcome:
        """Acknowledge a pending or firing alert: no more repeats this cycle."""
        out = Outcome()
        live = [x for x in self.alerts.values() if x.state in (State.PENDING, State.FIRING)
                and x.fingerprint.startswith(fp)]
        if len(live) > 1:
            raise KeyError(f"fingerprint prefix {fp!r} matches {len(live)} alerts; give more of it")
        if not live:
            raise KeyError(f"no pending or firing alert {fp!r}")
        a = live[0]
        a.acked_by, a.acked_at = by, now
        out.changes.append(Change(self._stamp(a, now), a.fingerprint, a.rule, dict(a.labels),
                                  a.severity, a.state.value, "acknowledged", a.value, a.summary,
                                  by, a.summary_id, a.summary_args))
        return out

    def add_silence(self, s: Silence) -> None:
        self.silences[s.id] = s

    def muted(self, a: Alert, now: int) -> bool:
        return any(s.applies(a.labels, now, a.rule) for s in self.silences.values()) or any(
            w.applies(a.labels, now, a.rule) for w in self.windows)

    def active(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state in (State.PENDING, State.FIRING)]

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "alerts": [{**asdict(a), "state": a.state.value} for a in self.alerts.values()],
            "silences": [asdict(s) for s in self.silences.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, windows: Sequence[MaintenanceWindow] = (),
                  retain_resolved_ms: int = 7 * 86_400_000) -> AlertBook:
        book = cls(retain_resolved_ms=retain_resolved_ms)
        book.windows = list(windows)
        if data.get("version") != 1:
            raise ValueError(f"unknown alert state version {data.get('version')!r}")
        for raw in data.get("alerts", []):
            a = Alert(**{**raw, "state": State(raw["state"])})
            book.alerts[a.fingerprint] = a
        for raw in data.get("silences", []):
            book.silences[raw["id"]] = Silence(**raw)
        return book


class Hysteresis:
    """A threshold that turns on above ``on`` and off only below ``off`` (no flapping).

    For a "high" alarm ``off < on`` (e.g. peak demand on at 800 kW, off below 750 kW);
    for a "low" alarm (``direction="below"``) ``off > on``.
    """

    def __init__(self, on: float, off: float,
                 direction: Literal["above", "below"] = "above") -> None:
        if (direction == "above" and off > on) or (direction == "below" and off < on):
            raise ValueError("the off level must be on the safe side of the on level")
        self.on, self.off, self.direction = on, off, direction

    def next(self, active: bool, value: float) -> bool:
        if self.direction == "above":
            return value >= self.off if active else value > self.on
        return value <= self.off if active else value < self.on
