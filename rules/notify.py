"""Notifiers: deliver an alert to the people who must act on it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

log = logging.getLogger("enmon.rules.notify")


async def post_webhook(
    session: aiohttp.ClientSession, url: str, alert: dict[str, Any], *, attempts: int = 5
) -> bool:
    """POST the alert as JSON; retry with backoff; True once the receiver said 2xx."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            async with session.post(url, json=alert) as r:
                if 200 <= r.status < 300:
                    return True
                log.warning("event=webhook_refused url_status=%d attempt=%d", r.status, attempt)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("event=webhook_failed attempt=%d error=%s", attempt, type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10)
    return False
