"""The inspector HTTP API (FastAPI, OpenAPI at ``/openapi.json``) and the web console.

Everything under ``/api/v1`` needs a bearer token (see :mod:`inspector.auth`):
inspectors read; facility managers read and acknowledge alerts. ``/healthz`` and the
console's static page are open: they hold no data (the console asks for a token
and sends it with every call).

Inputs are checked before any query is built: ids follow the wire contract's id
pattern, times parse or the request gets 422, ranges are bounded. A database that
is down answers 503 (retry later), never a stack trace.
"""

# no ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at
# runtime, and they refer to dependencies defined inside create_app
import datetime as dt
import io
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr

from enmon.errors import SinkError
from inspector import alerts as al
from inspector.auth import Principal, TokenBook
from inspector.config import InspectorConfig
from inspector.energyview import viewable_types
from inspector.i18n import LANGS, N_, Lang, from_accept_language, gettext_for, normalize
from inspector.store import Store

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
log = logging.getLogger("inspector.api")
STATIC = Path(__file__).parent / "static"
ID = r"^[A-Za-z0-9_-]{1,64}$"
SiteId = Annotated[str, PathParam(pattern=ID, description="site id")]
DeviceId = Annotated[str, PathParam(pattern=ID, description="device name")]
DAY_MS = 86_400_000
# a manual reading's time: 2000-01-01 to 2100-12-31 (UTC), as parse_time allows for ISO text
ENTRY_TS = (946_684_800_000, 4_133_980_800_000)


class WhoAmI(BaseModel):
    name: str
    role: str
    may_acknowledge: bool
    may_enter: bool = Field(default=False, description="may enter manual readings and "
                            "corrections (POST …/entries)")
    may_control: bool = Field(default=False, description="may send device commands "
                              "(POST …/gateways/{gateway}/commands): operators only")


class SiteOut(BaseModel):
    site: str
    name: str
    buildings: int
    meters: int
    has_site_file: bool


class MeterOut(BaseModel):
    site: str
    gateway: str
    device: str
    building: str
    category: str
    energy_type: str
    last_seen: int | None


class BuildingOut(BaseModel):
    id: str
    name: str
    type: str
    floor_area_m2: float | None
    meters: list[MeterOut]
    # the energy types the site file gives the building a total meter of: what its energy
    # view (/buildings/{id}/energy) can show, electricity first; none without a site file
    energy_types: list[str] = []


class AlertOut(BaseModel):
    fingerprint: str
    rule: str
    severity: str
    labels: dict[str, str]
    state: str
    since: int | None
    fired_at: int | None
    resolved_at: int | None
    acked_by: str | None
    acked_at: int | None
    summary: str
    value: float | None


class AlertsOut(BaseModel):
    source: Literal["rules", "history"]
    alerts: list[AlertOut]


class AckOut(BaseModel):
    acknowledged: str
    by: str


class GapOut(BaseModel):
    start: int
    end: int
    duration_s: float
    edge: bool


class FlagOut(BaseModel):
    ts: int
    quantity: str
    flag: str
    value: float | None


class HistoryOut(BaseModel):
    site: str
    device: str
    start: int
    end: int
    tz: str
    mode: str
    columns: list[str]
    units: dict[str, str]
    rows: list[dict[str, float | int | None]]
    gaps: list[GapOut]
    flags: list[FlagOut]
    rejected: list[dict[str, Any]]
    interval_s: float = Field(description="the spacing readings were expected at: the meter's "
                              "poll interval from the site file (meta.interval_source says)")
    gap_tolerance: float | None = Field(description="a gap is a silence longer than this × "
                                        "interval_s")
    stretches: list[list[int]] = Field(description="[start, end] spans with data (the range "
                                       "minus its gaps); the chart draws one line per stretch")
    readings: int
    meta: dict[str, Any]
    entries: list[dict[str, Any]] = Field(
        default=[], description="manual readings and corrections of these readings: kind, "
        "reading_ts, value, original (what a correction replaced), author, reason, source, "
        "entered_at")


class EntryIn(BaseModel):
    kind: Literal["reading", "correction"]
    device: str = Field(pattern=ID)
    gateway: str | None = Field(default=None, pattern=ID)
    quantity: str | None = Field(default=None, max_length=64,
                                 description="default: the meter's counter in the site file")
    time: str = Field(max_length=40, description="the reading's time: ISO (site time if no "
                      "offset) or epoch ms")
    value: float = Field(allow_inf_nan=False)
    reason: str = Field(default="", max_length=500)


class EntryOut(BaseModel):
    kind: str
    gateway: str
    device: str
    quantity: str
    reading_ts: int
    value: float
    original: float | None
    author: str
    reason: str
    entered_at: int


class EntriesOut(BaseModel):
    entries: list[dict[str, Any]]


