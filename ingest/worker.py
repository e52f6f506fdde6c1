"""Run one ingest worker: the MQTT session, the pipeline, the ``/metrics`` endpoint.

This is the edge where configuration meets I/O; the logic is in ``pipeline``.
Several workers with the same ``group`` and *different* client ids share the
stream; each client id is a persistent session that holds that worker's unacked
messages while it is away, so restart a dead worker with the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from enmon import wire
from enmon.influx import InfluxConfig, InfluxQL, make_writer
from ingest.command_results import RESULT_FILTER
from ingest.metrics import Stats, render_prometheus
from ingest.mqtt import AckingSubscriber, MqttSettings, shared
from ingest.options import (
    BatchConfig,
    MetricsConfig,
    TimestampConfig,
    pipeline_settings,
    time_limits,
)
from ingest.pipeline import Pipeline

log = logging.getLogger("enmon.ingest")


@contextlib.asynccontextmanager
async def metrics_server(stats: Stats, *, worker: str, host: str, port: int
                         ) -> AsyncIterator[int]:
    """Serve ``/metrics``; yields the bound port (``port=0`` in the config means off)."""

    async def handle(_req: web.Request) -> web.Response:
        return web.Response(text=render_prometheus(stats, worker=worker),
                            content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("event=metrics_listening host=%s port=%s", host, bound)
    try:
        yield int(bound)
    finally:
        await runner.cleanup()


async def run_worker(*, mqtt: MqttSettings, influx: InfluxConfig, group: str, stop: asyncio.Event,
                     batch: BatchConfig | None = None, timestamps: TimestampConfig | None = None,
                     metrics: MetricsConfig | None = None, stats: Stats | None = None,
                     on_ready: Callable[[], None] | None = None) -> None:
    """Run until ``stop`` is set. Unacked work is left to the broker on the way out.

    ``on_ready`` is called once the session is subscribed (systemd READY=1, tests):
    from then on nothing published to the group can miss this worker.
    """
    batch = batch or BatchConfig()
    metrics = metrics or MetricsConfig()
    stats = stats or Stats()
    worker = mqtt.client_id
    mqtt = dataclasses.replace(mqtt, receive_maximum=batch.receive_maximum)
    writer = make_writer(influx)
    query = InfluxQL(influx)
    # command results ride the same session and group: acked only once stored, like telemetry
    topics = [shared(wire.TELEMETRY_FILTER, group), shared(RESULT_FILTER, group)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            sub = await stack.enter_async_context(AckingSubscriber(mqtt, topics=topics))
            if metrics.port:
                await stack.enter_async_context(
                    metrics_server(stats, worker=worker, host=metrics.host, port=metrics.port))
            log.info("event=ingest_start worker=%s group=%s broker=%s:%d influx=%s api=%s",
                     worker, group, mqtt.host, mqtt.port, influx.url, influx.api)
            pipeline = Pipeline(sub=sub, writer=writer, worker=worker,
                                settings=pipeline_settings(batch, metrics),
                                limits=time_limits(timestamps or TimestampConfig()),
                                query=query, stats=stats)
            ready_task = asyncio.create_task(_when_ready(sub, on_ready)) if on_ready else None
            try:
                await pipeline.run(stop)
            finally:
                if ready_task is not None:
                    ready_task.cancel()
    finally:
        await writer.close()
        await query.close()
        log.info("event=ingest_stop worker=%s messages=%d acked=%d", worker, stats.messages,
                 stats.acked)


async def _when_ready(sub: AckingSubscriber, on_ready: Callable[[], None]) -> None:
    await sub.wait_ready(timeout=math.inf)
    on_ready()
