"""Device writes by signed, expiring commands: the gateway's only way to change a meter.

A server-side client (the operator's CLI ``enmon gateway command``, the API) publishes a
command on ``enmon/v1/{site}/{gateway}/command``; the gateway answers every one, done or
refused, on ``enmon/v1/{site}/{gateway}/command/result`` and in its log
(``event=command_done`` / ``event=command_refused reason=…`` / ``event=command_failed``),
and keeps the outcome in ``state_dir/commands.db``. A command (JSON, UTF-8)::

    {"v": 1, "id": "9f1c…(32 hex)", "site": "hosp-a", "gateway": "gw-01",
     "device": "main", "action": "write", "target": "demand_period_min", "value": "15",
     "issued_at": 1764700000, "expires_at": 1764700060, "key_id": "ops-1",
     "signature": "…(64 hex)"}

Its kinds (``action``), as in gateway/README.md "Command kinds":

* ``write`` of a holding-register point: ``value`` a decimal in the point's unit; FC 6 /
  FC 16, read back with FC 3;
* ``write`` of a coil point: ``value`` ``0``/``1``/``off``/``on`` for one coil, a bit mask
  (bit 0 = the first coil) for a point of several; FC 5 / FC 15, read back with FC 1;
* ``time_sync`` of a DL/T 645 meter: ``target`` ``time_sync``, ``value`` ``now`` (the
  gateway's own clock when it executes); the clock is read, the broadcast time sync
  (C = 08H) sent on the meter's bus and the clock read again.

``value`` is a *string*, so the signer and the gateway sign the same characters
whatever their JSON libraries do to numbers. The signature is the lower-case hex
HMAC-SHA256, under the gateway's command key ``key_id``, of twelve lines joined by
``\\n`` (no trailing newline)::

    ENMON-CMD-HMAC-SHA256
    1                     v
    ops-1                 key_id
    9f1c…                 id (the nonce: 16..64 of A-Z a-z 0-9 _ -)
    hosp-a                site
    gw-01                 gateway
    main                  device
    write                 action
    demand_period_min     target
    15                    value
    1764700000            issued_at (Unix seconds)
    1764700060            expires_at

the same construction as ``upload/signing.py`` (an algorithm line, then the fields, HMAC
hex); it is not imported from there because the gateway sits below the server parts in
the import layers. Every line is checked against its pattern first, so no field can hide
a newline and shift the others.

The gateway refuses, in this order: ``malformed`` (not JSON, a field missing or of the
wrong form), ``unsigned``, ``unknown_key``, ``bad_signature``, ``wrong_gateway`` (site or
gateway is not this one), ``expired`` / ``not_yet_valid`` (beyond ``max_skew_s``),
``lifetime_too_long`` (more than ``max_lifetime_s`` between issue and expiry),
``replayed`` (the id was seen; ids are kept on disk until their command has expired, so a
restart does not reopen a replay), ``nonce_store_full``, ``unknown_device``,
``not_writable`` (the target is not a writable point of the device's profile, or the
action is not one the device takes), ``not_allowed`` (not in the device's ``writable:``
allow-list), ``out_of_range`` (outside min..max, not one of the listed choices, or not a
whole register step; a coil value that is not 0/1/on/off or a mask of its coils) and
``near_midnight`` (a time sync within 5 minutes of the meters' midnight). Only then is the
device written — through the bus's own lock, so it never collides with polling — and
read back: ``ok`` when the device holds exactly what was written (a synced clock within
2 s), else ``failed`` with ``device_exception``, ``timeout``, ``bad_answer``,
``link_error``, ``readback_…``, ``readback_mismatch`` or ``not_synced``.

Every result carries the command's ``issued_at`` and ``key_id`` (who signed, when), its
``action``, the gateway's answer time ``ts`` (epoch ms, strictly increasing on one
gateway) and ``seq`` (the answer's number in ``commands.db``, increasing across restarts):
the record of one gateway never holds two answers at the same millisecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from enmon.errors import ConfigError
from enmon.wire import ID_PATTERN, TOPIC_ROOT
from gateway import dlt645
from gateway import modbus_frames as mf
from gateway import modbus_writes as mw
from gateway.bus import Bus, BusDevice, Timing
from gateway.drivers import Driver, Step
from gateway.profile import INTEGER_TYPES, ModbusProfile, encode, to_canonical

log = logging.getLogger("enmon.gateway.commands")

VERSION = 1
ALGORITHM = "ENMON-CMD-HMAC-SHA256"
MAX_PAYLOAD = 8192
WRITE, TIME_SYNC = "write", "time_sync"
ACTIONS = frozenset({WRITE, TIME_SYNC})
_ID = re.compile(f"^{ID_PATTERN}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_TARGET = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: a decimal, a coil's ``on``/``off``, or a time sync's ``now``
_VALUE = re.compile(r"^(-?[0-9]{1,18}(\.[0-9]{1,12})?|on|off|now)$")
_SIG = re.compile(r"^[0-9a-f]{64}$")
MIN_KEY_BYTES = 16


def command_topic(site: str, gateway: str) -> str:
    """Where a gateway's commands arrive (only the operator/API identity may publish)."""
    for kind, v in (("site", site), ("gateway", gateway)):
        if not _ID.fullmatch(v):
            raise ValueError(f"{kind} {v!r} must match {ID_PATTERN}")
    return f"{TOPIC_ROOT}/{site}/{gateway}/command"