class EnergyBucketOut(BaseModel):
    start: int = Field(description="the bucket's start (epoch ms): 00:00 site time of a day, "
                       "of an ISO week's Monday or of a month's 1st")
    end: int = Field(description="the next bucket's start")
    until: int = Field(description="where the figure stops: ``end``, or now for a bucket "
                       "still running (a comparison bucket: as long a part of it)")
    label: str = Field(description="in the reader's language and site time")
    short: str = Field(description="a short label for a chart's axis")
    total: float | None = Field(description="the building's total; null: no reading covers "
                                "the bucket (never a 0)")
    parts: dict[str, float] = Field(description="electricity sub-item code → amount, "" = "
                                    "not sub-metered (total − sub-items)")
    partial: bool = False
    mom: float | None = Field(default=None, description="change against the previous "
                              "period's bucket (环比), a fraction; null without both figures")
    yoy: float | None = Field(default=None, description="change against the same bucket a "
                              "year before (同比), a fraction")


class EnergySeriesOut(BaseModel):
    code: str
    name: str


class EnergyTotalsOut(BaseModel):
    current: float | None
    previous: float | None
    last_year: float | None
    complete: dict[str, bool] = Field(description="every bucket of that run has a figure "
                                      "(the range's change is given only then)")
    mom: float | None
    yoy: float | None


class EnergyViewOut(BaseModel):
    site: str
    building: str
    building_name: str
    energy_type: str
    energy_text: str
    unit: str
    every: Literal["day", "week", "month"]
    tz: str
    lang: str
    start: int
    end: int
    partial: bool
    series: list[EnergySeriesOut]
    buckets: list[EnergyBucketOut]
    previous: list[EnergyBucketOut] = Field(description="as many buckets just before")
    last_year: list[EnergyBucketOut] = Field(description="the same days (29 Feb: 28 Feb), "
                                             "the ISO weeks 52 weeks before, the same months")
    totals: EnergyTotalsOut


class CommandIn(BaseModel):
    device: str = Field(max_length=64, description="the device's name in the gateway's config")
    kind: str = Field(default="write", max_length=32, description="what to do: write (a "
                      "writable register or coil point of the device's profile), time_sync "
                      "(a DL/T 645 meter's clock); the gateway's kinds, passed through")
    target: str | None = Field(default=None, max_length=64, description="the writable "
                               "point, e.g. demand_period_min (a time_sync: left out)")
    value: StrictStr | StrictInt | StrictFloat | None = Field(
        default=None, description="the new value in the point's unit: a number or a decimal "
        "string (\"21.5\"); a coil: \"on\"/\"off\"; a time_sync: left out (\"now\"); "
        "not a boolean")
    lifetime_s: int | None = Field(default=None, description="seconds until the command "
                                   "expires (default: commands.lifetime_s of the config)")


class CommandOut(BaseModel):
    id: str = Field(description="the command id (the nonce the gateway's answer carries)")
    site: str
    gateway: str
    device: str
    kind: str
    target: str
    value: str
    issued_at: int = Field(description="Unix seconds")
    expires_at: int = Field(description="Unix seconds: the gateway refuses it after this")
    requested_by: str
    requested_at: int = Field(description="epoch ms: the time of its command_request point")
    state: Literal["sent"] = "sent"
    gateway_listening: bool = Field(default=True, description="false: the broker said no "
                                    "one is subscribed (the gateway is offline); the command "
                                    "expires unheard unless it comes back in time")


class CommandAnswerOut(BaseModel):
    outcome: str | None
    reason: str
    at: int | None


class CommandRecordOut(BaseModel):
    id: str | None
    requested_at: int | None
    requested_by: str | None
    role: str | None
    device: str | None
    kind: str | None
    target: str | None
    value: str | None
    issued_at: int | None
    expires_at: int | None
    key_id: str | None
    state: str = Field(description="sending, sent, not_sent (the broker refused it) or "
                       "unconfirmed (no PUBACK: it may have reached the gateway)")
    error: str
    outcome: str = Field(description="the gateway's first answer (ok, refused, failed), else "
                         "pending, no_answer (expired unanswered) or not_sent")
    outcome_text: str = Field(description="the outcome in the reader's language")
    reason: str
    detail: str
    readback: float | None
    registers: str | None = Field(description="a register write: the words read back")
    coils: str | None = Field(default=None, description="a coil write: the coils read back "
                              "(\"1,0,1\")")
    clock_before: str | None = Field(default=None, description="a time sync: the meter's "
                                     "clock before (local, YYYY-MM-DD hh:mm:ss)")
    clock: str | None = Field(default=None, description="a time sync: the clock after")
    offset_before_s: float | None = Field(default=None, description="a time sync: meter "
                                          "minus gateway before, seconds")
    offset_s: float | None = Field(default=None, description="a time sync: after")
    answered_at: int | None
    answers: list[CommandAnswerOut]


class CommandsOut(BaseModel):
    site: str
    gateway: str
    commands: list[CommandRecordOut]


class Health(BaseModel):
    ok: bool
    influx: bool


def refuse(status: int, lang: Lang, message: str, **params: Any) -> HTTPException:
    """A refusal in the reader's language (``message`` marked with ``N_`` and in a
    catalog, the API's own in ``api.po``), its placeholders filled."""
    return HTTPException(status, gettext_for(lang)(message, **params))


