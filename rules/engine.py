"""The evaluation core of the rules service: telemetry, status and check results in, outcomes out.

No I/O here: the service feeds batches, gateway status messages, the clock and
the results of scheduled InfluxDB checks, and gets back the :class:`Outcome` of
the alert book (state changes to record, notifications to send). That keeps
every rule testable with plain data, and makes replaying history give the same
alerts as live data (threshold and data-quality rules run on reading time).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from energy import accounting
from energy import balance as energy_balance
from energy import boiler as energy_boiler
from energy.quota import BudgetStatus, QuotaStatus
from energy.refdata import Ref
from energy.site import Boiler, Building, Meter, Site
from enmon import quantities, wire
from enmon.summaries import Summary, part
from rules import quality
from rules.config import RulesConfig
from rules.lifecycle import AlertBook, MaintenanceWindow, Outcome, State, fingerprint
from rules.quality import Finding

DeviceKey = tuple[str, str, str]  # site, gateway, device
log = logging.getLogger("enmon.rules")

QUALITY_RULES = ("meter_offline", "gateway_offline", "flatline", "counter_backwards",
                 "implausible_jump", "completeness", "boiler_implausible", "submeter_balance")


@dataclass(slots=True)
class _Flat:
    value: float
    since: int
    count: int


class Engine:
    def __init__(self, cfg: RulesConfig, sites: Iterable[Site], book: AlertBook, *,
                 started_ms: int) -> None:
        self.cfg = cfg
        self.sites = {s.site: s for s in sites}
        self.book = book
        self.book.windows = [MaintenanceWindow(m.name, dict(m.match), tuple(m.weekdays), m.start,
                                               m.end, m.tz) for m in cfg.maintenance]
        self.meters: dict[DeviceKey, tuple[Building, Meter]] = {}
        for s in self.sites.values():
            for b, m in s.meters():
                self.meters[(s.site, m.gateway, m.device)] = (b, m)
        # a restart must not page everyone: every known meter counts as just seen
        self.last_seen: dict[DeviceKey, int] = dict.fromkeys(self.meters, started_ms)
        self.building_of: dict[DeviceKey, str] = {k: b.id for k, (b, _) in self.meters.items()}
        self.last_counter: dict[tuple[str, str, str, str], tuple[int, float]] = {}
        self.flat: dict[tuple[str, str, str, str], _Flat] = {}
        self.gateways: dict[tuple[str, str], tuple[str, int]] = {}
        # (check, device, building) → the alert's fingerprint: a meter found fine on every
        # pass costs a dict lookup, not a hash of its labels
        self._quiet_fp: dict[tuple[str, DeviceKey, str | None], str] = {}
        # devices with a meter_offline alert in the book: the per-second scan skips the rest
        self._offline: set[DeviceKey] = {
            (a.labels.get("site", ""), a.labels.get("gateway", ""), a.labels.get("device", ""))
            for a in book.alerts.values() if a.rule == "meter_offline"}
        q = cfg.quality
        sch = cfg.schedule
        self.repeat_ms: dict[str, int] = {r.name: int(r.repeat_s * 1000) for r in cfg.thresholds}
        self.repeat_ms.update(dict.fromkeys(QUALITY_RULES, int(q.repeat_s * 1000)))
        for r in ("quota_early_warning", "quota_exceeded", "quota_over_pro_rata", "budget"):
            self.repeat_ms[r] = int(sch.quota_repeat_s * 1000)
        self.repeat_ms["boiler_efficiency"] = int(sch.boiler_repeat_s * 1000)
        self.repeat_ms["boiler_efficiency_indirect"] = int(sch.boiler_repeat_s * 1000)

    # ------------------------------------------------------------------ helpers

    def _active(self, rule: str, labels: dict[str, str]) -> bool:
        a = self.book.alerts.get(fingerprint(rule, labels))
        return a is not None and a.state in (State.PENDING, State.FIRING)

    def _firing(self, rule: str, labels: dict[str, str]) -> bool:
        a = self.book.alerts.get(fingerprint(rule, labels))
        return a is not None and a.state == State.FIRING

    def _observe(self, out: Outcome, rule: str, labels: dict[str, str], active: bool, now: int,
                 *, for_ms: int = 0, severity: str = "warning", value: float | None = None,
                 summary: Summary | str = "") -> None:
        if not active and fingerprint(rule, labels) not in self.book.alerts:
            return  # the common case: nothing wrong and nothing to resolve
        out.extend(self.book.observe(rule=rule, labels=labels, active=active, now=now,
                                     for_ms=for_ms, severity=severity,  # type: ignore[arg-type]
                                     repeat_ms=self.repeat_ms.get(rule, 4 * 3_600_000),
                                     value=value, summary=summary))

    def _labels(self, key: DeviceKey, **extra: str) -> dict[str, str]:
        site, gw, dev = key
        labels = {"site": site, "gateway": gw, "device": dev}
        b = self.building_of.get(key)
        if b:
            labels["building"] = b
        labels.update(extra)
        return labels

    def on_self(self, *, mqtt_down_s: float, failed_passes: int, now: int) -> Outcome:
        """``rules_degraded``: the engine's own broker connection or scheduled queries keep
        failing, so its silence about the meters means nothing (Grafana's "Error" state).

        Delivered through the outbox like any alert, so a webhook or e-mail reaches the
        facility manager while MQTT is the thing that is down.
        """
        q = self.cfg.quality
        mqtt_bad = mqtt_down_s >= q.degraded_after_s
        db_bad = failed_passes >= q.degraded_failed_passes
        why = []
        if mqtt_bad:
            why.append(part("no_broker", duration=round(mqtt_down_s)))
        if db_bad:
            why.append(part("passes_failed", passes=failed_passes))
        out = Outcome()
        self._observe(out, "rules_degraded", {"service": "rules"}, mqtt_bad or db_bad, now,
                      severity="critical", value=float(failed_passes),
                      summary=Summary("joined",
                                      {"reasons": why or [part("rules_recovered")]}))
        return out

    # ------------------------------------------------------------------ streaming

    def on_batch(self, batch: wire.Batch) -> Outcome:
        """Thresholds and per-sample data-quality checks on one telemetry batch."""
        out = Outcome()
        q = self.cfg.quality
        for s in sorted(batch.samples, key=lambda s: s.ts):
            key = (batch.site, batch.gateway, s.device)
            if s.values and s.ts > self.last_seen.get(key, 0):  # flags alone are no reading
                self.last_seen[key] = s.ts
            meta = batch.devices.get(s.device)
            if meta is not None and meta.building and key not in self.building_of:
                self.building_of[key] = meta.building
            for rule in self.cfg.thresholds:
                value = s.values.get(rule.quantity)
                if value is None or (rule.devices and s.device not in rule.devices):
                    continue
                labels = self._labels(key, quantity=rule.quantity)
                firing = self._firing(rule.name, labels)
                active = value >= rule.clear_below if firing else value > rule.above
                # built only when it is news: most samples are below every limit
                text = (Summary("threshold_above", {
                            "quantity": rule.quantity, "device": s.device, "value": value,
                            "limit": rule.above, "unit": _unit(rule.quantity)}) if active else
                        Summary("threshold_back", {
                            "quantity": rule.quantity, "device": s.device, "value": value,
                            "clear": rule.clear_below, "unit": _unit(rule.quantity)})
                        if firing else "")
                self._observe(out, rule.name, labels, active, s.ts, for_ms=int(rule.for_s * 1000),
                              severity=rule.severity, value=value, summary=text)
            for name, value in s.values.items():
                if quantities.is_counter(name):
                    self._counter(out, key, name, s.ts, value, s.flags.get(name))
                if name in q.flatline_quantities:
                    self._flatline(out, key, name, s.ts, value)
        return out

    def _counter(self, out: Outcome, key: DeviceKey, name: str, ts: int, value: float,
                 flag: str | None = None) -> None:
        q = self.cfg.quality
        ck = (*key, name)
        last = self.last_counter.get(ck)
        self.last_counter[ck] = (ts, value) if last is None or ts >= last[0] else last
        if last is None or ts <= last[0]:
            return
        t0, v0 = last
        labels = self._labels(key, quantity=name)
        meter = self.meters.get(key)
        m = meter[1] if meter is not None and meter[1].counter == name else None
        # what the step was, as the roll-ups count it: a wrap at the meter's rollover_at,
        # a swap recorded in the site file or a wrap the gateway flagged is no alert
        step = quality.counter_step(
            t0, v0, ts, value, flag=flag, rollover_at=m.rollover_at if m else None,
            replacements=_replacements(m) if m else (), jitter=q.counter_jitter)
        back = step.kind == "reset"
        if v0 - value > q.counter_jitter and not back:
            log.info("event=counter_decrease_explained site=%s gateway=%s device=%s quantity=%s "
                     "kind=%s flag=%s before=%g after=%g", *key, name, step.kind, flag, v0, value)
        self._observe(out, "counter_backwards", labels, back, ts, severity=q.severity,
                      value=value - v0,
                      summary=Summary("counter_backwards", {
                          "quantity": name, "device": key[2], "before": v0, "after": value,
                          "unit": _unit(name)}) if back else "")
        if m is not None and m.max_rate_per_h is not None:
            # the consumption of the step, not the difference of indices: a swap to a new
            # meter with a higher index is not a jump
            rate = step.amount / ((ts - t0) / 3_600_000)
            jump = rate > m.max_rate_per_h
            self._observe(out, "implausible_jump", labels, jump, ts, severity=q.severity,
                          value=rate, summary=Summary("implausible_jump", {
                              "quantity": name, "device": key[2], "amount": step.amount,
                              "minutes": (ts - t0) / 60000, "rate": rate,
                              "max_rate": m.max_rate_per_h, "unit": _unit(name)}) if jump else "")

    def _flatline(self, out: Outcome, key: DeviceKey, name: str, ts: int, value: float) -> None:
        q = self.cfg.quality
        fk = (*key, name)
        f = self.flat.get(fk)
        if f is None or value != f.value:
            f = self.flat[fk] = _Flat(value, ts, 1)
        elif ts > f.since:
            f.count += 1
        stuck = f.count >= 3 and ts - f.since >= q.flatline_s * 1000
        self._observe(out, "flatline", self._labels(key, quantity=name), stuck, ts,
                      severity=q.severity, value=value,
                      summary=Summary("flatline", {
                          "quantity": name, "device": key[2], "value": value,
                          "duration": round((ts - f.since) / 1000), "unit": _unit(name)})
                      if stuck else "")

    def on_status(self, site: str, gateway: str, state: str, now: int) -> Outcome:
        """A gateway's retained status (birth ``online`` / LWT ``offline``)."""
        prev = self.gateways.get((site, gateway))
        if prev is None or prev[0] != state:
            self.gateways[(site, gateway)] = (state, now)
        return self._gateway(site, gateway, now)

    def _gateway(self, site: str, gateway: str, now: int) -> Outcome:
        out = Outcome()
        state, since = self.gateways[(site, gateway)]
        grace = self.cfg.quality.gateway_offline_grace_s * 1000
        down = state == "offline" and now - since >= grace
        self._observe(out, "gateway_offline", {"site": site, "gateway": gateway}, down, now,
                      severity="critical", value=(now - since) / 1000,
                      summary=Summary("gateway_offline", {
                          "gateway": gateway, "duration": round((now - since) / 1000)})
                      if down else "")
        return out

    def tick(self, now: int) -> Outcome:
        """Wall-clock checks: meters gone silent, gateways still offline, repeats, silences."""
        out = Outcome()
        for site, gw in list(self.gateways):
            out.extend(self._gateway(site, gw, now))
        limit = self.cfg.quality.meter_offline_s * 1000
        for key, seen in self.last_seen.items():
            silent = now - seen > limit
            if not silent and key not in self._offline:
                continue  # the common case, kept cheap: 10 000 meters are scanned every second
            gw_state = self.gateways.get((key[0], key[1]), ("online", 0))[0]
            # a whole gateway down is one alert, not one per meter behind it
            silent = silent and gw_state != "offline"
            if silent:
                self._offline.add(key)
            self._observe(out, "meter_offline", self._labels(key), silent, now,
                          severity=self.cfg.quality.severity, value=(now - seen) / 1000,
                          summary=Summary("meter_offline", {
                              "device": key[2], "duration": round((now - seen) / 1000)})
                          if silent else "")
            if not silent:
                self._offline.discard(key)  # resolved (or back to inactive): nothing left to do
        out.extend(self.book.tick(now, repeat_ms=self.repeat_ms))
        return out

    # ------------------------------------------------------------------ scheduled results

    def on_quota(self, site: str, building: str, st: QuotaStatus, unit: str, now: int) -> Outcome:
        out = Outcome()
        labels = {"site": site, "building": building}
        figures = {"ytd": st.ytd, "allowance": st.allowance, "fraction": st.fraction,
                   "unit": unit}
        text = (Summary("quota", figures) if st.projected is None else
                Summary("quota_projected", {**figures, "projected": st.projected}))
        self._observe(out, "quota_exceeded", labels, st.state == "exceeded", now,
                      severity="critical", value=st.ytd, summary=text)
        self._observe(out, "quota_early_warning", labels,
                      st.state in ("early_warning", "exceeded"), now, severity="warning",
                      value=st.projected, summary=text)
        # quota_over_pro_rata is gone (it was an early warning at 110 %, unreachable at
        # defaults); one left firing in an older state database is resolved here
        self._observe(out, "quota_over_pro_rata", labels, False, now, severity="info",
                      value=st.ytd, summary=text)
        return out

    def on_budget(self, site: str, building: str, budget: str, st: BudgetStatus, unit: str,
                  now: int) -> Outcome:
        out = Outcome()
        labels = {"site": site, "building": building, "budget": budget}
        self._observe(out, "budget", labels, st.state != "ok", now,
                      severity="critical" if st.state == "exhausted" else "warning",
                      value=st.used_ratio,
                      summary=Summary("budget", {"budget": budget, "used": st.used,
                                                 "amount": st.budget, "ratio": st.used_ratio,
                                                 "unit": unit}))
        return out

    def on_boiler(self, site: str, building: str, boiler: str, efficiency: float | None,
                  limit: float, detail: str, now: int, *, indirect: float | None = None,
                  ceiling: Ref | None = None, qualified_h: float | None = None) -> Outcome:
        """The verdicts of a boiler's window: direct and indirect method against the limit.

        A figure above the physical ceiling (``energy.boiler.efficiency_ceiling``) gives no
        verdict (the efficiency alert keeps its state) but a ``boiler_implausible``
        data-quality alert naming the meters that disagree. No figure at all (too little
        running time) changes nothing either way. ``detail`` is the pass's English account
        of the window, shown only when the site file no longer names the boiler; with it,
        the summary says the window, ``qualified_h`` and where the limit comes from.
        """
        out = Outcome()
        labels = {"site": site, "building": building, "boiler": boiler}
        bo = self._boiler(site, building, boiler)
        if ceiling is None:
            ceiling = energy_boiler.efficiency_ceiling(bo.fuel if bo else "",
                                                       bo.max_efficiency_pct if bo else None)
        verdicts = energy_boiler.assess(direct=efficiency, indirect=indirect, limit=limit,
                                        ceiling=ceiling)
        if not verdicts:
            return out
        bad = [v for v in verdicts if v.implausible]
        self._observe(out, "boiler_implausible", labels, bool(bad), now,
                      severity=self.cfg.quality.severity,
                      value=max((v.efficiency for v in bad), default=None),
                      summary=Summary("joined", {"reasons": [
                          self._implausible_part(site, building, boiler, bo, v) for v in bad]})
                      if bad else "")
        for v in verdicts:
            if v.implausible:
                continue  # no verdict either way: the meters are wrong, not the boiler
            figures = {"boiler": boiler, "efficiency": v.efficiency, "limit": limit}
            if v.method == "direct":
                window = (_window_part(bo, qualified_h, indirect) if bo is not None
                          and qualified_h is not None else None)
                self._observe(out, "boiler_efficiency", labels, v.low, now, severity="warning",
                              value=v.efficiency, summary=Summary(
                                  "boiler_low" if v.low else "boiler_ok",
                                  {**figures, "detail": [window] if window else []})
                              if window or not detail else
                              f"boiler {boiler} efficiency {v.efficiency:.1f} % "
                              f"{'below' if v.low else 'meets'} the {limit:g} % limit ({detail})")
            else:
                self._observe(out, "boiler_efficiency_indirect", labels, v.low, now,
                              severity="warning", value=v.efficiency, summary=Summary(
                                  "boiler_indirect_low" if v.low else "boiler_indirect_ok",
                                  figures))
        return out

    def _boiler(self, site: str, building: str, boiler: str) -> Boiler | None:
        s = self.sites.get(site)
        b = next((b for b in s.buildings if b.id == building), None) if s else None
        return next((x for x in b.boilers if x.id == boiler), None) if b else None

    def _implausible_part(self, site: str, building: str, boiler: str, bo: Boiler | None,
                          v: energy_boiler.Verdict) -> dict[str, object]:
        """One method's implausible figure, naming what to check (``boiler_implausible``)."""
        head = {"boiler": boiler, "method": part(f"method_{v.method}"),
                "efficiency": v.efficiency, "ceiling": v.ceiling.value,
                "mark": v.ceiling.mark, "source": v.ceiling.source}
        if bo is None:
            return part("boiler_implausible", **head, check=[])
        if v.method == "indirect":
            inst = (f"{bo.instruments.gateway}/{bo.instruments.device}" if bo.instruments
                    else None)
            return part("boiler_implausible", **head, check=part(
                "check_flue", instruments=inst or "—", other_losses=bo.other_losses_pct))
        meters = {m.id: m for m in self.sites[site].building(building).meters}

        def where(mid: str) -> dict[str, object]:
            m = meters.get(mid)
            return (part("meter_where", meter=mid, gateway=m.gateway, device=m.device,
                         quantity=m.counter) if m else part("meter_id", meter=mid))

        return part("boiler_implausible", **head, check=part(
            "check_meters", fuel_meter=where(bo.fuel_meter),
            output_meter=where(bo.output_meter), ncv=bo.ncv_mj_per_unit, fuel=bo.fuel))

    def on_balance(self, site: str, building: str, topo: energy_balance.Topology,
                   days: list[energy_balance.Balance], now: int) -> Outcome:
        """Master-vs-submeter balance of the last completed site-days: one alert per building.

        Active while any judged day deviates; the value is the worst deviation (share of
        the main meter) and the summary names the days and the meters compared. No judged
        day (no data, idle days) changes nothing.
        """
        out = Outcome()
        if not days:
            return out
        bad = [d for d in days if d.state == "deviation"]
        tz = self.sites[site].timezone if site in self.sites else "UTC"
        worst = max(bad, key=lambda d: abs(d.deviation)) if bad else None
        summary = Summary("submeter_balance", {
            "building": building, "parts": list(topo.parts), "mains": list(topo.mains),
            "share": self.cfg.quality.balance_max_share, "bad": len(bad), "days": len(days),
            "tz": str(tz), "worst": [part("balance_day", day=d.day, parts_kwh=d.parts,
                                          main_kwh=d.main, deviation=d.deviation)
                                     for d in bad[-3:]]}) if bad else ""
        self._observe(out, "submeter_balance", {"site": site, "building": building}, bool(bad),
                      now, severity=self.cfg.quality.severity,
                      value=worst.deviation if worst else days[-1].deviation, summary=summary)
        return out

    def on_finding(self, key: DeviceKey, check: str, finding: Finding | None, now: int) -> Outcome:
        out = Outcome()
        if finding is None:  # the common case, every meter every pass: nothing to resolve?
            memo = (check, key, self.building_of.get(key))
            fp = self._quiet_fp.get(memo)
            if fp is None:
                if len(self._quiet_fp) > 1 << 18:
                    self._quiet_fp.clear()
                fp = self._quiet_fp[memo] = fingerprint(check, self._labels(key))
            if fp not in self.book.alerts:
                return out
        self._observe(out, check, self._labels(key), finding is not None, now,
                      severity=self.cfg.quality.severity,
                      value=finding.value if finding else None,
                      summary=self._finding_summary(finding) if finding else "")
        return out

    def _finding_summary(self, f: Finding) -> Summary | str:
        """A scheduled detector's finding as a summary; one with no template keeps its
        English text (``rules.quality`` words its findings in English)."""
        ev = f.evidence
        if f.check == "completeness" and "received" in ev and "expected" in ev:
            return Summary("completeness", {
                "received": int(ev["received"]), "expected": int(ev["expected"]),
                "ratio": f.value, "target": self.cfg.quality.completeness_target})
        return f.summary


def _replacements(m: Meter) -> tuple[accounting.Replacement, ...]:
    """The meter swaps of the site file, as ``energy.accounting`` (and the roll-ups) take them."""
    return tuple(accounting.Replacement(r.at, r.old_final, r.new_initial) for r in m.replacements)


def _unit(quantity: str) -> str:
    """The canonical unit of a quantity of the vocabulary ("" for one it does not know)."""
    q = quantities.QUANTITIES.get(quantity)
    return q.unit if q is not None else ""


def _window_part(bo: Boiler, qualified_h: float, indirect: float | None) -> dict[str, object]:
    """The direct method's window, as the boiler step judged it (``rules/boilers.py``)."""
    source = part("limit_site_file" if bo.limit_pct is not None else "limit_gb24500")
    figures = {"window_h": bo.window_h, "qualified_h": qualified_h,
               "min_load": bo.min_load_pct, "source": source}
    if indirect is None:
        return part("boiler_window", **figures)
    return part("boiler_window_indirect", **figures, indirect=indirect)