def result_topic(site: str, gateway: str) -> str:
    """Where the gateway answers every command, done or refused."""
    return command_topic(site, gateway) + "/result"


# --------------------------------------------------------------------------- signing


def read_secret(file: Path | None, env: str | None, *, what: str = "command key") -> bytes:
    """A key's secret from its file (whitespace around it ignored) or environment variable.

    Raises:
        ConfigError: unreadable, unset, or shorter than 16 bytes (guessable).
    """
    if file is not None:
        try:
            secret = file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(str(file), what, f"cannot read: {exc.strerror}",
                              "make the file readable by the gateway user") from None
        where = str(file)
    elif env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError("(environment)", what, f"variable {env} is not set",
                              "set it in the service's environment file")
        secret, where = value.strip().encode(), f"${env}"
    else:
        raise ConfigError("(config)", what, "no secret given", "give a file or env")
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigError(where, what, f"the secret is shorter than {MIN_KEY_BYTES} bytes",
                          "generate one: python -c 'import secrets; print(secrets.token_hex(32))'")
    return secret


SIGNED = ("v", "key_id", "id", "site", "gateway", "device", "action", "target", "value",
          "issued_at", "expires_at")


def canonical(cmd: Mapping[str, Any]) -> bytes:
    """The text that is signed (see the module docstring); the fields must be checked."""
    return "\n".join([ALGORITHM, *(str(cmd[k]) for k in SIGNED)]).encode()


def signature(secret: bytes, cmd: Mapping[str, Any]) -> str:
    return hmac.new(secret, canonical(cmd), hashlib.sha256).hexdigest()


def new_command(secret: bytes, *, key_id: str, site: str, gateway: str, device: str,
                target: str | None = None, value: str | None = None, ttl_s: int = 60,
                now: float | None = None, nonce: str | None = None,
                action: str = WRITE) -> dict[str, Any]:
    """A signed command, ready to publish as JSON on :func:`command_topic`.

    ``action`` ``write`` needs ``target`` (a writable point) and ``value``; ``time_sync``
    has both fixed (``time_sync``, ``now``), so they may be left out.

    Raises:
        ValueError: a field of the wrong form (the message says which).
    """
    if action == TIME_SYNC:
        target = TIME_SYNC if target is None else target
        value = "now" if value is None else value
    if target is None or value is None:
        raise ValueError(f"action {action!r} needs a target and a value")
    issued = int(time.time() if now is None else now)
    cmd: dict[str, Any] = {
        "v": VERSION, "id": nonce or os.urandom(16).hex(), "site": site, "gateway": gateway,
        "device": device, "action": action, "target": target, "value": str(value),
        "issued_at": issued, "expires_at": issued + int(ttl_s), "key_id": key_id}
    problem = _shape(cmd)
    if problem:
        raise ValueError(problem)
    cmd["signature"] = signature(secret, cmd)
    return cmd


def _shape(cmd: Mapping[str, Any]) -> str | None:
    """What is wrong with the command's fields (None: every field has its form)."""
    checks: list[tuple[str, re.Pattern[str]]] = [
        ("key_id", _ID), ("id", _NONCE), ("site", _ID), ("gateway", _ID), ("device", _ID),
        ("target", _TARGET), ("value", _VALUE)]
    if cmd.get("v") != VERSION or isinstance(cmd.get("v"), bool):
        return f"v must be {VERSION}"
    for name, pattern in checks:
        v = cmd.get(name)
        if not isinstance(v, str) or not pattern.fullmatch(v):
            return f"{name} missing or not of the form {pattern.pattern}"
    if cmd.get("action") not in ACTIONS:
        return f"action must be one of {sorted(ACTIONS)}"
    if cmd["action"] == TIME_SYNC and (cmd["target"], cmd["value"]) != (TIME_SYNC, "now"):
        return "a time_sync has target time_sync and value now"
    for name in ("issued_at", "expires_at"):
        v = cmd.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**40:
            return f"{name} must be Unix seconds (an integer)"
    if cmd["expires_at"] < cmd["issued_at"]:
        return "expires_at is before issued_at"
    return None


