"""What every step of a scheduled pass shares: its statistics, reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from enmon.influx import PER_REQUEST, InfluxQL, Writer, flat_rows
from rules.engine import Engine

HOUR = 3_600_000
# points per write request: InfluxDB's guidance is 5,000-10,000; a 1,000-meter site's
# hours, days and months of a pass (~6,000) then go in one
WRITE_BATCH = 10_000


@dataclass
class PassStats:
    site: str
    queries: int = 0
    points_read: int = 0
    points_written: int = 0
    seconds: float = 0.0
    restored: int = 0  # corrections written back over a gateway's resend (rules.corrections)
    per_step: dict[str, float] = field(default_factory=dict)


class PassBase:
    """The InfluxDB reads and writes a pass step makes, counted in its :class:`PassStats`."""

    engine: Engine
    query: InfluxQL
    writer: Writer

    async def _rows(self, q: str, st: PassStats) -> list[dict[str, Any]]:
        st.queries += 1
        out = flat_rows(await self.query.query(q))
        st.points_read += len(out)
        return out

    async def _series(self, statements: list[str], st: PassStats
                      ) -> list[list[dict[str, Any]]]:
        """Many statements in few requests; each statement's series."""
        if not statements:
            return []
        st.queries += -(-len(statements) // PER_REQUEST)
        return await self.query.query_many(statements)

    async def _many(self, statements: list[str], st: PassStats) -> list[list[dict[str, Any]]]:
        """Many statements in few requests; each statement's points as flat rows."""
        out = [flat_rows(series) for series in await self._series(statements, st)]
        st.points_read += sum(len(rows) for rows in out)
        return out

    async def _write(self, lines: list[str], st: PassStats) -> None:
        for i in range(0, len(lines), WRITE_BATCH):
            await self.writer.write(lines[i:i + WRITE_BATCH])
        st.points_written += len(lines)
