"""The ingest worker as configured by an ``ingest.yaml`` (what ``enmon ingest run`` runs).

Every message ends in exactly one of two places: its points in ``meter``, or a
``rejected`` point saying why (plus a ``rejected`` point for each value or sample
dropped from an otherwise good batch) — and it is acknowledged to the broker only
once that is durably written. The machinery is in ``ingest.pipeline`` (logic),
``ingest.mqtt`` (manual acks) and ``ingest.worker`` (wiring).
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable

from ingest.config import IngestConfig
from ingest.metrics import Stats
from ingest.mqtt import MqttSettings
from ingest.worker import run_worker


def default_client_id(group: str) -> str:
    """Stable across restarts (the persistent session survives), distinct across hosts and
    containers (``docker compose --scale ingest=N`` gives each its own hostname). Two
    workers on one host still need ``--client-id`` each."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "host"
    return f"enmon-ingest-{group}-{host}"


def mqtt_settings(cfg: IngestConfig, client_id: str | None = None) -> MqttSettings:
    m = cfg.mqtt
    return MqttSettings(
        host=m.host, port=m.port,
        client_id=client_id or m.client_id or default_client_id(cfg.group),
        session_expiry=m.session_expiry_s, receive_maximum=cfg.batch.receive_maximum,
        username=m.username, password=m.password(),
        tls=m.ca_file is not None or m.cert_file is not None,
        ca_file=str(m.ca_file) if m.ca_file else None,
        cert_file=str(m.cert_file) if m.cert_file else None,
        key_file=str(m.key_file) if m.key_file else None,
    )


async def run(cfg: IngestConfig, stop: asyncio.Event, *, client_id: str | None = None,
              stats: Stats | None = None, on_ready: Callable[[], None] | None = None) -> None:
    """Run one worker until ``stop`` is set."""
    await run_worker(mqtt=mqtt_settings(cfg, client_id), influx=cfg.influx, group=cfg.group,
                     stop=stop, batch=cfg.batch, timestamps=cfg.timestamps, metrics=cfg.metrics,
                     stats=stats, on_ready=on_ready)
