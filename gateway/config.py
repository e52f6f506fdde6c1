"""The gateway's one YAML file, validated: what a deployer writes, nothing else.

Example::

    site: hosp-a
    gateway: gw-01
    state_dir: /var/lib/enmon/gw-01
    mqtt: {host: broker.example, port: 8883, username: gw-01,
           password_file: /etc/enmon/gw-01.pass, tls: {ca_file: /etc/enmon/ca.pem}}
    poll: {interval_s: 10, health_interval_s: 60}
    queue: {max_mb: 64}
    devices:
      - {name: main, profile: eastron-sdm630, unit_id: 1,
         transport: {type: tcp, host: 192.168.1.50, port: 502},
         building: outpatient, category: 01A00}
      - {name: ahu-1, profile: acrel-adl400, unit_id: 3,
         transport: {type: serial, port: /dev/ttyUSB0, baud: 9600, parity: N}}
      - {name: boiler-meter, profile: chint-dtsu666-dlt645, address: "000012345678",
         transport: {type: serial, port: /dev/ttyUSB1, baud: 2400, parity: E}}

Devices on the same serial port (or the same TCP serial server) form one bus
and are polled one transaction at a time; their line settings must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from enmon.config import StrictModel, load_model
from enmon.errors import ConfigError
from enmon.wire import ID_PATTERN

if TYPE_CHECKING:
    from gateway.library import AnyProfile

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
Seconds = Annotated[float, Field(gt=0, le=60)]


class TLS(StrictModel):
    """Broker TLS. Client cert/key give per-gateway certificate authentication."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(
        False, json_schema_extra={"fix": "only for lab brokers with self-signed certs"}
    )

    @model_validator(mode="after")
    def _pair(self) -> TLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MQTT(StrictModel):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str | None = None
    username: str | None = None
    # secrets never sit in the config itself: name an env var or a file (0600)
    password_env: str | None = None
    password_file: Path | None = None
    tls: TLS | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # batches handed to the client library before their PUBACK arrived
    window: Annotated[int, Field(ge=1, le=100)] = 10
    reconnect_min_s: Annotated[float, Field(ge=0.1, le=60)] = 1.0
    reconnect_max_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    # end to end: a batch leaves the disk queue only when ingest says it is stored in the
    # database (enmon/v1/{site}/{gateway}/ack), not on the broker's PUBACK; a batch the
    # broker took but ingest never confirmed is sent again after ack_timeout_s (doubling
    # up to an hour while it stays unconfirmed, e.g. through a database outage)
    end_to_end: bool = True
    ack_timeout_s: Annotated[float, Field(ge=1, le=86_400)] = 300.0

    def password(self) -> str | None:
        import os

        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(str(self.password_file), "mqtt.password_file",
                                  f"cannot read: {exc.strerror}",
                                  "make the file readable by the gateway user") from None
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError("(environment)", "mqtt.password_env",
                                  f"variable {self.password_env} is not set",
                                  "set it in the service's environment file")
            return value
        return None


class _Timing(StrictModel):
    timeout_s: Seconds = 1.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    # silence after each transaction; None = the line's 3.5-character time
    inter_frame_s: Annotated[float, Field(ge=0, le=5)] | None = None
    offline_after: Annotated[int, Field(ge=1, le=100)] = 3
    backoff_max_cycles: Annotated[int, Field(ge=1, le=1000)] = 16
    # Modbus exception 5/6 (acknowledge / busy): retries per read, first pause (doubled each time)
    busy_retries: Annotated[int, Field(ge=0, le=10)] = 3
    busy_backoff_s: Annotated[float, Field(ge=0, le=5)] = 0.05


class TcpTransport(_Timing):
    """Modbus TCP (MBAP framing)."""

    type: Literal["tcp"] = "tcp"
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502