class Refused(Exception):
    """A command the gateway does not execute, and why (``reason`` is a fixed word)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def verify(payload: bytes, *, keys: Mapping[str, bytes], site: str, gateway: str,
           now: float, max_skew_s: float, max_lifetime_s: float) -> dict[str, Any]:
    """The command in ``payload`` if it is well formed, signed, for us and in its time.

    Pure (the caller gives the clock); the nonce and the device checks come after.

    Raises:
        Refused: with the first reason that applies (see the module docstring).
    """
    if len(payload) > MAX_PAYLOAD:
        raise Refused("malformed", f"{len(payload)} bytes (at most {MAX_PAYLOAD})")
    try:
        cmd = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused("malformed", f"not JSON: {exc}") from None
    if not isinstance(cmd, dict):
        raise Refused("malformed", "not a JSON object")
    problem = _shape(cmd)
    if problem:
        raise Refused("malformed", problem)
    sig = cmd.get("signature")
    if sig in (None, ""):
        raise Refused("unsigned", "no signature")
    secret = keys.get(cmd["key_id"])
    if secret is None:
        raise Refused("unknown_key", f"key {cmd['key_id']!r} is not one of this gateway's")
    if not isinstance(sig, str) or not _SIG.fullmatch(sig) or not hmac.compare_digest(
            sig, signature(secret, cmd)):
        raise Refused("bad_signature", f"signature does not match key {cmd['key_id']!r}")
    if cmd["site"] != site or cmd["gateway"] != gateway:
        raise Refused("wrong_gateway", f"for {cmd['site']}/{cmd['gateway']}, this is "
                                       f"{site}/{gateway}")
    if now > cmd["expires_at"] + max_skew_s:
        raise Refused("expired", f"expired {now - cmd['expires_at']:.0f} s ago")
    if cmd["issued_at"] > now + max_skew_s:
        raise Refused("not_yet_valid", f"issued {cmd['issued_at'] - now:.0f} s in the future")
    if cmd["expires_at"] - cmd["issued_at"] > max_lifetime_s:
        raise Refused("lifetime_too_long", f"{cmd['expires_at'] - cmd['issued_at']} s "
                                           f"(at most {max_lifetime_s:.0f})")
    return cmd


# --------------------------------------------------------------------------- nonces


class NonceStore:
    """Command ids already seen, on disk (SQLite, fsynced), and the outcome of each command.

    An id is kept until its command has expired (plus the clock skew): after that the
    command is refused as expired anyway, so forgetting it cannot reopen a replay. The
    store is bounded: when ``max_entries`` unexpired ids are held, new commands are refused
    (``nonce_store_full``) rather than an id being forgotten early.
    """

    AUDIT_ROWS = 10_000

    def __init__(self, path: Path, *, max_entries: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS nonce (id TEXT PRIMARY KEY, "
                        "expires_at INTEGER NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS outcome (n INTEGER PRIMARY KEY, "
                        "ts INTEGER NOT NULL, id TEXT, status TEXT NOT NULL, "
                        "reason TEXT NOT NULL, result TEXT NOT NULL)")

    def claim(self, nonce: str, expires_at: int, now: float, skew_s: float) -> None:
        """Remember ``nonce``; raises Refused if it was seen or the store is full."""
        with self.db:
            self.db.execute("DELETE FROM nonce WHERE expires_at < ?", (now - skew_s,))
            if self.db.execute("SELECT 1 FROM nonce WHERE id = ?", (nonce,)).fetchone():
                raise Refused("replayed", f"command id {nonce} was already received")
            (held,) = self.db.execute("SELECT count(*) FROM nonce").fetchone()
            if held >= self.max_entries:
                raise Refused("nonce_store_full", f"{held} unexpired command ids held")
            self.db.execute("INSERT INTO nonce VALUES (?, ?)", (nonce, expires_at))

    def last(self) -> tuple[int, int]:
        """(the last answer's seq, the latest answer time in ms) — 0, 0 when none was kept —
        so numbering and times go on increasing across a restart."""
        n, ts = self.db.execute("SELECT max(n), max(ts) FROM outcome").fetchone()
        return int(n or 0), int(ts or 0)

    def record(self, result: Mapping[str, Any]) -> None:
        """Keep one answer; its ``seq`` (when it has one) is its row number."""
        with self.db:
            self.db.execute("INSERT INTO outcome (n, ts, id, status, reason, result) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (result.get("seq"), result["ts"], result.get("id"),
                             result["status"], result.get("reason", ""),
                             json.dumps(result, ensure_ascii=False)))
            self.db.execute("DELETE FROM outcome WHERE n <= "
                            "(SELECT max(n) FROM outcome) - ?", (self.AUDIT_ROWS,))

    def outcomes(self) -> list[dict[str, Any]]:
        return [json.loads(r) for (r,) in
                self.db.execute("SELECT result FROM outcome ORDER BY n")]

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------- execution


@dataclass
class Target:
    """A Modbus device commands may write: where it sits and what it allows."""

    bus: Bus
    name: str
    profile: ModbusProfile
    unit: int
    framing: mw.Framing
    timing: Timing
    allowed: frozenset[str]


@dataclass
class Dlt645Target:
    """A DL/T 645 meter whose clock a ``time_sync`` command may set (``allowed`` holds
    ``time_sync``): its bus, address, the line's ``baud`` (how long the broadcast holds the
    line) and the meters' ``timezone`` (they keep local wall-clock time)."""

    bus: Bus
    name: str
    profile: dlt645.Dlt645Profile
    address: str
    timing: Timing
    allowed: frozenset[str]
    baud: int = 2400
    timezone: str = "Asia/Shanghai"


