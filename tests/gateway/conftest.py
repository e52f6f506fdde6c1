"""Fixtures for the gateway tests: simulated field buses on real pty pairs and sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_sim.rtu import LineServer


@pytest.fixture
def servers() -> Iterator[list[LineServer]]:
    """Start simulators with ``servers.append(x.start())``; all are stopped afterwards."""
    started: list[LineServer] = []
    yield started
    for s in started:
        s.stop()
