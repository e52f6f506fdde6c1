"""The ingest worker: MQTT telemetry in, validated points out to InfluxDB.

Every message ends in exactly one of two places: its points in ``meter``, or a
``rejected`` point saying why (plus a ``rejected`` point for each value or sample
dropped from an otherwise good batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from enmon import wire
from enmon.errors import SinkError, WireError
from ingest.config import IngestConfig
from ingest.lineproto import batch_lines, dropped_lines, rejected_line
from ingest.storage import Writer, make_writer

log = logging.getLogger("enmon.ingest")


@dataclass
class Counters:
    messages: int = 0
    points: int = 0
    rejected: int = 0
    dropped_values: int = 0
    write_retries: int = 0


def process(payload: bytes, topic: str, now_ms: int, counters: Counters) -> list[str]:
    """Turn one MQTT message into the lines to write (pure)."""
    counters.messages += 1
    try:
        parsed = wire.parse_batch(payload, topic=topic)
    except WireError as exc:
        counters.rejected += 1
        try:
            site, gateway, _ = wire.parse_topic(topic)
        except WireError:
            site = gateway = ""
        log.warning(
            "event=rejected reason=%s topic=%s detail=%s", exc.reason, topic[:200], exc.detail[:200]
        )
        return [
            rejected_line(
                reason=exc.reason,
                detail=exc.detail,
                payload=payload,
                topic=topic,
                site=site,
                gateway=gateway,
                ts_ms=now_ms,
            )
        ]
    b = parsed.batch
    lines = batch_lines(b)
    counters.points += len(lines)
    if parsed.dropped:
        counters.dropped_values += len(parsed.dropped)
        log.warning(
            "event=dropped_values site=%s gateway=%s seq=%d count=%d first=%s",
            b.site,
            b.gateway,
            b.seq,
            len(parsed.dropped),
            parsed.dropped[0].reason,
        )
        lines += dropped_lines(
            parsed.dropped,
            payload=payload,
            topic=topic,
            site=b.site,
            gateway=b.gateway,
            ts_ms=now_ms,
        )
    return lines


async def write_with_retry(
    writer: Writer, lines: list[str], counters: Counters, stop: asyncio.Event
) -> None:
    """Retry retryable failures with capped exponential backoff until stopped."""
    delay = 0.2
    while True:
        try:
            await writer.write(lines)
            return
        except SinkError as exc:
            if not exc.retryable or stop.is_set():
                raise
            counters.write_retries += 1
            log.warning("event=write_retry delay_s=%.1f error=%s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def run(cfg: IngestConfig, stop: asyncio.Event, counters: Counters | None = None) -> None:
    counters = counters or Counters()
    writer = make_writer(cfg.influx)
    m = cfg.mqtt
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = m.session_expiry_s
    client = aiomqtt.Client(
        m.host,
        m.port,
        identifier=m.client_id or f"enmon-ingest-{cfg.group}",
        username=m.username,
        password=m.password(),
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=props,
    )
    topic = f"$share/{cfg.group}/{wire.TELEMETRY_FILTER}"
    try:
        async with client:
            await client.subscribe(topic, qos=1)
            log.info("event=subscribed topic=%s", topic)
            stop_task = asyncio.create_task(stop.wait())
            messages = aiter(client.messages)
            while not stop.is_set():
                nxt = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait({nxt, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    break
                msg = nxt.result()
                payload = (
                    msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                )
                lines = process(payload, str(msg.topic), int(time.time() * 1000), counters)
                await write_with_retry(writer, lines, counters, stop)
            stop_task.cancel()
    finally:
        await writer.close()
