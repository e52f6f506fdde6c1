"""The rules process: follow telemetry, evaluate thresholds, record and notify alerts."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import aiomqtt

from enmon import wire
from enmon.errors import WireError
from ingest.lineproto import line
from ingest.storage import make_writer
from rules.config import RulesConfig, ThresholdRule
from rules.notify import post_webhook
from rules.threshold import Threshold, Tracker, Transition

log = logging.getLogger("enmon.rules")


class Evaluator:
    """Pure part of the service: batches in, alerts out."""

    def __init__(self, rules: list[ThresholdRule]) -> None:
        self.rules = rules
        self.trackers: dict[tuple[str, str, str, str], Tracker] = {}

    def feed(self, batch: wire.Batch) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        for rule in self.rules:
            for s in sorted(batch.samples, key=lambda s: s.ts):
                if rule.devices and s.device not in rule.devices:
                    continue
                value = s.values.get(rule.quantity)
                if value is None:
                    continue
                key = (rule.name, batch.site, batch.gateway, s.device)
                tr = self.trackers.get(key)
                if tr is None:
                    tr = self.trackers[key] = Tracker(
                        Threshold(rule.above, rule.clear_below, rule.for_s)
                    )
                t = tr.feed(s.ts, value)
                if t is not None:
                    alerts.append(self._alert(rule, batch, s.device, t))
        return alerts

    @staticmethod
    def _alert(
        rule: ThresholdRule, batch: wire.Batch, device: str, t: Transition
    ) -> dict[str, Any]:
        meta = batch.devices[device]
        return {
            "rule": rule.name,
            "state": t.kind,
            "severity": rule.severity,
            "site": batch.site,
            "gateway": batch.gateway,
            "device": device,
            "building": meta.building,
            "quantity": rule.quantity,
            "value": t.value,
            "above": rule.above,
            "clear_below": rule.clear_below,
            "for_s": rule.for_s,
            "since_ms": t.since_ms,
            "ts": t.ts_ms,
            "fingerprint": f"{rule.name}/{batch.site}/{batch.gateway}/{device}",
            "summary": (
                f"{rule.quantity} of {device} is {t.value:.2f} (limit {rule.above})"
                if t.kind == "firing"
                else f"{rule.quantity} of {device} back to {t.value:.2f} (below {rule.clear_below})"
            ),
        }


def alert_line(a: dict[str, Any]) -> str:
    tags = {
        "site": a["site"],
        "rule": a["rule"],
        "device": a["device"],
        "severity": a["severity"],
        "building": a["building"],
    }
    fields = {
        "state": a["state"],
        "value": float(a["value"]),
        "summary": a["summary"],
        "fingerprint": a["fingerprint"],
        "since_ms": int(a["since_ms"]),
    }
    return line("alert", tags, fields, int(a["ts"]))


async def run(cfg: RulesConfig, stop: asyncio.Event) -> None:
    evaluator = Evaluator(cfg.thresholds)
    writer = make_writer(cfg.influx)
    m = cfg.mqtt
    client = aiomqtt.Client(
        m.host,
        m.port,
        identifier=m.client_id or "enmon-rules",
        username=m.username,
        password=m.password(),
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, client:
        await client.subscribe(wire.TELEMETRY_FILTER, qos=1)
        log.info("event=rules_started thresholds=%d", len(cfg.thresholds))
        stop_task = asyncio.create_task(stop.wait())
        messages = aiter(client.messages)
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(messages))
            done, _ = await asyncio.wait({nxt, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()
                break
            msg = nxt.result()
            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
            try:
                batch = wire.parse_batch(payload, topic=str(msg.topic)).batch
            except WireError:
                continue  # ingest records rejects; rules only act on valid data
            for a in evaluator.feed(batch):
                log.info(
                    "event=alert rule=%s state=%s device=%s value=%.3f",
                    a["rule"],
                    a["state"],
                    a["device"],
                    a["value"],
                )
                await writer.write([alert_line(a)])
                await client.publish(wire.alert_topic(a["site"], a["rule"]), wire.dumps(a), qos=1)
                for hook in cfg.webhooks:
                    await post_webhook(http, hook.url, a)
        stop_task.cancel()
    await writer.close()
    log.info("event=rules_stopped at=%d", int(time.time()))
