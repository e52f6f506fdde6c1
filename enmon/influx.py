"""Talking to InfluxDB: write line protocol, read with InfluxQL.

Two write paths, one read path:

- v1 (``api: v1``): ``POST /write?db=&rp=&precision=ms`` with optional user/password —
  InfluxDB 1.x (Debian ships 1.6, which speaks only this).
- v2 (``api: v2``): influxdb-client's async write API (token/org/bucket) — InfluxDB 2.x,
  3.x, and anything implementing ``/api/v2/write``.
- reads use InfluxQL over ``/query``, which 1.x, 2.x (with a DBRP mapping) and 3.x
  all answer, so rules and reports are portable.

Errors become :class:`SinkError`; ``retryable`` says whether trying again can help
(server down, 5xx, timeouts) or not (bad data, 4xx), which is what decides between
"keep the message unacknowledged and back off" and "store it in ``rejected``".
"""

from __future__ import annotations

import base64
import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import aiohttp
import orjson
from pydantic import Field

from enmon.config import StrictModel
from enmon.errors import SinkError


class InfluxConfig(StrictModel):
    """Where readings go. Secrets are named by env var, never written in the file."""

    api: Literal["v1", "v2"] = "v1"
    url: str = Field(
        default="http://127.0.0.1:8086", json_schema_extra={"fix": "e.g. http://127.0.0.1:8086"}
    )
    database: str = "enmon"
    retention_policy: str | None = None
    username: str | None = None
    password_env: str | None = None
    org: str | None = None
    bucket: str | None = None
    token_env: str | None = None
    timeout_s: float = 10.0

    def secret(self, env: str | None) -> str | None:
        import os

        return os.environ.get(env) if env else None


class Writer(Protocol):
    async def write(self, lines: list[str]) -> None: ...
    async def close(self) -> None: ...


