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
from datetime import datetime
from zoneinfo import ZoneInfo

from energy import accounting
from energy import balance as energy_balance
from energy import boiler as energy_boiler
from energy.quota import BudgetStatus, QuotaStatus
from energy.refdata import Ref
from energy.site import Boiler, Building, Meter, Site
from enmon import quantities, wire
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
                 summary: str = "") -> None:
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
            why.append(f"no broker connection for {mqtt_down_s:.0f} s")
        if db_bad:
            why.append(f"{failed_passes} scheduled passes in a row failed (InfluxDB)")
        out = Outcome()
        self._observe(out, "rules_degraded", {"service": "rules"}, mqtt_bad or db_bad, now,
                      severity="critical", value=float(failed_passes),
                      summary="; ".join(why) or "the rule engine hears and reads again")
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
                text = (f"{rule.quantity} of {s.device} is {value:.2f} (limit {rule.above:g})"
                        if active else
                        f"{rule.quantity} of {s.device} back to {value:.2f} "
                        f"(below {rule.clear_below:g})")
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
                      summary=f"{name} of {key[2]} went from {v0:g} to {value:g}" if back else "")
        if m is not None and m.max_rate_per_h is not None:
            # the consumption of the step, not the difference of indices: a swap to a new
            # meter with a higher index is not a jump
            rate = step.amount / ((ts - t0) / 3_600_000)
            jump = rate > m.max_rate_per_h
            self._observe(out, "implausible_jump", labels, jump, ts, severity=q.severity,
                          value=rate, summary=(f"{name} of {key[2]} rose {step.amount:g} in "
                                               f"{(ts - t0) / 60000:.1f} min ({rate:.1f}/h > "
                                               f"{m.max_rate_per_h:g}/h)") if jump else "")

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
                      summary=f"{name} of {key[2]} stuck at {value:g} for "
                              f"{(ts - f.since) / 1000:.0f} s" if stuck else "")

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
                      summary=f"gateway {gateway} offline since {(now - since) / 1000:.0f} s"
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
                          summary=f"no reading from {key[2]} for {(now - seen) / 1000:.0f} s"
                          if silent else "")
            if not silent:
                self._offline.discard(key)  # resolved (or back to inactive): nothing left to do
        out.extend(self.book.tick(now, repeat_ms=self.repeat_ms))
        return out

    # ------------------------------------------------------------------ scheduled results

    def on_quota(self, site: str, building: str, st: QuotaStatus, unit: str, now: int) -> Outcome:
        out = Outcome()
        labels = {"site": site, "building": building}
        proj = f", projected {st.projected:,.0f}" if st.projected is not None else ""
        text = (f"year-to-date {st.ytd:,.0f} {unit} of {st.allowance:,.0f} ({st.fraction:.0%} of "
                f"the year's use due){proj}")
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
                      summary=f"budget {budget}: {st.used:,.0f} of {st.budget:,.0f} {unit} used "
                              f"({st.used_ratio:.0%})")
        return out

    def on_boiler(self, site: str, building: str, boiler: str, efficiency: float | None,
                  limit: float, detail: str, now: int, *, indirect: float | None = None,
                  ceiling: Ref | None = None) -> Outcome:
        """The verdicts of a boiler's window: direct and indirect method against the limit.

        A figure above the physical ceiling (``energy.boiler.efficiency_ceiling``) gives no
        verdict (the efficiency alert keeps its state) but a ``boiler_implausible``
        data-quality alert naming the meters that disagree. No figure at all (too little
        running time) changes nothing either way.
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
                      summary="; ".join(self._implausible_text(site, building, boiler, bo, v)
                                        for v in bad))
        for v in verdicts:
            if v.implausible:
                continue  # no verdict either way: the meters are wrong, not the boiler
            what = "efficiency" if v.method == "direct" else "indirect (heat-loss) efficiency"
            text = (f"boiler {boiler} {what} {v.efficiency:.1f} % "
                    f"{'below' if v.low else 'meets'} the {limit:g} % limit")
            self._observe(out, "boiler_efficiency" if v.method == "direct"
                          else "boiler_efficiency_indirect", labels, v.low, now,
                          severity="warning", value=v.efficiency,
                          summary=f"{text} ({detail})" if v.method == "direct" else text)
        return out

    def _boiler(self, site: str, building: str, boiler: str) -> Boiler | None:
        s = self.sites.get(site)
        b = next((b for b in s.buildings if b.id == building), None) if s else None
        return next((x for x in b.boilers if x.id == boiler), None) if b else None

    def _implausible_text(self, site: str, building: str, boiler: str, bo: Boiler | None,
                          v: energy_boiler.Verdict) -> str:
        head = (f"boiler {boiler}: {v.method}-method efficiency {v.efficiency:.1f} % is above "
                f"the physical ceiling {v.ceiling.value:g} % [{v.ceiling.mark}] "
                f"({v.ceiling.source}); no efficiency verdict")
        if bo is None:
            return head
        if v.method == "indirect":
            inst = (f"{bo.instruments.gateway}/{bo.instruments.device}" if bo.instruments
                    else "none")
            return (f"{head}: check the flue gauges ({inst}: flue_temp_c, flue_o2_pct, "
                    f"combustion air) and other_losses_pct {bo.other_losses_pct:g}")
        meters = {m.id: m for m in self.sites[site].building(building).meters}

        def where(mid: str) -> str:
            m = meters.get(mid)
            return f"{mid} ({m.gateway}/{m.device} {m.counter})" if m else mid

        return (f"{head}: check the fuel meter {where(bo.fuel_meter)}, the output meter "
                f"{where(bo.output_meter)} and ncv_mj_per_unit {bo.ncv_mj_per_unit:g} "
                f"({bo.fuel})")

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
        tz = ZoneInfo(self.sites[site].timezone) if site in self.sites else ZoneInfo("UTC")
        share = self.cfg.quality.balance_max_share

        def day(d: energy_balance.Balance) -> str:
            return (f"{datetime.fromtimestamp(d.day / 1000, tz):%Y-%m-%d}: sub-items "
                    f"{d.parts:,.1f} vs main {d.main:,.1f} kWh ({d.deviation:+.1%})")

        worst = max(bad, key=lambda d: abs(d.deviation)) if bad else None
        summary = (f"building {building}: sub-item meters ({', '.join(topo.parts)}) and main "
                   f"meter ({', '.join(topo.mains)}) differ by more than {share:.0%} on "
                   f"{len(bad)} of {len(days)} days; " + "; ".join(day(d) for d in bad[-3:])
                   if bad else "")
        self._observe(out, "submeter_balance", {"site": site, "building": building}, bool(bad),
                      now, severity=self.cfg.quality.severity,
                      value=worst.deviation if worst else days[-1].deviation, summary=summary)
        return out

    def on_finding(self, key: DeviceKey, check: str, finding: Finding | None, now: int) -> Outcome:
        out = Outcome()
        self._observe(out, check, self._labels(key), finding is not None, now,
                      severity=self.cfg.quality.severity,
                      value=finding.value if finding else None,
                      summary=finding.summary if finding else "")
        return out


def _replacements(m: Meter) -> tuple[accounting.Replacement, ...]:
    """The meter swaps of the site file, as ``energy.accounting`` (and the roll-ups) take them."""
    return tuple(accounting.Replacement(r.at, r.old_final, r.new_initial) for r in m.replacements)
