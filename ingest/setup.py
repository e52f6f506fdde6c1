"""``enmon influx init``: create where readings go, with the retention the operator chose.

v1 (InfluxDB 1.x): ``CREATE DATABASE`` and a default retention policy (created or
altered). v2 (InfluxDB 2.x/3.x): the bucket with an expiry rule, plus the DBRP
mapping that lets InfluxQL ``/query`` — which rules and inspector tools use — find
the bucket. Every step is idempotent and reported as one line.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from enmon.errors import ConfigError, SinkError
from enmon.influx import InfluxConfig, InfluxQL

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_retention(text: str) -> int:
    """``3650d`` → seconds; ``0``/``inf`` → 0 (forever)."""
    t = text.strip().lower()
    if t in ("0", "inf", "infinite", "forever"):
        return 0
    m = _DURATION.match(t)
    if not m:
        raise ConfigError("--retention", "retention", f"{text!r} is not a duration",
                          "write e.g. 3650d, 52w, 720h, or 0 for forever")
    seconds = int(m.group(1)) * _SECONDS[m.group(2)]
    if seconds < 3600:
        raise ConfigError("--retention", "retention", f"{text!r} is shorter than 1h",
                          "InfluxDB's shortest retention is 1h")
    return seconds


def _influxql_duration(seconds: int) -> str:
    return "INF" if seconds == 0 else f"{seconds}s"


async def init_influx(cfg: InfluxConfig, *, retention: str = "0") -> list[str]:
    seconds = parse_retention(retention)
    if cfg.api == "v1":
        return await _init_v1(cfg, seconds)
    return await _init_v2(cfg, seconds)


async def _init_v1(cfg: InfluxConfig, seconds: int) -> list[str]:
    q = InfluxQL(cfg)
    out: list[str] = []
    db = cfg.database.replace('"', '\\"')
    try:
        await q.query(f'CREATE DATABASE "{db}"')
        out.append(f"database {cfg.database}: ok")
        rp = cfg.retention_policy or "autogen"
        existing = {row.get("name"): row for row in await q.rows(
            f'SHOW RETENTION POLICIES ON "{db}"')}
        verb = "ALTER" if rp in existing else "CREATE"
        extra = "" if verb == "ALTER" else " REPLICATION 1"
        await q.query(f'{verb} RETENTION POLICY "{rp}" ON "{db}" '
                      f"DURATION {_influxql_duration(seconds)}{extra} DEFAULT")
        out.append(f"retention policy {rp}: {'forever' if seconds == 0 else f'{seconds}s'}"
                   f" ({verb.lower()}d, default)")
    finally:
        await q.close()
    return out


async def _init_v2(cfg: InfluxConfig, seconds: int) -> list[str]:
    if not (cfg.org and cfg.bucket):
        raise ConfigError("ingest config", "influx.org/bucket", "v2 needs org and bucket",
                          "set influx.org and influx.bucket")
    token = cfg.secret(cfg.token_env)
    if not token:
        raise ConfigError("ingest config", "influx.token_env",
                          f"environment variable {cfg.token_env!r} is not set",
                          "export the token in that variable (never in the file)")
    headers = {"Authorization": f"Token {token}"}
    out: list[str] = []
    async with aiohttp.ClientSession(headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=cfg.timeout_s)) as http:

        async def call(method: str, path: str, **kw: Any) -> Any:
            async with http.request(method, f"{cfg.url}{path}", **kw) as r:
                body = await r.json(content_type=None) if r.content_length != 0 else {}
                if r.status >= 300:
                    raise SinkError(f"{method} {path}: HTTP {r.status}: {str(body)[:300]}",
                                    retryable=False)
                return body

        orgs = (await call("GET", "/api/v2/orgs", params={"org": cfg.org})).get("orgs", [])
        if not orgs:
            raise SinkError(f"organisation {cfg.org!r} not found", retryable=False)
        org_id = orgs[0]["id"]
        rules = [{"type": "expire", "everySeconds": seconds}] if seconds else []
        found = (await call("GET", "/api/v2/buckets",
                            params={"name": cfg.bucket, "orgID": org_id})).get("buckets", [])
        if found:
            bucket_id = found[0]["id"]
            await call("PATCH", f"/api/v2/buckets/{bucket_id}", json={"retentionRules": rules})
            out.append(f"bucket {cfg.bucket}: exists, retention set")
        else:
            bucket_id = (await call("POST", "/api/v2/buckets", json={
                "name": cfg.bucket, "orgID": org_id, "retentionRules": rules}))["id"]
            out.append(f"bucket {cfg.bucket}: created")
        dbrps = (await call("GET", "/api/v2/dbrps",
                            params={"orgID": org_id, "db": cfg.database})).get("content", [])
        if any(d.get("bucketID") == bucket_id for d in dbrps):
            out.append(f"dbrp {cfg.database}/autogen -> {cfg.bucket}: exists")
        else:
            await call("POST", "/api/v2/dbrps", json={
                "bucketID": bucket_id, "orgID": org_id, "database": cfg.database,
                "retention_policy": "autogen", "default": True})
            out.append(f"dbrp {cfg.database}/autogen -> {cfg.bucket}: created")
    return out