class _Http:
    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {}
            token = self.cfg.secret(self.cfg.token_env)
            if self.cfg.api == "v2" and token:
                headers["Authorization"] = f"Token {token}"
            elif self.cfg.username:
                # Basic auth, not u=/p= parameters: InfluxDB 1.x reads those only from the
                # URL (not a POST form), and a password in a URL ends up in access logs
                pw = self.cfg.secret(self.cfg.password_env) or ""
                basic = base64.b64encode(f"{self.cfg.username}:{pw}".encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)
            )
        return self._session

    def auth_params(self) -> dict[str, str]:
        """Kept for callers that build their own requests; credentials travel as Basic auth."""
        return {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class InfluxV1Writer(_Http):
    """``/write`` of InfluxDB 1.x."""

    async def write(self, lines: list[str]) -> None:
        if not lines:
            return
        params = {"db": self.cfg.database, "precision": "ms", **self.auth_params()}
        if self.cfg.retention_policy:
            params["rp"] = self.cfg.retention_policy
        try:
            body = "\n".join(lines).encode()
        except UnicodeEncodeError as exc:  # a line that can never be stored: the data's fault
            raise SinkError(f"influx write: line is not valid UTF-8: {exc.reason}",
                            retryable=False) from None
        try:
            async with self.session().post(f"{self.cfg.url}/write", params=params, data=body) as r:
                if r.status == 204:
                    return
                text = (await r.text())[:300]
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SinkError(
                f"influx write failed: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        # 4xx is the data's fault (except auth/limits, which an operator can fix without data loss)
        retryable = r.status >= 500 or r.status in (401, 403, 404, 429)
        raise SinkError(f"influx write HTTP {r.status}: {text}", retryable=retryable)


class InfluxV2Writer:
    """influxdb-client's async write API (token/org/bucket)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        if not (cfg.org and cfg.bucket):
            raise SinkError("influx api v2 needs org and bucket", retryable=False)
        self.cfg = cfg
        self._client = InfluxDBClientAsync(
            url=cfg.url,
            token=cfg.secret(cfg.token_env) or "",
            org=cfg.org,
            timeout=int(cfg.timeout_s * 1000),
        )
        self._api = self._client.write_api()

    async def write(self, lines: list[str]) -> None:
        if not lines:
            return
        from influxdb_client.client.write_api import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            await self._api.write(
                bucket=str(self.cfg.bucket),
                org=str(self.cfg.org),
                record=lines,
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # a str constant
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            raise SinkError(
                f"influx v2 write HTTP {status}: {str(exc.body)[:300]}",
                retryable=status >= 500 or status in (401, 403, 404, 429),
            ) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SinkError(
                f"influx v2 write failed: {type(exc).__name__}: {exc}", retryable=True
            ) from exc

    async def close(self) -> None:
        await self._client.close()


def make_writer(cfg: InfluxConfig) -> Writer:
    return InfluxV2Writer(cfg) if cfg.api == "v2" else InfluxV1Writer(cfg)


def quote(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ident(name: str) -> str:
    """An InfluxQL identifier (field or tag name)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


PER_REQUEST = 200  # statements per /query request in query_many


@contextmanager
def bulk() -> Iterator[None]:
    """No cyclic garbage collection while a large result is decoded or built.

    Tens of thousands of fresh lists and dicts trigger collection after collection, and each
    older-generation pass walks the whole heap of the process (a server's): on a year of one
    meter's readings that doubled the build. What is built here holds no cycles, so nothing
    is left uncollected; the collector runs again as soon as the block ends. Only for code
    that does not await (nothing else runs meanwhile).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def flat_rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Series as flat dicts, one per point, with the series' tags merged in."""
    out: list[dict[str, Any]] = []
    for s in series:
        tags = s.get("tags")
        cols = s["columns"]
        if tags:
            out += [{**dict(zip(cols, values, strict=True)), **tags} for values in s["values"]]
        else:
            out += [dict(zip(cols, values, strict=True)) for values in s["values"]]
    return out


def series_columns(series: list[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The points of untagged series (one device's readings, the chunks of one range) as
    columns: ``names`` → one list each, ``None`` where a point has no value (or the series
    no such column), in the order of the series.

    A year of 15-minute readings is 35,040 points: one dict per point costs more than the
    database took to send them; the transpose here runs in C (``zip(*values)``).
    """
    out: dict[str, list[Any]] = {n: [] for n in names}
    for s in series:
        values = s.get("values") or []
        if not values:
            continue
        cols = dict(zip(s["columns"], zip(*values, strict=True), strict=True))
        nones = None
        for n in names:
            col = cols.get(n)
            if col is None:
                nones = nones or [None] * len(values)
                out[n] += nones
            else:
                out[n] += col
    return out


class InfluxQL(_Http):
    """Read with InfluxQL over ``/query`` (1.x, 2.x with DBRP, 3.x)."""

    async def _results(self, q: str, epoch: str) -> list[dict[str, Any]]:
        """POST ``q`` (one or more ``;``-separated statements); the per-statement results."""
        params = {"db": self.cfg.database, "q": q, "epoch": epoch, **self.auth_params()}
        if self.cfg.retention_policy:
            params["rp"] = self.cfg.retention_policy
        try:
            async with self.session().post(f"{self.cfg.url}/query", data=params) as r:
                # orjson straight from the bytes: no text copy, ~3x the stdlib's speed on a
                # year of one meter's readings
                raw = await r.read()
                with bulk():
                    body = orjson.loads(raw) if raw.strip() else None
                status = r.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise SinkError(f"influx query failed: {type(exc).__name__}: {exc}") from exc
        if status != 200 or not isinstance(body, dict):
            raise SinkError(
                f"influx query HTTP {status}: {str(body)[:300]}", retryable=status >= 500
            )
        results: list[dict[str, Any]] = body.get("results", [])
        for res in results:
            if "error" in res:
                raise SinkError(f"influx query error: {res['error']}", retryable=False)
        return results

    async def query(self, q: str, *, epoch: str = "ms") -> list[dict[str, Any]]:
        """Run one statement; return its series as ``{"name", "tags", "columns", "values"}``."""
        results = await self._results(q, epoch)
        return list(results[0].get("series", [])) if results else []

    async def query_many(self, statements: list[str], *, epoch: str = "ms",
                         per_request: int = PER_REQUEST) -> list[list[dict[str, Any]]]:
        """Run many statements, ``per_request`` to a request; one series list per statement.

        A pass that must look at 5,000 meters' own time ranges makes 25 requests, not 5,000.
        """
        out: list[list[dict[str, Any]]] = []
        for i in range(0, len(statements), per_request):
            chunk = statements[i:i + per_request]
            results = await self._results(";".join(chunk), epoch)
            if len(results) != len(chunk):
                raise SinkError(f"influx query: {len(chunk)} statements, "
                                f"{len(results)} results", retryable=False)
            out += [list(res.get("series", [])) for res in results]
        return out

    async def rows(self, q: str) -> list[dict[str, Any]]:
        """The query's points as flat dicts (tags merged in)."""
        return flat_rows(await self.query(q))

    async def create_database(self) -> None:
        await self.query(f'CREATE DATABASE "{self.cfg.database}"')
