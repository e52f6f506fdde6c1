"""Alerts for inspectors and managers: history from InfluxDB, the live book from rules' API.

Two sources, one shape:

- the ``alert`` measurement holds every state change the rules service made
  (``rules.service.alert_line``: the state and fingerprint are tags, ``old_state``,
  ``summary``, ``value`` and ``acked_by`` fields). :func:`episodes` folds it into
  one record per firing — what a report lists and what is left when the rules
  process is down;
- the rules service's HTTP API (``GET /alerts``, ``POST /alerts/{fp}/ack``) is
  the live alert book. Acknowledging goes *there*, through the lifecycle's own
  :meth:`rules.lifecycle.AlertBook.ack` (only a pending or firing alert can be
  acknowledged; the change is recorded in ``alert`` like every other). The
  inspector never edits the book itself: two writers of one state file would
  lose acknowledgements.

An episode's ``summary`` is written in the reader's language by :func:`localized` from
what the alert says as data (``summary_id``, ``summary_args``: ``enmon.summaries``, the
same templates and figures as the notification); an alert recorded before summaries were
data shows its stored English text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from enmon import summaries
from enmon.i18n import Lang

LABELS = ("site", "building", "gateway", "device", "boiler", "quantity", "budget")
ACTIVE = ("pending", "firing")


def episodes(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fold state-change rows into alert episodes (newest first).

    An episode starts when a fingerprint goes pending or firing from nothing,
    inactive or resolved, and ends when it resolves (or falls back to inactive).
    """
    open_: dict[str, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for r in sorted(rows, key=lambda r: int(r["time"])):
        fp = str(r.get("fingerprint") or "")
        if not fp:
            continue
        state = str(r.get("state") or "")
        ts = int(r["time"])
        ep = open_.get(fp)
        if ep is None and state in ACTIVE:
            ep = open_[fp] = {
                "fingerprint": fp, "rule": r.get("rule", ""), "severity": r.get("severity", ""),
                "labels": {k: r[k] for k in LABELS if r.get(k)}, "state": state, "since": ts,
                "fired_at": None, "resolved_at": None, "acked_by": None, "acked_at": None,
                "summary": r.get("summary") or "", "value": r.get("value"),
                "summary_id": r.get("summary_id") or "",
                "summary_args": r.get("summary_args") or {},
            }
        if ep is None:
            continue
        if state == "acknowledged":
            ep["acked_by"], ep["acked_at"] = r.get("acked_by") or "", ts
            continue
        ep["state"] = state
        if r.get("summary"):
            ep["summary"] = r["summary"]
            # the English text and the data of one row go together: a newer row without
            # data (an older rules version) must not be read with an older row's figures
            ep["summary_id"] = r.get("summary_id") or ""
            ep["summary_args"] = r.get("summary_args") or {}
        if r.get("value") is not None:
            ep["value"] = r["value"]
        if state == "firing" and ep["fired_at"] is None:
            ep["fired_at"] = ts
        if state in ("resolved", "inactive"):
            ep["resolved_at"] = ts
            done.append(open_.pop(fp))
    done.extend(open_.values())
    return sorted(done, key=lambda e: e["since"], reverse=True)


def from_book(alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rules API's ``GET /alerts`` (serialised ``rules.lifecycle.Alert``) as episodes."""
    out = []
    for a in alerts:
        out.append({
            "fingerprint": a.get("fingerprint", ""), "rule": a.get("rule", ""),
            "severity": a.get("severity", ""), "labels": dict(a.get("labels") or {}),
            "state": a.get("state", ""), "since": a.get("active_since") or a.get("changed_at"),
            "fired_at": a.get("fired_at"), "resolved_at": a.get("resolved_at"),
            "acked_by": a.get("acked_by"), "acked_at": a.get("acked_at"),
            "summary": a.get("summary", ""), "value": a.get("value"),
            "summary_id": a.get("summary_id") or "", "summary_args": a.get("summary_args") or {},
        })
    return sorted(out, key=lambda e: e["since"] or 0, reverse=True)


def localized(eps: Iterable[Mapping[str, Any]], lang: Lang,
              tz_of: Callable[[str], str]) -> list[dict[str, Any]]:
    """Episodes with their ``summary`` in ``lang`` (times in the site's zone, ``tz_of(site)``)."""
    return [{**e, "summary": summaries.text_of(
        e, lang, tz=tz_of(str((e.get("labels") or {}).get("site", ""))))} for e in eps]


def matches(ep: Mapping[str, Any], *, site: str | None = None, building: str | None = None,
            device: str | None = None) -> bool:
    labels = ep.get("labels") or {}
    return all(want is None or labels.get(key) == want
               for key, want in (("site", site), ("building", building), ("device", device)))


class AckError(Exception):
    """An acknowledgement that did not happen; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class RulesClient:
    """The rules service's alert API (``rules.service.RulesService.api``)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def alerts(self) -> list[dict[str, Any]]:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as c:
                r = await c.get(f"{self.url}/alerts", headers=self._headers())
        except httpx.HTTPError as exc:
            raise AckError(502, f"rules service unreachable: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise AckError(502, f"rules service answered HTTP {r.status_code}")
        return from_book(r.json())

    async def ack(self, fingerprint: str, by: str) -> dict[str, Any]:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as c:
                r = await c.post(f"{self.url}/alerts/{fingerprint}/ack", json={"by": by},
                                 headers=self._headers())
        except httpx.HTTPError as exc:
            raise AckError(502, f"rules service unreachable: {type(exc).__name__}") from exc
        if r.status_code == 404:
            raise AckError(404, f"no pending or firing alert {fingerprint!r}")
        if r.status_code != 200:
            raise AckError(502, f"rules service refused the acknowledgement: HTTP {r.status_code}")
        body: dict[str, Any] = r.json()
        return body
