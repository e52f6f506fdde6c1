"""Liveness from outside a process: is this network namespace connected to a port?

Used by ``enmon deploy health`` as the container health check of workers that serve no HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# --------------------------------------------------------------------------- health

_TCP_ESTABLISHED = "01"


def established_peer_ports(proc_net_tcp: str) -> set[int]:
    """Remote ports of ESTABLISHED sockets in a ``/proc/net/tcp`` or ``tcp6`` listing."""
    ports: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == _TCP_ESTABLISHED:
            ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def connected_to(ports: Iterable[int], *, proc: Path = Path("/proc/net")) -> dict[int, bool]:
    """Whether this network namespace holds an established connection to each port.

    In a container the namespace is the service's own, so "connected to 1883" means the
    worker holds its broker session: a liveness signal that needs no cooperation from it.
    """
    seen: set[int] = set()
    for name in ("tcp", "tcp6"):
        path = proc / name
        if path.exists():
            seen |= established_peer_ports(path.read_text())
    return {p: p in seen for p in ports}