AnyTarget = Target | Dlt645Target

#: a clock read back within this many seconds of the gateway's counts as synced: the
#: meter's clock has whole seconds and the sync frame carries whole seconds
SYNC_TOLERANCE_S = 2.0


def register_words(profile: ModbusProfile, target: str, value: str) -> list[int]:
    """The registers that hold ``value`` (a decimal string) at writable point ``target``.

    Raises:
        Refused: ``out_of_range`` — outside min..max, not a listed choice, not a whole
        step of an integer register, or too big for its type.
    """
    point = profile.writable[target]
    f = profile.writable_field(target)
    try:
        v = Decimal(value)
    except InvalidOperation:
        raise Refused("out_of_range", f"{value!r} is not a number") from None
    lo, hi = point.bounds()
    if not Decimal(repr(lo)) <= v <= Decimal(repr(hi)):
        raise Refused("out_of_range", f"{value} outside {lo:g}..{hi:g} "
                                      f"{point.unit}".rstrip())
    if point.choices is not None and v not in {Decimal(repr(c)) for c in point.choices}:
        raise Refused("out_of_range", f"{value} is not one of "
                                      f"{', '.join(f'{c:g}' for c in point.choices)}")
    raw = (v - Decimal(repr(f.offset))) / Decimal(repr(f.scale))
    try:
        if f.type in INTEGER_TYPES:
            if raw != raw.to_integral_value():
                raise Refused("out_of_range", f"{value} is not a whole step of {f.scale:g}")
            return encode(int(raw), f.type, f.byte_order, f.word_order)
        return encode(float(raw), f.type, f.byte_order, f.word_order)
    except (OverflowError, ValueError) as exc:
        raise Refused("out_of_range", f"{value} does not fit {f.type}: {exc}") from None


def coil_bits(profile: ModbusProfile, target: str, value: str) -> list[int]:
    """The coil states (0/1, the point's first coil first) that ``value`` asks for at the
    writable coil point ``target``: ``on``/``off``/``1``/``0`` for one coil, a bit mask
    (bit 0 = the first coil) for a point of several.

    Raises:
        Refused: ``out_of_range`` — not a whole number, outside the point's range or
        mask, or not one of its listed choices (a reset coil that only takes ``on``).
    """
    point = profile.writable[target]
    words = {"on": 1, "off": 0}
    if value in words and point.coils != 1:
        raise Refused("out_of_range", f"{value} sets one coil; {target} has {point.coils} "
                                      "(give a bit mask)")
    try:
        v = Decimal(words[value]) if value in words else Decimal(value)
    except InvalidOperation:
        raise Refused("out_of_range", f"{value!r} is not 0, 1, on or off") from None
    lo, hi = point.bounds()
    if v != v.to_integral_value() or not Decimal(repr(lo)) <= v <= Decimal(repr(hi)):
        what = "0, 1, on or off" if point.coils == 1 else f"a mask of {point.coils} coils"
        raise Refused("out_of_range", f"{value} is not {what} within {lo:g}..{hi:g}")
    if point.choices is not None and v not in {Decimal(repr(c)) for c in point.choices}:
        raise Refused("out_of_range", f"{value} is not one of "
                                      f"{', '.join(f'{c:g}' for c in point.choices)}")
    mask = int(v)
    return [(mask >> i) & 1 for i in range(point.coils)]


class _Steps(Driver):
    """A driver of a few transactions, so a command's exchange runs through the bus like a
    poll (one turn, under the bus lock)."""

    def __init__(self, name: str, *steps: Step) -> None:
        self.name, self.profile_name, self.steps = name, "command", list(steps)


@dataclass
class _Outcome:
    words: list[int] | None = None
    error: Exception | None = None


_tids = itertools.count(1)