class RtuOverTcpTransport(_Timing):
    """A serial device server: raw serial bytes over TCP (Modbus RTU framing, DL/T 645, ASCII)."""

    type: Literal["rtu_over_tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    # Modbus framing on the line behind the server: rtu, or ascii (":" … LRC CR LF)
    framing: Literal["rtu", "ascii"] = "rtu"


class SerialTransport(_Timing):
    """An RS-485 adapter on this box."""

    type: Literal["serial"]
    port: str = Field(json_schema_extra={"fix": "the device path, e.g. /dev/ttyUSB0"})
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    # 7 for Modbus ASCII lines (7E1 is its usual setting); RTU needs 8
    bytesize: Literal[7, 8] = 8
    # Modbus framing: rtu, or ascii (":" … LRC CR LF; for old PLCs and some flow computers)
    framing: Literal["rtu", "ascii"] = "rtu"
    timeout_s: Seconds = 0.5


Transport = Annotated[
    TcpTransport | RtuOverTcpTransport | SerialTransport, Field(discriminator="type")
]


class CounterCheck(StrictModel):
    """Edge validation hints for one cumulative quantity."""

    capacity: Annotated[float, Field(gt=0)] | None = None
    max_rate_per_h: Annotated[float, Field(gt=0)] | None = None


class Device(StrictModel):
    name: Id
    profile: str = Field(
        json_schema_extra={
            "fix": "a model from `enmon gateway profiles` or a path to a YAML profile"
        }
    )
    unit_id: Annotated[
        int, Field(ge=1, le=247, json_schema_extra={"fix": "a Modbus unit id is 1..247"})
    ] = 1
    # DL/T 645 meters: the 12-digit communication address (nameplate), or AAAAAAAAAAAA alone;
    # CJ/T 188 meters: 14 hex digits A6..A0 (the last four often the maker's code)
    address: Annotated[str, Field(
        pattern=r"^([0-9]{12}|AAAAAAAAAAAA|[0-9A-Fa-f]{14}|[0-9]{8})$", json_schema_extra={
            "fix": "12 digits as on the nameplate (DL/T 645), 14 (CJ/T 188) or the 8-digit "
                   "M-Bus secondary address, quoted: \"000012345678\""})] | None = None
    transport: Transport
    building: Annotated[str, Field(pattern=f"^({ID_PATTERN})?$")] = ""
    category: Annotated[str, Field(pattern=f"^({ID_PATTERN})?$")] = ""
    energy_type: str | None = None
    # largest hole (registers) read and discarded to save a transaction; None: on Modbus TCP any
    # that fits, on serial lines the size where reading it costs as much as a new transaction
    gap: Annotated[int, Field(ge=0, le=125)] | None = None
    quantities: list[str] | None = None  # poll only these (default: all in the profile)
    # this device's own poll interval on its bus (default: poll.interval_s); a bus with
    # devices of different intervals is scheduled earliest-deadline-first
    poll_interval_s: Annotated[float, Field(ge=0.1, le=86_400)] | None = None
    # a quantity's own poll interval on this device (overrides the profile's intervals_s)
    intervals_s: dict[str, Annotated[float, Field(ge=0.1, le=86_400)]] = {}
    # instrument transformer ratios of this installation (primary / secondary, e.g. 200/5 →
    # 40): multiply the quantities the profile marks in ``ratio``; 1 = the meter is direct
    ct_ratio: Annotated[float, Field(gt=0, le=100_000)] = 1.0
    pt_ratio: Annotated[float, Field(gt=0, le=10_000)] = 1.0
    counters: dict[str, CounterCheck] = {}
    # the profile's writable points a signed command may change on this device (default:
    # none, so a gateway writes nothing until the deployer allows it here)
    writable: list[str] = []


class CommandKey(StrictModel):
    """One HMAC key that signs commands for this gateway: the secret from a file (0600) or
    an environment variable, never from the YAML. Two keys allow a rotation."""

    id: Id
    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CommandKey:
        if (self.file is None) == (self.env is None):
            raise ValueError("give the secret's file or env (exactly one)")
        return self


class Commands(StrictModel):
    """Signed, expiring device commands on ``enmon/v1/{site}/{gateway}/command``."""

    enabled: bool = False
    keys: list[CommandKey] = []
    # clock difference tolerated between the signer and this box
    max_skew_s: Annotated[float, Field(ge=0, le=600)] = 30.0
    # a command may live at most this long (expires_at - issued_at): it bounds how long a
    # nonce must be remembered
    max_lifetime_s: Annotated[float, Field(ge=1, le=86_400)] = 900.0
    # nonces remembered on disk (state_dir/commands.db); when full, new commands are
    # refused rather than an old nonce forgotten early
    max_nonces: Annotated[int, Field(ge=10, le=1_000_000)] = 10_000

    @model_validator(mode="after")
    def _keys(self) -> Commands:
        if self.enabled and not self.keys:
            raise ValueError("commands.enabled needs at least one key (id + file or env)")
        if len({k.id for k in self.keys}) != len(self.keys):
            raise ValueError("command key ids must be unique")
        return self


class TimeSync(StrictModel):
    """DL/T 645 broadcast time sync (C=08H, no answer) on every bus with a DL/T 645 meter:
    at start and then every ``interval_s``, never within 5 minutes of local midnight (when
    meters freeze the day's readings). Meters take a step of at most about 5 minutes, so a
    daily sync keeps clocks right without ever jumping one far."""

    enabled: bool = False
    interval_s: Annotated[float, Field(ge=1, le=7 * 86_400)] = 86_400.0
    # the meters' local time zone (DL/T 645 carries wall-clock time without a zone)
    timezone: str = "Asia/Shanghai"

    @model_validator(mode="after")
    def _zone(self) -> TimeSync:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time zone {self.timezone!r} is unknown (e.g. Asia/Shanghai)") from None
        return self


class Poll(StrictModel):
    interval_s: Annotated[float, Field(ge=0.1, le=86_400)] = 10.0
    health_interval_s: Annotated[float, Field(ge=0.5, le=86_400)] = 60.0


class Queue(StrictModel):
    max_mb: Annotated[float, Field(gt=0, le=100_000)] = 64.0


def bus_key(t: TcpTransport | RtuOverTcpTransport | SerialTransport) -> str:
    """Devices with the same key share one half-duplex bus (one transaction at a time)."""
    if isinstance(t, SerialTransport):
        return f"serial:{t.port}"
    return f"{t.type}:{t.host}:{t.port}"


class GatewayConfig(StrictModel):
    site: Id
    gateway: Id
    state_dir: Path = Field(
        json_schema_extra={"fix": "a writable directory for seq and the disk queue"}
    )
    mqtt: MQTT = MQTT()
    poll: Poll = Poll()
    queue: Queue = Queue()
    commands: Commands = Commands()
    time_sync: TimeSync = TimeSync()
    devices: list[Device]

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        seen: set[str] = set()
        line: dict[str, tuple[int, str, int, int]] = {}
        ids: dict[tuple[str, object], str] = {}
        for i, d in enumerate(self.devices):
            if d.name in seen:
                raise ValueError(f"devices.{i}.name: device name {d.name!r} is used twice")
            seen.add(d.name)
            key = bus_key(d.transport)
            if isinstance(d.transport, SerialTransport):
                t = d.transport
                settings = (t.baud, t.parity, t.stopbits, t.bytesize)
                if line.setdefault(key, settings) != settings:
                    raise ValueError(
                        f"devices.{i}.transport: {t.port} is set to {settings} here but "
                        f"{line[key]} for an earlier device; one port has one line setting")
            who = d.address if d.address is not None else d.unit_id
            other = ids.setdefault((key, who), d.name)
            if other != d.name:
                raise ValueError(f"devices.{i}: {d.name!r} and {other!r} both answer as "
                                 f"{who} on {key}")
        return self


def load_config(path: str | Path) -> GatewayConfig:
    return load_model(GatewayConfig, path)


def check_profiles(cfg: GatewayConfig, file: str) -> list[AnyProfile]:
    """Load every device's profile and check that device and profile fit together.

    Returns the profiles in device order; raises ConfigError naming file, key and fix.
    """
    # the protocol attribute, not isinstance: a codec's module loads only with its profiles
    from gateway import library

    out: list[AnyProfile] = []
    for i, d in enumerate(cfg.devices):
        key = f"devices.{i}"
        t = d.transport
        try:
            p = library.load(d.profile)
        except ConfigError as exc:
            raise ConfigError(file, f"{key}.profile", f"profile {d.profile!r}: {exc}",
                              "run `enmon gateway profiles` for the shipped models") from None
        if p.protocol == "dlt645" and d.address is None:
            raise ConfigError(file, f"{key}.address", "missing for a DL/T 645 profile",
                              'the 12-digit meter address from the nameplate, e.g. "000012345678"')
        if p.protocol == "dlt645" and d.address is not None and len(d.address) != 12:
            raise ConfigError(file, f"{key}.address", "a DL/T 645 address has 12 digits",
                              'the 12-digit meter address from the nameplate, e.g. "000012345678"')
        if p.protocol == "cjt188" and (d.address is None or len(d.address) != 14):
            raise ConfigError(file, f"{key}.address",
                              "a CJ/T 188 profile needs the 14-digit meter address",
                              'A6..A0 as on the nameplate, quoted, e.g. "00000012345678"')
        if p.protocol == "mbus" and d.address is not None and len(d.address) != 8:
            raise ConfigError(file, f"{key}.address",
                              "an M-Bus secondary address has 8 digits",
                              'the meter id from the nameplate, quoted, e.g. "12345678"; or '
                              "leave it out and give the primary address as unit_id")
        if (p.protocol not in ("dlt645", "cjt188", "mbus")
                and d.address is not None):
            raise ConfigError(file, f"{key}.address", f"{p.protocol} profiles have no address",
                              "remove it (Modbus devices use unit_id)")
        if isinstance(d.transport, TcpTransport) and p.protocol != "modbus":
            raise ConfigError(file, f"{key}.transport.type",
                              f"'tcp' is Modbus TCP but {d.profile} speaks {p.protocol}",
                              "use type: serial or type: rtu_over_tcp")
        framing = getattr(t, "framing", "rtu")
        if framing == "ascii" and p.protocol != "modbus":
            raise ConfigError(file, f"{key}.transport.framing",
                              f"ascii is Modbus ASCII but {d.profile} speaks {p.protocol}",
                              "remove framing (it applies to Modbus devices only)")
        if isinstance(t, SerialTransport) and t.bytesize == 7 and framing != "ascii":
            raise ConfigError(file, f"{key}.transport.bytesize",
                              "7 data bits cannot carry RTU, DL/T 645 or CJ/T 188 frames",
                              "use bytesize 8, or framing: ascii for a Modbus ASCII line")
        if p.protocol == "serial_line":
            shared = [o.name for o in cfg.devices
                      if o is not d and bus_key(o.transport) == bus_key(d.transport)]
            if shared:
                raise ConfigError(file, f"{key}.transport",
                                  f"a line sensor cannot share its port with {shared}",
                                  "give the instrument its own serial port")
        for j, w in enumerate(d.writable):
            points = getattr(p, "writable", {})
            if w not in points:
                raise ConfigError(file, f"{key}.writable.{j}",
                                  f"{w!r} is not a writable point of profile {d.profile}",
                                  f"one of: {', '.join(points)}" if points else
                                  "this profile declares no writable points")
        for j, q in enumerate(d.quantities or []):
            if q not in p.quantities:
                raise ConfigError(file, f"{key}.quantities.{j}",
                                  f"{q!r} is not in profile {d.profile}",
                                  f"one of: {', '.join(p.quantities)}")
        polled = d.quantities if d.quantities is not None else list(p.quantities)
        for q in d.intervals_s:
            if q not in polled:
                raise ConfigError(file, f"{key}.intervals_s.{q}",
                                  f"{q!r} is not polled on this device",
                                  f"one of: {', '.join(polled)}")
        # a ratio the profile applies to nothing would be silently ignored
        for what, kinds in (("ct_ratio", ("ct", "ctpt")), ("pt_ratio", ("pt", "ctpt"))):
            if getattr(d, what) != 1.0 and not any(k in kinds for k in p.ratio.values()):
                raise ConfigError(file, f"{key}.{what}",
                                  f"profile {d.profile} reads no quantity on the secondary "
                                  "side of a transformer",
                                  "remove it (the meter reports primary values), or use a "
                                  "profile that marks its quantities in ratio")
        out.append(p)
    return out