def parse_time(text: str | None, *, tz: str, default: int, lang: Lang = "zh-CN") -> int:
    """An ISO date or datetime (site-local if no offset) or epoch milliseconds."""
    if text is None or text == "":
        return default
    if text.isdigit() and len(text) <= 15:
        return int(text)
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise refuse(422, lang, N_("time %(time)s: use 2026-10-01, 2026-10-01T08:00 or epoch "
                                   "milliseconds"), time=repr(text[:40])) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=ZoneInfo(tz))
    if not 2000 <= d.year <= 2100:
        raise refuse(422, lang, N_("time must be between 2000 and 2100"))
    return int(d.timestamp() * 1000)


def create_app(cfg: InspectorConfig, *, sites: dict[str, Any] | None = None,
               rules: al.RulesClient | None = None) -> FastAPI:
    """The app. ``sites`` (site id → ``energy.site.Site``) defaults to ``cfg.sites`` loaded."""
    from energy.site import load_site
    from enmon.influx import InfluxQL, make_writer

    if sites is None:
        sites = {s.site: s for s in (load_site(p) for p in cfg.sites)}
    if rules is None and cfg.rules_url:
        rules = al.RulesClient(cfg.rules_url, cfg.rules_token())
    tokens = TokenBook((t.name, t.role, t.sha256) for t in cfg.tokens)
    holder: dict[str, Any] = {}
    from inspector import commands as cm

    # read at start: a missing or exposed key stops the API, not the first command
    signer = cm.load_signer(cfg.commands) if cfg.commands is not None else None
    if cfg.mqtt is not None:
        cfg.mqtt.password()  # an unreadable password file, an unset variable: stop now

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder["store"] = Store(InfluxQL(cfg.influx))
        holder["writer"] = make_writer(cfg.influx)  # manual readings, corrections, commands
        if cfg.mqtt is not None:
            holder["sender"] = cm.Sender(cfg.mqtt, holder["writer"])
        log.info("event=api_started sites=%d tokens=%d rules=%s", len(sites), len(cfg.tokens),
                 "yes" if rules else "no")
        yield
        await holder["store"].close()
        await holder["writer"].close()

    app = FastAPI(
        title="enmon inspector API",
        version="1",
        description="Meter history, alerts and energy reports for energy-supervision "
                    "inspectors and facility managers. Every /api/v1 call needs "
                    "`Authorization: Bearer <token>`: inspectors read, facility managers may "
                    "also acknowledge alerts.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        # the console and HTML reports show what senders wrote (device ids, rejected
        # details): no script may run but our own file, nothing may frame the console
        resp = await call_next(request)
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    def language(request: Request,
                 lang: Annotated[str | None, Query(
                     max_length=20, description="zh-CN (default) or en; else Accept-Language, "
                                                "else the configured language")] = None
                 ) -> Lang:
        """The reader's language: ``?lang=``, else ``Accept-Language``, else ``language:``."""
        if lang is not None:
            chosen = normalize(lang)
            if chosen is None:
                # the language asked for is unknown: refused in the configured one
                raise refuse(422, cfg.language, N_("lang %(asked)s: use one of %(langs)s"),
                             asked=repr(lang[:20]), langs=", ".join(LANGS))
            return chosen
        return from_accept_language(request.headers.get("accept-language")) or cfg.language

    bearer = HTTPBearer(auto_error=False, description="a token from `enmon api token`")

    def principal(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                  lang: Annotated[Lang, Depends(language)]) -> Principal:
        who = tokens.who(creds.credentials if creds else None)
        if who is None:
            exc = refuse(401, lang, N_("a valid bearer token is required"))
            exc.headers = {"WWW-Authenticate": "Bearer"}
            raise exc
        return who

    def reader(who: Annotated[Principal, Depends(principal)],
               lang: Annotated[Lang, Depends(language)]) -> Principal:
        if not who.may("read"):
            raise refuse(403, lang, N_("role %(role)s may not read"), role=who.role)
        return who

    def acker(who: Annotated[Principal, Depends(principal)],
              lang: Annotated[Lang, Depends(language)]) -> Principal:
        if not who.may("ack"):
            raise refuse(403, lang, N_("role %(role)s may not acknowledge alerts; a facility "
                                       "manager may"), role=who.role)
        return who

    def enterer(who: Annotated[Principal, Depends(principal)],
                lang: Annotated[Lang, Depends(language)]) -> Principal:
        if not who.may("enter"):
            raise refuse(403, lang, N_("role %(role)s may not enter readings; a data clerk or "
                                       "a facility manager may"), role=who.role)
        return who

    def store() -> Store:
        return holder["store"]

    @app.exception_handler(SinkError)
    async def _sink(_: Request, exc: SinkError) -> JSONResponse:
        log.warning("event=influx_error error=%r", str(exc)[:300])
        if exc.retryable:
            return JSONResponse({"detail": "the database is unavailable; try again"}, 503)
        return JSONResponse({"detail": "the database refused the query"}, 500)

    def tz_of(site: str) -> str:
        s = sites.get(site)
        return str(s.timezone) if s is not None else cfg.timezone

    def time_range(site: str, start: str | None, end: str | None, lang: Lang
                   ) -> tuple[int, int]:
        """The requested range, ending now at the latest (the default end is now)."""
        tz = tz_of(site)
        now = int(time.time() * 1000)
        e = parse_time(end, tz=tz, default=now, lang=lang)
        s = parse_time(start, tz=tz, default=min(e, now) - DAY_MS, lang=lang)
        if e <= s:
            raise refuse(422, lang, N_("end must be after start"))
        if s >= now:
            raise refuse(422, lang, N_("start is in the future: nothing was read yet"))
        e = min(e, now)
        if e - s > cfg.max_range_days * DAY_MS:
            raise refuse(422, lang, N_("at most %(days)s days per request"),
                         days=cfg.max_range_days)
        return s, e

    # ------------------------------------------------------------------ open

    @app.get("/healthz", response_model=Health, tags=["meta"])
    async def healthz() -> Health:
        """Liveness for load balancers; holds no data, needs no token."""
        try:
            await holder["store"].q.query("SHOW DATABASES")
            ok = True
        except SinkError:
            ok = False
        return Health(ok=True, influx=ok)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def console(lang: Annotated[Lang, Depends(language)]) -> HTMLResponse:
        """The console page in the reader's language; its script's own strings come with it
        (a JSON catalog in the page, read by the script, never run)."""
        from inspector.render import console_html

        return HTMLResponse(console_html(lang), headers={"Vary": "Accept-Language"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    # ------------------------------------------------------------------ inventory

    @app.get("/api/v1/whoami", response_model=WhoAmI, tags=["meta"])
    async def whoami(who: Annotated[Principal, Depends(reader)]) -> WhoAmI:
        return WhoAmI(name=who.name, role=who.role, may_acknowledge=who.may("ack"),
                      may_enter=who.may("enter"), may_control=who.may("control"))

    @app.get("/api/v1/sites", response_model=list[SiteOut], tags=["inventory"])
    async def list_sites(_: Annotated[Principal, Depends(reader)],
                         st: Annotated[Store, Depends(store)]) -> list[SiteOut]:
        meters = await st.meters()
        ids = sorted({m.site for m in meters} | set(sites))
        out = []
        for sid in ids:
            ms = [m for m in meters if m.site == sid]
            s = sites.get(sid)
            nb = len(s.buildings) if s is not None else len({m.building for m in ms})
            out.append(SiteOut(site=sid, name=(s.name or sid) if s is not None else sid,
                               buildings=nb, meters=len(ms), has_site_file=s is not None))
        return out

    async def _buildings(st: Store, site: str) -> list[BuildingOut]:
        meters = await st.meters(site)
        s = sites.get(site)
        if s is None and not meters:
            raise HTTPException(404, f"no site {site!r}")
        out: dict[str, BuildingOut] = {}
        if s is not None:
            for b in s.buildings:
                out[b.id] = BuildingOut(id=b.id, name=b.name or b.id, type=b.type,
                                        floor_area_m2=b.floor_area_m2, meters=[],
                                        energy_types=viewable_types(b))
        for m in meters:
            b2 = out.setdefault(m.building or "-", BuildingOut(
                id=m.building or "-", name=m.building or "(no building)", type="",
                floor_area_m2=None, meters=[]))
            b2.meters.append(MeterOut(**m.as_dict()))
        return list(out.values())

    @app.get("/api/v1/sites/{site}/buildings", response_model=list[BuildingOut],
             tags=["inventory"])
    async def list_buildings(site: SiteId, _: Annotated[Principal, Depends(reader)],
                             st: Annotated[Store, Depends(store)]) -> list[BuildingOut]:
        """The site → building → meter tree (meters as stored, buildings from the site file)."""
        return await _buildings(st, site)

    @app.get("/api/v1/sites/{site}/meters", response_model=list[MeterOut], tags=["inventory"])
    async def list_meters(site: SiteId, _: Annotated[Principal, Depends(reader)],
                          st: Annotated[Store, Depends(store)],
                          building: Annotated[str | None, Query(pattern=ID)] = None
                          ) -> list[MeterOut]:
        return [MeterOut(**m.as_dict()) for m in await st.meters(site)
                if building is None or m.building == building]

    # ------------------------------------------------------------------ history

    def raw_days(site: str, device: str) -> int:
        """How many days of raw readings one response may hold: 93, or as many days as
        100,000 readings take at the meter's poll interval in the site file (a year of a
        15-minute meter, 35,040 rows), at most 400."""
        from energy import figures

        model = sites.get(site)
        m = figures.find_meter(model, device, None) if model is not None else None
        if m is None:
            return 93
        return int(min(400, max(93, 100_000 * m.poll_interval_s / 86_400)))

    async def _history(st: Store, site: str, device: str, start: str | None, end: str | None,
                       mode: str, quantity: list[str] | None, lang: Lang) -> Any:
        import asyncio

        from enmon import quantities
        from inspector.store import fetch_history

        s, e = time_range(site, start, end, lang)
        if mode == "raw" and e - s > raw_days(site, device) * DAY_MS:
            raise refuse(422, lang, N_("raw readings: at most %(days)s days; use mode=hour or "
                                       "day"), days=raw_days(site, device))
        for q in quantity or []:
            if q != "all" and q not in quantities.QUANTITIES:
                raise refuse(422, lang, N_("unknown quantity %(quantity)s"),
                             quantity=repr(q[:64]))
        # the meter's tags are looked up beside the history (one round of queries, not
        # two); an unknown meter is a 404 whatever the history's own answer
        both: tuple[Any, Any] = await asyncio.gather(
            st.meter(site, device),
            fetch_history(st, site=site, device=device, start=s, end=e, tz=tz_of(site),
                          mode=mode, fields=quantity or None, site_model=sites.get(site)),
            return_exceptions=True)
        found, h = both
        if isinstance(found, BaseException):
            raise found
        if found is None:
            raise refuse(404, lang, N_("no meter %(device)s in site %(site)s"),
                         device=repr(device), site=repr(site))
        if isinstance(h, BaseException):
            raise h
        return h

    Mode = Annotated[Literal["raw", "hour", "day"], Query(description="raw or rolled up")]
    Quantity = Annotated[list[str] | None, Query(
        description="quantities to show (repeat); 'all' for every one; default: the counter "
                    "and rate of the meter's energy type")]
    Start = Annotated[str | None, Query(max_length=40, description="ISO date/time or epoch ms")]
    End = Annotated[str | None, Query(max_length=40, description="ISO date/time or epoch ms")]

    @app.get("/api/v1/sites/{site}/meters/{device}/history", response_model=HistoryOut,
             tags=["history"])
    async def history(site: SiteId, device: DeviceId,
                      _: Annotated[Principal, Depends(reader)],
                      st: Annotated[Store, Depends(store)],
                      lang: Annotated[Lang, Depends(language)], start: Start = None,
                      end: End = None, mode: Mode = "raw", quantity: Quantity = None
                      ) -> Response:
        """One meter's readings with gaps, flagged values and refused data."""
        import orjson

        h = await _history(st, site, device, start, end, mode, quantity, lang)
        # encoded by orjson, not validated again field by field: the body is HistoryOut
        # (the spec above) built by History.as_dict, and a year of a 15-minute meter is
        # 35,040 rows, whose validation took longer than reading them
        return Response(orjson.dumps(h.as_dict()), media_type="application/json")

    @app.get("/api/v1/sites/{site}/meters/{device}/export", tags=["history"],
             responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-"
                                          "officedocument.spreadsheetml.sheet": {}}}})
    async def export(site: SiteId, device: DeviceId, _: Annotated[Principal, Depends(reader)],
                     st: Annotated[Store, Depends(store)],
                     lang: Annotated[Lang, Depends(language)], start: Start = None,
                     end: End = None, mode: Mode = "raw", quantity: Quantity = None,
                     format: Annotated[Literal["csv", "xlsx"], Query()] = "csv") -> Response:
        """The same history as a CSV or XLSX file to file with the record."""
        from inspector import history as hist

        h = await _history(st, site, device, start, end, mode, quantity, lang)
        name = f"{site}_{device}_{h.mode}"
        if format == "csv":
            buf = io.StringIO()
            hist.write_csv(h, buf)
            return Response(buf.getvalue().encode(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        bio = io.BytesIO()
        hist.write_xlsx(h, bio)  # openpyxl saves to file objects too
        return Response(bio.getvalue(),
                        media_type="application/vnd.openxmlformats-officedocument."
                                   "spreadsheetml.sheet",
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})

    # ------------------------------------------------------------------ alerts

    @app.get("/api/v1/alerts", response_model=AlertsOut, tags=["alerts"])
    async def list_alerts(_: Annotated[Principal, Depends(reader)],
                          st: Annotated[Store, Depends(store)],
                          lang: Annotated[Lang, Depends(language)],
                          site: Annotated[str | None, Query(pattern=ID)] = None,
                          building: Annotated[str | None, Query(pattern=ID)] = None,
                          device: Annotated[str | None, Query(pattern=ID)] = None,
                          active_only: bool = False,
                          days: Annotated[int, Query(ge=1, le=400)] = 30) -> AlertsOut:
        """Alerts: the live book of the rules service when configured, else the stored history.

        ``active_only`` keeps pending and firing ones; otherwise the last ``days`` of history
        are merged in (from the ``alert`` measurement)."""
        now = int(time.time() * 1000)
        live: list[dict[str, Any]] = []
        source: Literal["rules", "history"] = "history"
        if rules is not None:
            try:
                live = await rules.alerts()
                source = "rules"
            except al.AckError as exc:
                log.warning("event=rules_unreachable error=%r", str(exc))
        eps = live
        if not active_only or source == "history":
            # not a period: a list of what was recorded. The upper bound is past now on
            # purpose, so a change stamped by a rules host whose clock runs ahead is still
            # listed (no figure is computed from these rows)
            rows = await st.alert_rows(site, now - days * DAY_MS, now + DAY_MS)
            seen = {(e["fingerprint"], e["since"]) for e in live}
            live_fps = {e["fingerprint"] for e in live if e["state"] in al.ACTIVE}
            for e in al.episodes(rows):
                if (e["fingerprint"], e["since"]) in seen:
                    continue
                if e["fingerprint"] in live_fps and e["state"] in al.ACTIVE:
                    continue  # the live book knows this one better
                eps.append(e)
        eps = [e for e in eps if al.matches(e, site=site, building=building, device=device)]
        if active_only:
            eps = [e for e in eps if e["state"] in al.ACTIVE]
        eps.sort(key=lambda e: (e["state"] not in al.ACTIVE, -(e["since"] or 0)))
        return AlertsOut(source=source, alerts=[AlertOut(**_alert_fields(e))
                                                for e in al.localized(eps, lang, tz_of)])

    @app.post("/api/v1/alerts/{fingerprint}/ack", response_model=AckOut, tags=["alerts"],
              responses={404: {"description": "no pending or firing alert"},
                         409: {"description": "no rules service configured"}})
    async def ack(fingerprint: Annotated[str, PathParam(pattern=r"^[0-9a-f]{4,64}$")],
                  who: Annotated[Principal, Depends(acker)]) -> AckOut:
        """Acknowledge a pending or firing alert: no more repeats this cycle (facility managers).

        Done by the rules service's alert lifecycle, which records the acknowledgement in
        the ``alert`` history with the acknowledger's name."""
        if rules is None:
            raise HTTPException(409, "acknowledging needs the rules service: set rules_url")
        try:
            body = await rules.ack(fingerprint, who.name)
        except al.AckError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        log.info("event=alert_acknowledged fingerprint=%s by=%s", fingerprint, who.name)
        return AckOut(acknowledged=str(body.get("acknowledged", fingerprint)), by=who.name)

    # ------------------------------------------------------------------ manual data

    @app.get("/api/v1/sites/{site}/entries", response_model=EntriesOut, tags=["manual"])
    async def list_entries(site: SiteId, _: Annotated[Principal, Depends(reader)],
                           st: Annotated[Store, Depends(store)],
                           lang: Annotated[Lang, Depends(language)], start: Start = None,
                           end: End = None,
                           device: Annotated[str | None, Query(pattern=ID)] = None
                           ) -> EntriesOut:
        """Manual readings and corrections of readings in a range, with author and reason."""
        s, e = time_range(site, start, end, lang)
        return EntriesOut(entries=await st.entries(site, s, e, device=device))

    @app.post("/api/v1/sites/{site}/entries", response_model=EntryOut, tags=["manual"],
              status_code=201, responses={422: {"description": "refused, with the reason"}})
    async def add_entry(site: SiteId, body: EntryIn,
                        who: Annotated[Principal, Depends(enterer)],
                        st: Annotated[Store, Depends(store)],
                        lang: Annotated[Lang, Depends(language)]) -> EntryOut:
        """Enter a manual reading or correct a stored one (data clerks, facility managers).

        The author is the token's name. The entry is checked against the stored readings
        (a counter may not run backwards; a correction needs a reason and a stored reading)
        and refused with the reason in the reader's language. Every report, roll-up and
        chart follows it; the value a correction replaces stays in the audit trail."""
        from energy.manual import Entry, ManualError
        from inspector import manual

        if site not in sites:
            raise HTTPException(404, f"no site file for site {site!r}")
        model = sites[site]
        from energy import figures

        m = figures.find_meter(model, body.device, body.gateway)
        gw = body.gateway or (m.gateway if m is not None else None)
        q = body.quantity or (m.counter if m is not None else None)
        if gw is None or q is None:
            raise refuse(422, lang, N_("meter %(device)s is not in the site file: give gateway "
                                       "and quantity"), device=repr(body.device))
        # no default: an empty time must not become epoch 0 (a reading stored in 1970)
        ts = parse_time(body.time, tz=tz_of(site), default=-1, lang=lang)
        if not ENTRY_TS[0] <= ts < ENTRY_TS[1]:
            raise refuse(422, lang, N_("time %(time)s: the reading's time, e.g. 2026-10-01T08:00 "
                                       "(site time), between 2000 and 2100"),
                         time=repr(body.time[:40]))
        entry = Entry(body.kind, site, gw, body.device, q, ts, body.value, who.name,
                      body.reason, source="api")
        try:
            checked = await manual.enter(st, holder["writer"], entry, site_model=model)
        except ManualError as exc:
            raise refuse(422, lang, exc.message, **exc.params) from None
        e = checked.entry
        log.info("event=manual_entry kind=%s site=%s device=%s quantity=%s ts=%d by=%s",
                 e.kind, site, e.device, e.quantity, e.ts, who.name)
        return EntryOut(kind=e.kind, gateway=e.gateway, device=e.device, quantity=e.quantity,
                        reading_ts=e.ts, value=e.value, original=e.original, author=e.author,
                        reason=e.reason, entered_at=e.entered_at)

    def controller(who: Annotated[Principal, Depends(principal)],
                   lang: Annotated[Lang, Depends(language)]) -> Principal:
        if not who.may("control"):
            raise HTTPException(403, cm.CommandError(
                403, N_("role %(role)s may not send device commands; an operator may"),
                role=who.role).text(lang))
        return who

    GatewayId = Annotated[str, PathParam(pattern=ID, description="gateway id")]

    @app.post("/api/v1/sites/{site}/gateways/{gateway}/commands", response_model=CommandOut,
              status_code=202, tags=["commands"],
              responses={403: {"description": "the role may not control devices"},
                         404: {"description": "no such gateway"},
                         409: {"description": "commands are not configured on this API"},
                         422: {"description": "a field to change: {detail, field}"},
                         503: {"description": "broker or database unavailable: nothing sent"}})
    async def send_command(site: SiteId, gateway: GatewayId, body: CommandIn,
                           who: Annotated[Principal, Depends(controller)],
                           st: Annotated[Store, Depends(store)],
                           lang: Annotated[Lang, Depends(language)]) -> Any:
        """Send one device command (operators): signed, expiring, published to the gateway.

        The gateway checks it against the device's profile (writable points, range) and its
        allow-list, writes, reads back and answers; the answer is listed by the GET beside
        who asked. Answered 202 with the command id once the broker has it (QoS 1); 503 when
        the broker or the database is unavailable (then nothing was sent)."""
        try:
            if signer is None or "sender" not in holder:
                raise cm.CommandError(409, N_("device commands are not set up on this API: "
                                              "add commands: and mqtt: to its config"))
            assert cfg.commands is not None
            life = cfg.commands.lifetime_s if body.lifetime_s is None else body.lifetime_s
            if not 1 <= life <= cfg.commands.max_lifetime_s:
                raise cm.CommandError(422, N_("lifetime_s %(lifetime)s: between 1 and "
                                              "%(max)s seconds"), "lifetime_s",
                                      lifetime=life, max=cfg.commands.max_lifetime_s)
            cmd = cm.build(signer, site=site, gateway=gateway, device=body.device,
                           kind=body.kind, target=body.target,
                           value=cm.decimal_text(body.value), lifetime_s=life,
                           now=time.time())
            try:
                known = await cm.known_devices(st, site, gateway, sites.get(site))
            except SinkError as exc:
                log.warning("event=command_not_sent reason=database detail=%r by=%s",
                            str(exc)[:300], who.name)
                raise cm.CommandError(503, cm.DATABASE_DOWN) from None
            if not known:
                raise cm.CommandError(404, N_("no gateway %(gateway)s in site %(site)s: no "
                                              "site file names it and it has sent no "
                                              "readings"), gateway=gateway, site=site)
            if body.device not in known:
                raise cm.CommandError(422, N_("gateway %(gateway)s has no device "
                                              "%(device)s: use one of %(devices)s"),
                                      "device", gateway=gateway, device=body.device,
                                      devices=", ".join(sorted(known)[:20]))
            ts, listening = await holder["sender"].send(cmd, requested_by=who.name,
                                                        role=who.role)
        except cm.CommandError as exc:
            content: dict[str, Any] = {"detail": exc.text(lang)}
            if exc.field:
                content["field"] = exc.field
            return JSONResponse(content, exc.status)
        return CommandOut(id=cmd["id"], site=site, gateway=gateway, device=cmd["device"],
                          kind=cmd["action"], target=cmd["target"], value=cmd["value"],
                          issued_at=cmd["issued_at"], expires_at=cmd["expires_at"],
                          requested_by=who.name, requested_at=ts,
                          gateway_listening=listening)

    @app.get("/api/v1/sites/{site}/gateways/{gateway}/commands", response_model=CommandsOut,
             tags=["commands"])
    async def list_commands(site: SiteId, gateway: GatewayId,
                            _: Annotated[Principal, Depends(reader)],
                            st: Annotated[Store, Depends(store)],
                            lang: Annotated[Lang, Depends(language)], start: Start = None,
                            end: End = None,
                            device: Annotated[str | None, Query(pattern=ID)] = None
                            ) -> CommandsOut:
        """Device commands asked of a gateway (newest first, default the last 30 days), who
        asked, and the gateway's answer: outcome, reason, the value read back."""
        tz = tz_of(site)
        now = int(time.time() * 1000)
        e = parse_time(end, tz=tz, default=now, lang=lang)
        s = parse_time(start, tz=tz, default=e - 30 * DAY_MS, lang=lang)
        if e <= s:
            raise refuse(422, lang, N_("end must be after start"))
        if e - s > cfg.max_range_days * DAY_MS:
            raise refuse(422, lang, N_("at most %(days)s days per request"),
                         days=cfg.max_range_days)
        rows = await cm.listing(st, site=site, gateway=gateway, start=s, end=e, device=device,
                                lang=lang, now_ms=now)
        return CommandsOut(site=site, gateway=gateway,
                           commands=[CommandRecordOut(**r) for r in rows])

    # ------------------------------------------------------------------ energy view

    @app.get("/api/v1/sites/{site}/buildings/{building}/energy", tags=["reports"],
             response_model=EnergyViewOut,
             responses={404: {"description": "no such site file or building"},
                        422: {"description": "a range or energy type the view refuses"}})
    async def building_energy(
            site: SiteId,
            building: Annotated[str, PathParam(pattern=ID, description="building id")],
            _: Annotated[Principal, Depends(reader)],
            st: Annotated[Store, Depends(store)],
            lang: Annotated[Lang, Depends(language)],
            energy_type: Annotated[str, Query(pattern=ID)] = "electricity",
            every: Annotated[Literal["day", "week", "month"], Query(
                description="local calendar days, ISO weeks (from Monday) or months")] = "day",
            start: Start = None, end: End = None) -> dict[str, Any]:
        """A building's consumption per day, ISO week or month in site time, split by
        electricity sub-item (with what is not sub-metered), beside the previous period
        (环比) and the same period a year before (同比); at most 400 days. The report's
        figures: a month here is the monthly report's consumption of the building."""
        from inspector import energyview as ev

        s = sites.get(site)
        if s is None:
            raise HTTPException(404, f"no site file for {site!r}: add it to the API's sites:")
        if not any(b.id == building for b in s.buildings):
            raise HTTPException(404, f"no building {building!r} in site {site!r}")
        tz = tz_of(site)
        s_ms = parse_time(start, tz=tz, default=-1, lang=lang)
        e_ms = parse_time(end, tz=tz, default=-1, lang=lang)
        try:
            v = await ev.fetch_view(st, site=s, building=building, energy_type=energy_type,
                                    every=every, start=None if s_ms == -1 else s_ms,
                                    end=None if e_ms == -1 else e_ms)
        except ev.ViewError as exc:
            raise HTTPException(422, exc.text(lang)) from None
        return ev.view_dict(v, lang)

    # ------------------------------------------------------------------ reports

    @app.get("/api/v1/sites/{site}/reports/{period}", tags=["reports"],
             responses={200: {"content": {"application/json": {}, "text/html": {},
                                          "application/pdf": {}}}})
    async def report(site: SiteId,
                     period: Annotated[str, PathParam(
                         pattern=r"^(20[0-9]{2}|2100)(-(0[1-9]|1[0-2]))?$",
                         description="a month (2026-10) or a year (2026)")],
                     _: Annotated[Principal, Depends(reader)],
                     st: Annotated[Store, Depends(store)],
                     lang: Annotated[Lang, Depends(language)],
                     building: Annotated[str | None, Query(pattern=ID)] = None,
                     format: Annotated[Literal["json", "html", "pdf"], Query()] = "json"
                     ) -> Response:
        """A monthly or annual report: consumption by energy type and sub-item, kgce and CO2
        with their factors' sources, intensity against the quota, completeness, alerts."""
        import asyncio

        from inspector import render
        from inspector.store import fetch_report

        s = sites.get(site)
        if s is None:
            raise HTTPException(404, f"no site file for {site!r}: add it to the API's sites:")
        if building is not None and not any(b.id == building for b in s.buildings):
            raise HTTPException(404, f"no building {building!r} in site {site!r}")
        try:
            rep = await fetch_report(st, site=s, period=period, building=building)
        except ValueError as exc:  # a period that has not begun
            raise HTTPException(422, f"period {period}: {exc}") from None
        if format == "json":
            return JSONResponse(render.report_dict(rep, lang))
        if format == "html":
            return HTMLResponse(render.render_html(rep, lang))
        try:
            pdf = await asyncio.to_thread(render.render_pdf, rep, None, lang)
        except render.MissingFontError as exc:
            log.error("event=report_pdf_refused reason=no_cjk_font")
            raise HTTPException(503, str(exc)) from None
        name = f"{site}_{building + '_' if building else ''}{period}.pdf"
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return app


def _alert_fields(e: dict[str, Any]) -> dict[str, Any]:
    v = e.get("value")
    return {"fingerprint": str(e.get("fingerprint", "")), "rule": str(e.get("rule", "")),
            "severity": str(e.get("severity", "")),
            "labels": {str(k): str(x) for k, x in (e.get("labels") or {}).items()},
            "state": str(e.get("state", "")), "since": e.get("since"),
            "fired_at": e.get("fired_at"), "resolved_at": e.get("resolved_at"),
            "acked_by": e.get("acked_by"), "acked_at": e.get("acked_at"),
            "summary": str(e.get("summary") or ""),
            "value": float(v) if isinstance(v, int | float) else None}