def _read_step(t: Target, function: str, address: int, count: int, out: _Outcome) -> Step:
    req = mf.ReadRequest(t.unit, "coil" if function == "coil" else "holding", address, count)
    state = {"tid": 0}

    def request() -> bytes:
        state["tid"] = next(_tids) & 0xFFFF
        if t.framing == "rtu":
            return mf.rtu_request(req)
        if t.framing == "ascii":
            return mf.ascii_request(req)
        return mf.tcp_request(req, state["tid"])

    def parse(frame: bytes) -> dict[str, float]:
        try:
            if t.framing == "rtu":
                out.words = mf.parse_rtu_response(req, frame)
            elif t.framing == "ascii":
                out.words = mf.parse_ascii_response(req, frame)
            else:
                out.words = mf.parse_tcp_response(req, state["tid"], frame)
        except Exception as exc:
            out.error = exc
            raise
        out.error = None
        return {}

    length = {"rtu": mf.rtu_response_length, "ascii": mf.ascii_frame_length,
              "tcp": mf.tcp_frame_length}[t.framing]
    return Step(f"unit {t.unit} read back {req.function} {address}+{count}", request, length,
                parse)


def _write_step(t: Target, pdu: bytes, out: _Outcome) -> Step:
    state = {"tid": 0}

    def request() -> bytes:
        state["tid"] = next(_tids) & 0xFFFF
        return mw.frame(t.framing, t.unit, pdu, state["tid"])

    def parse(frame: bytes) -> dict[str, float]:
        try:
            unit, answer = mw.unframe(t.framing, frame, state["tid"])
            mw.check_write_response(t.unit, pdu, unit, answer)
        except Exception as exc:
            out.error = exc
            raise
        out.error = None
        out.words = []
        return {}

    return Step(f"unit {t.unit} write FC {pdu[0]}", request, mw.response_length(t.framing),
                parse)


def _failure(dev: BusDevice, out: _Outcome) -> tuple[str, str]:
    st = dev.stats
    if isinstance(out.error, mf.ModbusException | dlt645.Dlt645Error):
        return "device_exception", str(out.error)
    if st.timeouts:
        return "timeout", "no answer in time"
    if st.link_errors:
        return "link_error", "the link failed"
    return "bad_answer", str(out.error) if out.error else "no valid answer"


async def _write_and_read_back(t: Target, pdu: bytes, function: str, address: int,
                               count: int) -> list[int]:
    """Send one write and read the point back (also when the write's answer was lost: it
    may have been applied); the registers or bits read.

    Raises:
        Refused: ``status failed`` reasons — the device refused or did not answer.
    """
    wrote = _Outcome()
    dev = BusDevice(_Steps(t.name, _write_step(t, pdu, wrote)), t.timing)
    await t.bus.poll_device(dev)
    failed = None if wrote.words is not None else _failure(dev, wrote)
    back = _Outcome()
    rdev = BusDevice(_Steps(t.name, _read_step(t, function, address, count, back)), t.timing)
    await t.bus.poll_device(rdev)
    if failed is not None:
        got = f"; read back {back.words}" if back.words is not None else ""
        raise Refused(failed[0], failed[1] + got)
    if back.words is None:
        reason, detail = _failure(rdev, back)
        raise Refused("readback_" + reason if reason != "device_exception" else reason,
                      "written, but the read back failed: " + detail)
    return back.words


async def execute(t: Target, target: str, words: list[int]) -> tuple[list[int], float]:
    """Write ``words`` at the writable register point ``target`` and read them back.

    Returns (registers read back, their value in the point's unit).

    Raises:
        Refused: ``status failed`` reasons — the device refused or did not answer.
    """
    point = t.profile.writable[target]
    f = t.profile.writable_field(target)
    pdu = mw.write_pdu(f.address, words, point.write_function)
    back = await _write_and_read_back(t, pdu, "holding", f.address, len(words))
    value = float(to_canonical(f, back))
    if back != words:
        raise Refused("readback_mismatch", f"wrote {words}, the device holds {back} "
                                           f"({value:g})")
    return back, value


async def execute_coils(t: Target, target: str, bits: list[int]) -> tuple[list[int], int]:
    """Write ``bits`` at the writable coil point ``target`` (FC 5 or FC 15) and read the
    coils back with FC 1.

    Returns (coils read back, their value: 0/1, or the mask of a point of several).

    Raises:
        Refused: ``status failed`` reasons — the device refused or did not answer, or
        holds other states than those written (``readback_mismatch``).
    """
    point = t.profile.writable[target]
    pdu = mw.coil_write_pdu(point.address, bits, point.coil_function())
    back = await _write_and_read_back(t, pdu, "coil", point.address, len(bits))
    value = sum(b << i for i, b in enumerate(back))
    if back != bits:
        raise Refused("readback_mismatch", f"wrote coils {bits}, the device holds {back}")
    return back, value


# --------------------------------------------------------------------------- DL/T 645 clock


@dataclass
class _Clock:
    """What the two clock reads of one meter brought: the date's and the time's value
    bytes, and when (gateway epoch seconds) the time's answer was complete."""

    date: bytes | None = None
    time: bytes | None = None
    at: float = 0.0
    error: Exception | None = None


