"""``enmon gateway …``: what a deployer runs on the box next to the meters.

    enmon gateway profiles                         the meter models enmon knows
    enmon gateway check -c gw.yaml                 validate the config and its profiles
    enmon gateway probe -c gw.yaml main            read one device once, print a table
    enmon gateway probe --profile acrel-adl400 --serial /dev/ttyUSB0 --unit 3
    enmon gateway scan --serial /dev/ttyUSB0 --units 1-32   which unit ids answer
    enmon gateway run -c gw.yaml                   poll forever (systemd service)
    enmon gateway command hosp-a/gw-01 main demand_period_min 15 --key-id ops-1 \
        --key-file /etc/enmon/cmd-gw-01.key --username api --password-file …
                                                   sign one write, send it, print the result
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Edge gateway: poll meters (Modbus TCP/RTU, DL/T 645, serial sensors) and publish "
    "readings over MQTT with a disk queue.",
    no_args_is_help=True,
)

ConfigOpt = typer.Option(..., "-c", "--config", help="gateway YAML file")


def _describe(t: Any) -> str:
    if t.type == "serial":
        return f"{t.port} {t.baud} {t.parity}{8}{t.stopbits}"
    return f"{t.type} {t.host}:{t.port}"


@app.command()
def check(config: Path = ConfigOpt) -> None:
    """Validate a gateway config and every profile it names; print what would be polled.

    Errors name the file, the key and the fix, e.g.
    ``gw.yaml: devices.2.address: missing for a DL/T 645 profile (fix: …)``.
    """
    from gateway.agent import make_driver
    from gateway.config import check_profiles, load_config

    cfg = load_config(config)
    profiles = check_profiles(cfg, str(config))
    for d, p in zip(cfg.devices, profiles, strict=True):
        drv = make_driver(d, p)
        who = f"address {d.address}" if d.address else f"unit {d.unit_id}"
        typer.echo(f"{d.name}: {p.manufacturer} {p.name} [{p.protocol}, confidence "
                   f"{p.confidence}] {who} @ {_describe(d.transport)}, "
                   f"{len(p.quantities)} quantities in {len(drv.steps)} transactions")
    if cfg.mqtt.username and cfg.mqtt.password_env is None and cfg.mqtt.password_file is None:
        typer.echo("warning: mqtt.username without password_env/password_file", err=True)
    if cfg.commands.enabled:
        from gateway.commands import read_secret

        for k in cfg.commands.keys:  # readable and long enough, never printed
            read_secret(k.file, k.env, what=f"commands.keys {k.id}")
        points = [f"{d.name}.{w}" for d in cfg.devices for w in d.writable]
        typer.echo(f"commands: enabled, keys {', '.join(k.id for k in cfg.commands.keys)}; "
                   f"writable: {', '.join(points) or 'nothing (no device lists writable:)'}")
    elif any(d.writable for d in cfg.devices):
        typer.echo("warning: devices list writable: points but commands.enabled is false",
                   err=True)
    if cfg.time_sync.enabled:
        typer.echo(f"time sync: DL/T 645 broadcast every {cfg.time_sync.interval_s:g} s "
                   f"({cfg.time_sync.timezone})")
    typer.echo(f"{config}: OK ({len(cfg.devices)} devices)")


@app.command()
def run(config: Path = ConfigOpt) -> None:
    """Poll the configured devices forever; batches go to a disk queue, then MQTT.

    SIGTERM / Ctrl-C stops cleanly (queued batches stay on disk for the next start).
    """
    from gateway.service import run as run_gateway

    run_gateway(config)


@app.command()
def profiles() -> None:
    """List the meter profiles shipped with enmon (model, maker, protocol, confidence)."""
    from gateway import library

    for name in library.names():
        p = library.load(name)
        typer.echo(f"{name:30} {p.protocol:11} {p.confidence}  {p.manufacturer} — {p.name}")


def _adhoc_device(profile: str, unit: int, address: str | None, serial: str | None, baud: int,
                  parity: str, host: str | None, tcp_port: int, rtu_over_tcp: bool,
                  timeout: float) -> Any:
    from gateway.config import Device

    if serial:
        transport: dict[str, Any] = {"type": "serial", "port": serial, "baud": baud,
                                     "parity": parity, "timeout_s": timeout, "retries": 0}
    elif host:
        transport = {"type": "rtu_over_tcp" if rtu_over_tcp else "tcp", "host": host,
                     "port": tcp_port, "timeout_s": timeout, "retries": 0}
    else:
        raise typer.BadParameter("give --serial PORT or --host HOST")
    return Device.model_validate({"name": "probe", "profile": profile, "unit_id": unit,
                                  "address": address, "transport": transport})


@app.command()
def probe(
    device: str = typer.Argument(None, help="device name from the config (with -c)"),
    config: Path = typer.Option(None, "-c", "--config", help="gateway YAML file"),
    profile: str = typer.Option(None, help="ad hoc: profile name or YAML path"),
    unit: int = typer.Option(1, help="ad hoc: Modbus unit id"),
    address: str = typer.Option(None, help="ad hoc: DL/T 645 meter address (12 digits)"),
    serial: str = typer.Option(None, help="ad hoc: serial port, e.g. /dev/ttyUSB0"),
    baud: int = typer.Option(9600),
    parity: str = typer.Option("N"),
    host: str = typer.Option(None, help="ad hoc: Modbus TCP or serial-server host"),
    tcp_port: int = typer.Option(502),
    rtu_over_tcp: bool = typer.Option(False, help="the host is a serial server (RTU framing)"),
    timeout: float = typer.Option(1.0, help="seconds per transaction"),
    raw: bool = typer.Option(False, "--raw", help="also print each transaction's request and "
                             "answer frames in hex, with the answer's registers (modpoll-style)"),
) -> None:
    """Read one device once and print every quantity, like modpoll.

    A failed transaction shows its error and leaves its quantities empty (never 0).
    """
    from rich.console import Console
    from rich.table import Table

    from enmon import quantities
    from enmon.config import parse_model
    from gateway.agent import make_driver, make_link, make_timing
    from gateway.bus import Bus, BusDevice
    from gateway.config import Device, check_profiles, load_config

    if config is not None:
        cfg = load_config(config)
        found = [d for d in cfg.devices if d.name == device]
        if not found:
            raise typer.BadParameter(f"no device {device!r} in {config}; "
                                     f"have {[d.name for d in cfg.devices]}")
        dev = found[0]
        p = check_profiles(cfg.model_copy(update={"devices": [dev]}), str(config))[0]
    else:
        if profile is None:
            raise typer.BadParameter("give -c CONFIG DEVICE, or --profile with a transport")
        dev = parse_model(Device, _adhoc_device(profile, unit, address, serial, baud, parity,
                                                host, tcp_port, rtu_over_tcp, timeout).model_dump())
        from gateway import library

        p = library.load(dev.profile)
    driver = make_driver(dev, p)
    timing = make_timing(dev.transport)
    errors: list[str] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    bus_log = logging.getLogger("enmon.gateway.bus")
    bus_log.addHandler(_Capture(logging.WARNING))
    bus_log.propagate = False
    link = make_link(dev.transport)
    frames: list[tuple[bytes | None, bytes]] = []
    if raw:  # record what went over the wire, in order (one entry per transaction)
        transact = link.transact

        async def recording(request: bytes | None, length: Any, timeout_s: float,
                            **kw: Any) -> bytes:
            answer = await transact(request, length, timeout_s, **kw)
            frames.append((request, answer))
            return answer

        link.transact = recording  # type: ignore[method-assign, assignment]
    bus = Bus("probe", link, [BusDevice(driver, timing)])

    async def once() -> Any:
        try:
            return await bus.poll_device(bus.devices[0])
        finally:
            await bus.close()

    t0 = time.monotonic()
    reading = asyncio.run(once())
    elapsed = time.monotonic() - t0
    table = Table(title=f"{dev.name}: {p.manufacturer} {p.name} @ {_describe(dev.transport)}")
    for col in ("quantity", "value", "unit", "source"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for q, item in p.quantities.items():
        if dev.quantities is not None and q not in dev.quantities:
            continue
        v = reading.values.get(q)
        src = getattr(item, "di", None) or getattr(item, "group", None) or (
            f"{getattr(item, 'function', None) or 'default'} {getattr(item, 'address', '')}")
        table.add_row(q, "—" if v is None else _full(v, item, p), quantities.QUANTITIES[q].unit,
                      str(src))
    Console().print(table)
    for i, (request, answer) in enumerate(frames):
        label = driver.steps[i].label if i < len(driver.steps) else f"transaction {i + 1}"
        typer.echo(f"{label}:\n  TX {request.hex(' ') if request else '-'}\n"
                   f"  RX {answer.hex(' ')}")
        words = _modbus_words(answer, dev.transport)
        if words is not None:
            typer.echo("  registers " + " ".join(f"{w:04X}" for w in words))
    for e in errors:
        typer.echo(f"error: {e}", err=True)
    typer.echo(f"{len(reading.values)}/{len(table.rows)} values in {len(driver.steps)} "
               f"transactions, {elapsed * 1000:.0f} ms")
    if not reading.values:
        raise typer.Exit(1)


def _full(v: float, item: Any, profile: Any) -> str:
    """A value as the meter's display shows it, to its full resolution (a counter of
    123456.7 kWh is ``123456.7``, never ``123457``): a 32-bit float to its 7 significant
    digits (what it holds, without the binary noise: 123456.703125 → 123456.7), a scaled
    integer register to the decimals of its scale (×0.01 → 2), anything else as is."""
    rtype = getattr(item, "type", None) or getattr(getattr(profile, "defaults", None), "type",
                                                   None)
    if getattr(item, "address", None) is not None and rtype == "f32":
        return f"{v:.7g}"
    scale = getattr(item, "scale", None)
    if getattr(item, "address", None) is not None and rtype not in ("f32", "f64") and scale:
        dec = max(0, -math.floor(math.log10(abs(scale)) + 1e-9)) if abs(scale) < 1 else 0
        return f"{v:.{dec}f}"
    return f"{v:.15g}"


def _modbus_words(frame: bytes, transport: Any) -> list[int] | None:
    """The 16-bit registers of a Modbus read answer (function 3 or 4), as modpoll lists
    them; None for anything else (DL/T 645, an exception answer, coils)."""
    if getattr(transport, "framing", "rtu") == "ascii":
        return None
    pdu = frame[7:] if getattr(transport, "type", "") == "tcp" else frame[1:-2]
    if len(pdu) < 2 or pdu[0] not in (3, 4) or len(pdu) < 2 + pdu[1] or pdu[1] % 2:
        return None
    data = pdu[2:2 + pdu[1]]
    return [int.from_bytes(data[j:j + 2], "big") for j in range(0, len(data), 2)]


def _units(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    if not out or min(out) < 1 or max(out) > 247:
        raise typer.BadParameter("units are 1..247, e.g. 1-32 or 1,5,9")
    return out


@app.command()
def scan(
    serial: str = typer.Option(None, help="serial port, e.g. /dev/ttyUSB0"),
    baud: int = typer.Option(9600),
    parity: str = typer.Option("N"),
    host: str = typer.Option(None, help="Modbus TCP gateway or serial-server host"),
    tcp_port: int = typer.Option(502),
    rtu_over_tcp: bool = typer.Option(False, help="the host is a serial server (RTU framing)"),
    protocol: str = typer.Option("modbus", help="modbus, dlt645 (2007) or dlt645-1997"),
    units: str = typer.Option("1-247", help="Modbus unit ids to try, e.g. 1-32"),
    register: int = typer.Option(0, help="register to read for the presence check"),
    function: str = typer.Option("holding", help="holding or input"),
    timeout: float = typer.Option(0.2, help="seconds to wait per unit"),
) -> None:
    """Find which Modbus unit ids answer on a bus (or the DL/T 645 meter's address).

    Any answer counts, an exception response too: the device is there, only the
    register is wrong for it. DL/T 645 searches the bus with wildcard addresses
    (gateway.discovery), so it finds every meter, not only a lone one; an empty
    request costs --timeout, so about 100 × timeout per address byte meters share.
    """
    from gateway import dlt645 as d
    from gateway import modbus_frames as mf
    from gateway.transport import Link, LinkTimeout, SerialLink, TcpLink

    link: Link
    if serial:
        link = SerialLink(serial, baud=baud, parity=parity)  # type: ignore[arg-type]
        framing = "rtu"
    elif host:
        link = TcpLink(host, tcp_port)
        framing = "rtu" if rtu_over_tcp else "tcp"
    else:
        raise typer.BadParameter("give --serial PORT or --host HOST")

    async def go() -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        await link.open()
        try:
            if protocol in ("dlt645", "dlt645-1997"):
                from gateway.discovery import discover

                version: d.Version = "1997" if protocol == "dlt645-1997" else "2007"
                for a in await discover(link, version=version, timeout=timeout):
                    found.append((a, f"answered (DL/T 645-{version} wildcard search)"))
                return found
            for i, u in enumerate(_units(units), 1):
                req = mf.ReadRequest(u, function, register, 1)  # type: ignore[arg-type]
                try:
                    if framing == "rtu":
                        frame = await link.transact(mf.rtu_request(req), mf.rtu_response_length,
                                                    timeout)
                        mf.parse_rtu_response(req, frame)
                    else:
                        frame = await link.transact(mf.tcp_request(req, u), mf.tcp_frame_length,
                                                    timeout)
                        mf.parse_tcp_response(req, u, frame)
                    found.append((str(u), "answered"))
                except mf.ModbusException as exc:
                    # not a meter found: 0x0A/0x0B is a TCP gateway saying nobody answered
                    # behind it, any other code an answer that read nothing we asked for
                    gw = " (gateway: no device behind it)" if exc.code in (0x0A, 0x0B) else ""
                    other.append((str(u), f"exception {exc.code:#04x}{gw}, not counted"))
                except mf.FrameError as exc:
                    other.append((str(u), f"garbled answer, not counted: {exc}"))
                except LinkTimeout:
                    pass
                if progress:  # RS-485 at 9600 baud takes ~50 s for 247 ids: say where it is
                    typer.echo(f"\rscanning unit {u} ({i}/{total}), {len(found)} found",
                               err=True, nl=False)
                await asyncio.sleep(mf.silent_interval(baud) if serial else 0)
            if progress:
                typer.echo("", err=True)
            return found
        finally:
            await link.close()

    other: list[tuple[str, str]] = []
    total = len(_units(units))
    progress = bool(serial)
    t0 = time.monotonic()
    found = asyncio.run(go())
    for who, what in [*found, *other]:
        typer.echo(f"{who:>14}  {what}")
    typer.echo(f"{len(found)} found in {time.monotonic() - t0:.1f} s")
    if not found:
        raise typer.Exit(1)


@app.command()
def command(
    gateway: str = typer.Argument(..., help="SITE/GATEWAY the command is for, e.g. hosp-a/gw-01"),
    device: str = typer.Argument(..., help="the device's name in that gateway's config"),
    target: str = typer.Argument(None, help="a writable point of the device's profile, e.g. "
                                 "demand_period_min or pump_run (the profile's writable: "
                                 "section); not with --action time_sync"),
    value: str = typer.Argument(None, help="the new value in the point's unit, as a decimal; "
                                "a coil takes on/off or 0/1"),
    action: str = typer.Option("write", help="write (a register or coil) or time_sync (a "
                               "DL/T 645 meter's clock set by broadcast on its bus, read "
                               "back before and after)"),
    key_id: str = typer.Option(..., help="which of the gateway's command keys signs it "
                               "(commands.keys[].id in its config)"),
    key_file: Path = typer.Option(None, help="file holding that key's secret"),
    key_env: str = typer.Option(None, help="or: environment variable holding it"),
    ttl: int = typer.Option(60, help="seconds until the command expires (the gateway also "
                            "refuses lifetimes above its commands.max_lifetime_s)"),
    host: str = typer.Option("127.0.0.1", help="MQTT broker"),
    port: int = typer.Option(1883, help="MQTT port"),
    username: str = typer.Option(None, help="an identity allowed to publish commands (api)"),
    password_file: Path = typer.Option(None, help="file holding the MQTT password"),
    password_env: str = typer.Option(None, help="or: environment variable holding it"),
    ca_file: Path = typer.Option(None, help="broker CA certificate: connect with TLS"),
    wait: float = typer.Option(30.0, help="seconds to wait for the gateway's result"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the signed command, send "
                                 "nothing"),
) -> None:
    """Sign one device write (or a DL/T 645 time sync), publish it to the gateway and
    print its result.

    The gateway writes only a point its device's profile declares writable and its config
    allows (devices[].writable), within the point's range, and reads it back. The command
    is signed with HMAC-SHA256 under a key the gateway holds, carries a fresh random id
    (refused if replayed) and expires after --ttl seconds. The result is one JSON line
    (status ok, refused or failed, with the reason); exit code 0 ok, 1 refused or failed,
    2 no result within --wait.
    """
    import json
    import ssl
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway import commands as cmds
    from gateway.config import MQTT

    site, sep, gw = gateway.partition("/")
    if not sep:
        raise typer.BadParameter(f"{gateway!r}: write SITE/GATEWAY, e.g. hosp-a/gw-01")
    if (key_file is None) == (key_env is None):
        raise typer.BadParameter("give the key's secret with --key-file or --key-env (one)")
    if action not in cmds.ACTIONS:
        raise typer.BadParameter(f"--action {action!r}: one of {', '.join(sorted(cmds.ACTIONS))}")
    if action == cmds.WRITE and (target is None or value is None):
        raise typer.BadParameter("a write needs TARGET and VALUE, e.g. demand_period_min 15")
    if action == cmds.TIME_SYNC and (target is not None or value is not None):
        raise typer.BadParameter("--action time_sync takes no TARGET or VALUE (the gateway "
                                 "sends its own clock)")
    secret = cmds.read_secret(key_file, key_env, what="--key-file/--key-env")
    try:
        msg = cmds.new_command(secret, key_id=key_id, site=site, gateway=gw, device=device,
                               target=target, value=value, ttl_s=ttl, action=action)
        topic, results = cmds.command_topic(site, gw), cmds.result_topic(site, gw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    payload = json.dumps(msg, separators=(",", ":")).encode()
    if dry_run:
        typer.echo(f"{topic} {payload.decode()}")
        return
    password = MQTT(password_file=password_file, password_env=password_env).password()
    got: dict[str, object] = {}
    arrived, subscribed = threading.Event(), threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5,
                    client_id=f"enmon-command-{msg['id'][:12]}")
    if username:
        c.username_pw_set(username, password)
    if ca_file is not None:
        c.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)

    def on_message(_c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        try:
            r = json.loads(m.payload)
        except ValueError:
            return
        if isinstance(r, dict) and r.get("id") == msg["id"]:
            got.update(r)
            arrived.set()

    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    c.on_connect = lambda cl, *_a: cl.subscribe(results, qos=1)
    try:
        c.connect(host, port)
    except OSError as exc:
        typer.echo(f"error: cannot reach the broker {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None
    c.loop_start()
    try:
        if not subscribed.wait(10):
            typer.echo(f"error: not subscribed to {results} (refused login or ACL?)", err=True)
            raise typer.Exit(2)
        c.publish(topic, payload, qos=1).wait_for_publish(10)
        if not arrived.wait(wait):
            typer.echo(f"error: no result from {gateway} in {wait:.0f} s (is it running, "
                       "with commands enabled?)", err=True)
            raise typer.Exit(2)
    finally:
        c.loop_stop()
        c.disconnect()
    typer.echo(json.dumps(got, ensure_ascii=False))
    if got.get("status") != "ok":
        raise typer.Exit(1)
