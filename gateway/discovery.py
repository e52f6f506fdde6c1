"""DL/T 645 address discovery with several meters on one bus: the wildcard search.

The read-address broadcast (2007 C = 13H) only works with one meter on the line: two
meters answer at once and their frames collide. The wildcard address does better
("缩位寻址": the low address bytes are given, the high ones are ``AA`` and match any
meter), so the bus can be searched like a tree, one address byte (two BCD digits) per
level, lowest byte first:

* ask ``AA AA AA AA AA AA`` for a data identifier every meter has (total forward active
  energy: 00010000, or 9010 in 1997);
* no answer within the timeout → nobody below this prefix; a valid answer → exactly one
  meter, whose full address the answer carries; a corrupt answer (checksum error,
  garbage, an answer that stops) → a collision: several meters, so try the 100 values of
  the next byte under this prefix.

A bus of ``n`` meters whose addresses differ in the lowest byte costs 1 + 100 requests;
each further shared byte costs 100 more for the meters sharing it. Empty requests cost the
timeout, so the search is a commissioning tool (``enmon gateway scan --protocol dlt645``),
not something the poller does. The strategy is pure (:func:`children`); the I/O is
:func:`discover`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Literal

from gateway import dlt645 as d
from gateway.transport import Link, LinkGarbled, LinkTimeout

log = logging.getLogger("enmon.gateway.discovery")

Heard = Literal["silence", "one", "collision"]

#: an identifier every meter of the edition answers (total forward active energy)
PROBE_DI: dict[str, str] = {"2007": "00010000", "1997": "9010"}


def pattern(known_low: list[int]) -> str:
    """The address pattern for the known low bytes (BCD 0..99, lowest first), rest ``AA``."""
    pairs = ["AA"] * (6 - len(known_low)) + [f"{b:02d}" for b in reversed(known_low)]
    return "".join(pairs)


def children(known_low: list[int]) -> Iterator[list[int]]:
    """The prefixes one byte deeper: the 100 BCD values of the next address byte."""
    if len(known_low) >= 6:
        return
    for v in range(100):
        yield [*known_low, v]


async def ask(link: Link, address: str, version: d.Version, timeout: float) -> tuple[Heard, str]:
    """Send one wildcard read; what came back and, for one meter, its address."""
    di = PROBE_DI[version]
    try:
        raw = await link.transact(d.read_request(address, di, version), d.frame_length, timeout)
    except LinkTimeout:
        return "silence", ""
    except LinkGarbled:  # bytes, then silence before a whole frame: answers on top of each other
        return "collision", ""
    try:
        frame, _ = d.find_frame(raw)
    except d.Dlt645FrameError:
        return "collision", ""
    if frame is None or not d.address_matches(address, frame.address) or "AA" in frame.address:
        return "collision", ""
    return "one", frame.address


async def discover(link: Link, *, version: d.Version = "2007", timeout: float = 0.3,
                   inter_frame_s: float = 0.02, max_requests: int = 2000) -> list[str]:
    """Every meter address on the bus, by the wildcard tree search (module docstring).

    Args:
        timeout: the wait for an answer; it is also the price of every empty request.
        inter_frame_s: the silence between requests (meters need a few ms to turn around).
        max_requests: a bound, so a line full of noise cannot search for hours.
    """
    found: list[str] = []
    requests = 0
    stack: list[list[int]] = [[]]
    while stack:
        known = stack.pop()
        if requests >= max_requests:
            log.warning("event=discovery_gave_up requests=%d found=%d", requests, len(found))
            break
        heard, address = await ask(link, pattern(known), version, timeout)
        requests += 1
        await asyncio.sleep(inter_frame_s)
        if heard == "one":
            log.info("event=meter_found address=%s pattern=%s", address, pattern(known))
            found.append(address)
        elif heard == "collision":
            if len(known) == 6:  # a full address that still collides: two meters, one address
                log.warning("event=address_conflict address=%s", pattern(known))
                continue
            log.info("event=collision pattern=%s", pattern(known))
            stack.extend(reversed(list(children(known))))
    log.info("event=discovery_done found=%d requests=%d", len(found), requests)
    return sorted(found)