def _clock_steps(t: Dlt645Target, sink: _Clock, clock: Callable[[], float]) -> list[Step]:
    version = t.profile.version
    steps = []
    for which, di in zip(("date", "time"), dlt645.CLOCK_DI[version], strict=True):
        raw = dlt645.read_request(t.address, di, version)

        def parse(frame: bytes, di: str = di, which: str = which) -> dict[str, float]:
            try:
                found, _ = dlt645.find_frame(frame)
                if found is None:
                    raise dlt645.Dlt645FrameError(f"meter {t.address}: no frame in "
                                                  f"{frame.hex()}")
                value = dlt645.parse_read_response(t.address, di, found, version)
            except Exception as exc:
                sink.error = exc
                raise
            setattr(sink, which, value)
            if which == "time":
                sink.at = clock()
            return {}

        steps.append(Step(f"meter {t.address} clock DI {di}", _constant(raw),
                          dlt645.frame_length, parse))
    return steps


def _constant(frame: bytes) -> Callable[[], bytes]:
    return lambda: frame


def _broadcast_step(frame_of: Callable[[], bytes], wire_s: float) -> Step:
    """The time-sync frame, which nobody answers, held on the line for its wire time so the
    next transaction cannot talk over it."""
    until = {"t": 0.0}

    def request() -> bytes:
        until["t"] = time.monotonic() + wire_s
        return frame_of()

    def length(_buf: bytes) -> int | None:
        return 0 if time.monotonic() >= until["t"] else None

    return Step("DL/T 645 broadcast time sync", request, length, lambda _b: {}, quiet=False)


async def _read_clock(t: Dlt645Target, clock: Callable[[], float], answer_s: float
                      ) -> tuple[dt.datetime, float]:
    """The meter's local clock and its offset from the gateway's (seconds, meter ahead
    positive), from one date and one time read.

    The meter's clock has whole seconds (its true time is up to 1 s later than it says)
    and its time answer took ``answer_s`` on the line, so the offset is taken between the
    middle of that second and the moment the meter built the answer.

    Raises:
        Refused: the meter did not answer either read, or not with a valid clock.
    """
    sink = _Clock()
    dev = BusDevice(_Steps(t.name, *_clock_steps(t, sink, clock)), t.timing)
    await t.bus.poll_device(dev)
    if sink.date is None or sink.time is None:
        raise Refused(*_failure(dev, _Outcome(error=sink.error)))
    try:
        meter = dlt645.parse_clock(sink.date, sink.time)
    except dlt645.Dlt645FrameError as exc:
        raise Refused("bad_answer", str(exc)) from None
    meter_ts = meter.replace(tzinfo=ZoneInfo(t.timezone)).timestamp() + 0.5
    return meter, round(meter_ts - (sink.at - answer_s), 2)


async def sync_clock(t: Dlt645Target, clock: Callable[[], float] = time.time
                     ) -> dict[str, Any]:
    """Read the meter's clock, broadcast the time sync on its bus, read the clock again.

    The broadcast carries the gateway's local time (``t.timezone``) at the moment the frame
    will have arrived, rounded to the second. Other DL/T 645 meters on the same line take
    it too (the standard's only time setting without a meter password is this broadcast);
    they get the right time, which is what they would get from the scheduled sync.

    Returns the result's fields: ``clock_before``, ``clock`` (the meter's local time read,
    ``YYYY-MM-DD hh:mm:ss``), ``offset_before_s``, ``offset_s`` (meter minus gateway).

    Raises:
        Refused: ``status failed`` — the meter did not answer (nothing was sent then), its
        clock could not be read back, or it is still more than :data:`SYNC_TOLERANCE_S`
        off (``not_synced``: a meter refuses a step of more than about 5 minutes).
    """
    tz = ZoneInfo(t.timezone)
    char = mf.char_time(t.baud)
    # a clock answer: FE×4, 68, address, 68, C, L, DI + 4 or 3 value bytes, CS, 16
    answer_s = (4 + 12 + dlt645.DI_BYTES[t.profile.version] + 3) * char
    before, offset_before = await _read_clock(t, clock, answer_s)
    frame_len = len(dlt645.time_sync_request(dt.datetime(2000, 1, 1)))
    wire_s = frame_len * char

    def frame() -> bytes:
        local = dt.datetime.fromtimestamp(clock(), tz).replace(tzinfo=None)
        return dlt645.time_sync_request(dlt645.rounded_time_sync(local, wire_s))

    timing = Timing(timeout_s=1.5 * wire_s + 0.01, retries=0,
                    inter_frame_s=mf.silent_interval(t.baud))
    bdev = BusDevice(_Steps(t.name, _broadcast_step(frame, wire_s)), timing)
    await t.bus.poll_device(bdev)
    if bdev.stats.link_errors:
        raise Refused("link_error", "the time sync could not be sent")
    log.info("event=time_sync_sent bus=%s device=%s by=command", t.bus.name, t.name)
    try:
        after, offset = await _read_clock(t, clock, answer_s)
    except Refused as r:
        raise Refused(r.reason if r.reason == "device_exception" else "readback_" + r.reason,
                      "sent, but the clock read back failed: " + r.detail) from None
    fields: dict[str, Any] = {
        "clock_before": before.isoformat(sep=" "), "clock": after.isoformat(sep=" "),
        "offset_before_s": offset_before, "offset_s": offset}
    if abs(offset) > SYNC_TOLERANCE_S:
        raise _NotSynced(fields, f"the meter's clock is {offset:+.1f} s off after the sync "
                                 f"(was {offset_before:+.1f} s): a meter refuses a step "
                                 "above about 5 minutes; set it on site")
    return fields


class _NotSynced(Refused):
    """A time sync the meter did not take, with what was read (for the result)."""

    def __init__(self, fields: dict[str, Any], detail: str) -> None:
        super().__init__("not_synced", detail)
        self.fields = fields


# --------------------------------------------------------------------------- the service


@dataclass
class CommandService:
    """Receives commands from the uplink, checks them, writes, reads back and answers.

    ``targets`` are the devices that allow some command: :class:`Target` (Modbus writes)
    or :class:`Dlt645Target` (time sync). ``publish(topic, payload)`` sends a result (the
    uplink's client); ``clock`` is ``time.time`` except in tests.
    """

    site: str
    gateway: str
    keys: dict[str, bytes]
    targets: Mapping[str, AnyTarget]
    store: NonceStore
    publish: Callable[[str, bytes], None]
    max_skew_s: float = 30.0
    max_lifetime_s: float = 900.0
    clock: Callable[[], float] = time.time
    inbox: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=32))
    done: int = 0
    refused: int = 0
    failed: int = 0
    _seq: int = field(default=0, init=False, repr=False)
    _last_ts: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._seq, self._last_ts = self.store.last()

    @property
    def topic(self) -> str:
        return command_topic(self.site, self.gateway)

    # -- from the MQTT thread -------------------------------------------------------
    def attach(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe ``client`` (paho) to the command topic on every connect and hand each
        message to the event loop. The subscription is this gateway's topic only."""
        topic = self.topic

        def on_message(_c: Any, _u: object, msg: Any) -> None:
            loop.call_soon_threadsafe(self._enqueue, bytes(msg.payload))

        client.message_callback_add(topic, on_message)
        chained = client.on_connect

        def on_connect(c: Any, u: object, flags: object, rc: Any, props: object) -> None:
            # subscribe before the uplink's birth message: whoever sees the gateway online
            # knows its commands are heard (the broker handles one client's packets in order)
            if not rc.is_failure:
                c.subscribe(topic, qos=1)
            if chained is not None:
                chained(c, u, flags, rc, props)

        client.on_connect = on_connect

    def _enqueue(self, payload: bytes) -> None:
        try:
            self.inbox.put_nowait(payload)
        except asyncio.QueueFull:
            self._answer(_ident(payload), "refused", "overloaded",
                         f"{self.inbox.qsize()} commands already waiting")

    # -- on the event loop ---------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                payload = await asyncio.wait_for(self.inbox.get(), 0.2)
                try:
                    await self.handle(payload)
                except Exception:  # a bug must not stop the gateway; the command is answered
                    log.exception("event=command_error")
                    self._answer(_ident(payload), "failed", "internal_error",
                                 "see the gateway log")

    async def handle(self, payload: bytes) -> dict[str, Any]:
        """Check and execute one command; returns the result that was published."""
        now = self.clock()
        cmd: dict[str, Any] | None = None
        try:
            cmd = verify(payload, keys=self.keys, site=self.site, gateway=self.gateway,
                         now=now, max_skew_s=self.max_skew_s,
                         max_lifetime_s=self.max_lifetime_s)
            await asyncio.to_thread(self.store.claim, cmd["id"], cmd["expires_at"], now,
                                    self.max_skew_s)
            t = self.targets.get(cmd["device"])
            if t is None:
                raise Refused("unknown_device", f"no writable device {cmd['device']!r} here")
            if cmd["action"] == TIME_SYNC:
                return await self._time_sync(cmd, t)
            return await self._write(cmd, t)
        except Refused as r:
            return self._answer(cmd if cmd is not None else _ident(payload), "refused",
                                r.reason, r.detail)

    async def _write(self, cmd: dict[str, Any], t: AnyTarget) -> dict[str, Any]:
        """A ``write``: the point checked (raises Refused), then written and read back."""
        if not isinstance(t, Target):
            raise Refused("not_writable", f"{t.name} is a DL/T 645 meter: it takes only "
                                          "time_sync")
        name = cmd["target"]
        if name not in t.profile.writable:
            raise Refused("not_writable", f"{name!r} is not a writable point of "
                                          f"{t.profile.model}")
        if name not in t.allowed:
            raise Refused("not_allowed", f"{name!r} is not in device {t.name}'s writable list")
        if t.profile.writable[name].is_coil:
            bits = coil_bits(t.profile, name, cmd["value"])
            try:
                coils, mask = await execute_coils(t, name, bits)
            except Refused as r:
                return self._answer(cmd, "failed", r.reason, r.detail)
            return self._answer(cmd, "ok", "", "", readback=mask, coils=coils)
        words = register_words(t.profile, name, cmd["value"])
        try:
            back, value = await execute(t, name, words)
        except Refused as r:
            return self._answer(cmd, "failed", r.reason, r.detail)
        return self._answer(cmd, "ok", "", "", readback=value, registers=back)

    async def _time_sync(self, cmd: dict[str, Any], t: AnyTarget) -> dict[str, Any]:
        """A ``time_sync`` of one DL/T 645 meter (raises Refused before anything is sent)."""
        if not isinstance(t, Dlt645Target):
            raise Refused("not_writable", f"{t.name} is not a DL/T 645 meter: time_sync "
                                          "sets a DL/T 645 meter's clock")
        if TIME_SYNC not in t.allowed:
            raise Refused("not_allowed", f"time_sync is not in device {t.name}'s writable "
                                         "list")
        local = dt.datetime.fromtimestamp(self.clock(), ZoneInfo(t.timezone))
        if not dlt645.time_sync_allowed(local):
            raise Refused("near_midnight", f"{local:%H:%M} in {t.timezone}: no time sync "
                                           f"within {dlt645.MIDNIGHT_GUARD_MIN} minutes of "
                                           "midnight (meters freeze the day's readings)")
        try:
            fields = await sync_clock(t, self.clock)
        except _NotSynced as r:
            return self._answer(cmd, "failed", r.reason, r.detail, **r.fields)
        except Refused as r:
            return self._answer(cmd, "failed", r.reason, r.detail)
        return self._answer(cmd, "ok", "", "", **fields)

    def _answer(self, cmd: Mapping[str, Any] | None, status: str, reason: str, detail: str,
                **extra: Any) -> dict[str, Any]:
        c = cmd or {}
        # one gateway never answers twice in the same millisecond (see ingest's `command`
        # points), and numbers its answers; both go on across a restart (commands.db)
        self._last_ts = max(int(self.clock() * 1000), self._last_ts + 1)
        self._seq += 1
        result: dict[str, Any] = {
            "v": VERSION, "id": c.get("id"), "site": self.site, "gateway": self.gateway,
            "device": c.get("device"), "action": c.get("action"), "target": c.get("target"),
            "value": c.get("value"), "status": status, "reason": reason,
            "detail": detail[:300], "ts": self._last_ts, "seq": self._seq,
            "issued_at": c.get("issued_at"), "key_id": c.get("key_id"), **extra}
        ident = _safe(c.get("id"))
        if status == "ok":
            self.done += 1
            shown = {k: extra[k] for k in ("readback", "offset_s") if k in extra}
            log.info("event=command_done id=%s device=%s action=%s target=%s value=%s %s",
                     ident, c.get("device"), c.get("action"), c.get("target"), c.get("value"),
                     " ".join(f"{k}={v}" for k, v in shown.items()))
        elif status == "refused":
            self.refused += 1
            log.warning("event=command_refused id=%s reason=%s detail=%r", ident, reason,
                        detail[:300])
        else:
            self.failed += 1
            log.warning("event=command_failed id=%s device=%s target=%s reason=%s detail=%r",
                        ident, c.get("device"), c.get("target"), reason, detail[:300])
        try:
            self.store.record(result)
        except sqlite3.Error as exc:
            log.error("event=command_record_failed detail=%r", str(exc))
        self.publish(result_topic(self.site, self.gateway),
                     json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())
        return result

    def stats(self) -> dict[str, int]:
        return {"done": self.done, "refused": self.refused, "failed": self.failed}


def _ident(payload: bytes) -> dict[str, Any] | None:
    """What a refused payload says it is — id, device, action, target, value, issued_at,
    key_id — so the result says which command it answers and who it claims signed it
    (only well-formed values are echoed; the reason says whether the claim held)."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    out: dict[str, Any] = {}
    for k, pattern in (("id", _NONCE), ("device", _ID), ("target", _TARGET), ("value", _VALUE),
                       ("key_id", _ID)):
        v = obj.get(k)
        if isinstance(v, str) and pattern.fullmatch(v):
            out[k] = v
    if obj.get("action") in ACTIONS:
        out["action"] = obj["action"]
    issued = obj.get("issued_at")
    if isinstance(issued, int) and not isinstance(issued, bool) and 0 <= issued < 2**40:
        out["issued_at"] = issued
    return out


def _safe(v: object) -> str:
    return v if isinstance(v, str) and _NONCE.fullmatch(v) else "-"
