"""``enmon deploy …``: what an operator runs to put enmon on real machines.

The broker is the one place where a gateway's identity is enforced: a gateway
that can publish under another gateway's topic can forge that building's
energy data, and ingest would store it (the topic/payload check in
``enmon.wire`` only catches a *careless* sender). So every gateway gets its own
MQTT identity and an ACL that lets it write only below
``enmon/v1/{site}/{gateway}/``, while ingest, rules and the API may read.

``credentials`` writes, into one output directory::

    broker/passwd                mosquitto password file (PBKDF2-SHA512 hashes, 0600)
    broker/acl                   mosquitto ACL derived from the password file
    broker/emqx-acl.conf         the same rules for an EMQX cluster (deploy/cluster/)
    broker/enmon-listener.conf   TLS listener + auth settings to include in mosquitto.conf
    broker/ca.crt server.crt server.key   (with --tls)
    ca/ca.crt ca/ca.key          the small CA that signs server and client certs (0600 key)
    clients/<user>/password      the plaintext secret, 0600, for the gateway's password_file
    clients/<user>/mqtt.yaml     the ``mqtt:`` block for that gateway's config
    clients/<user>/client.crt client.key ca.crt   (with --client-certs)

The password file is the source of truth: re-running adds new identities and
keeps existing ones (their secrets are not regenerated unless ``--rotate``), so
the command can be run again whenever a gateway is added. Secrets are never
printed or logged; only user names and file paths are.

This module also holds the tiny systemd notification helper (``sd_notify``,
``Watchdog``) the gateway uses under ``Type=notify`` + ``WatchdogSec=`` (see
``deploy/pi/``): it is the deploy contract between the unit file and the code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from enmon.errors import EnmonError
from enmon.wire import ID_PATTERN, RESERVED_GATEWAY_IDS, TOPIC_ROOT

log = logging.getLogger("enmon.deploy")

# --------------------------------------------------------------------------- identities

_ID = re.compile(ID_PATTERN)
# Service identities and what each may do. A service name never contains a dot,
# a gateway user name always does ("{site}.{gateway}"), so they cannot collide.
SERVICES: dict[str, tuple[tuple[str, str], ...]] = {
    # shared subscription $share/ingest/enmon/v1/+/+/telemetry (+ status, health)
    "ingest": (("read", f"{TOPIC_ROOT}/#"),),
    # streaming checks read telemetry/status; alerts go to enmon/v1/{site}/alerts/{rule}
    "rules": (("read", f"{TOPIC_ROOT}/#"), ("write", f"{TOPIC_ROOT}/+/alerts/#")),
    "api": (("read", f"{TOPIC_ROOT}/#"),),
}
# RESERVED_GATEWAY_IDS (from the wire contract): a gateway called "alerts" would own
# enmon/v1/{site}/alerts/#, the rule engine's alert topics, and could forge alerts.


class CredentialsError(EnmonError):
    """An identity cannot be created as asked (bad id, reserved name, broken state)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """One MQTT identity: a gateway (site + gateway id) or a server-side service."""

    username: str
    site: str = ""
    gateway: str = ""
    service: str = ""

    @property
    def is_gateway(self) -> bool:
        return bool(self.gateway)


def gateway_principal(site: str, gateway: str) -> Principal:
    for kind, value in (("site", site), ("gateway", gateway)):
        if not _ID.fullmatch(value):
            raise CredentialsError(f"{kind} {value!r} must match {ID_PATTERN}")
    if gateway in RESERVED_GATEWAY_IDS:
        raise CredentialsError(
            f"gateway id {gateway!r} is reserved: "
            f"enmon/v1/{{site}}/{gateway}/… holds the alert topics"
        )
    return Principal(username=f"{site}.{gateway}", site=site, gateway=gateway)


def service_principal(name: str) -> Principal:
    if name not in SERVICES:
        raise CredentialsError(f"service {name!r} is not one of {sorted(SERVICES)}")
    return Principal(username=name, service=name)


def principal_from_username(username: str) -> Principal:
    """Recover who a password-file entry is from its user name alone."""
    if "." in username:
        site, _, gateway = username.partition(".")
        return gateway_principal(site, gateway)
    return service_principal(username)


def parse_gateway_arg(text: str) -> Principal:
    site, sep, gateway = text.partition("/")
    if not sep:
        raise CredentialsError(f"gateway {text!r} must be written SITE/GATEWAY, e.g. hosp-a/gw-01")
    return gateway_principal(site, gateway)


# --------------------------------------------------------------------------- mosquitto formats

# mosquitto_passwd 2.x default: "$7$" = PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt,
# 64-byte key, both base64 with padding. Checked against mosquitto_passwd and the broker.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """Hash a password the way ``mosquitto_passwd -H sha512-pbkdf2`` does."""
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(key).decode()}"


def mosquitto_verify(password: str, encoded: str) -> bool:
    """True if ``password`` matches a ``$7$`` entry (used to cross-check mosquitto_passwd)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    iterations, salt, key = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=len(key))
    return hmac.compare_digest(got, key)


def parse_passwd(text: str) -> dict[str, str]:
    """``user:hash`` lines → {user: hash}, keeping file order."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            user, _, hashed = line.partition(":")
            out[user] = hashed
    return out


def format_passwd(entries: Mapping[str, str]) -> str:
    return "".join(f"{user}:{hashed}\n" for user, hashed in entries.items())


def acl_text(principals: Iterable[Principal]) -> str:
    """The mosquitto ACL: each gateway writes only its own subtree; services read.

    Mosquitto denies everything not granted once an ACL file is set, so a gateway
    can neither publish as another gateway nor read other gateways' data.
    """
    lines = [
        "# enmon ACL, generated by `enmon deploy credentials` from the password file.",
        "# Do not edit by hand: re-run the command instead.",
        "",
    ]
    ordered = sorted(principals, key=lambda p: (p.is_gateway, p.username))
    for p in ordered:
        lines.append(f"user {p.username}")
        if p.is_gateway:
            # telemetry, status (birth + LWT: the will is ACL-checked too) and health
            lines.append(f"topic write {TOPIC_ROOT}/{p.site}/{p.gateway}/#")
        else:
            lines.extend(f"topic {access} {topic}" for access, topic in SERVICES[p.service])
        lines.append("")
    return "\n".join(lines)


def emqx_acl_text(principals: Iterable[Principal]) -> str:
    """The same rules for EMQX 5 (``authorization.sources`` type ``file``, ``acl.conf``).

    Ends in ``{deny, all}`` so that, as with mosquitto, nothing is allowed unless granted.
    """
    lines = [
        "%% enmon ACL for EMQX, generated by `enmon deploy credentials` from the password file.",
        "%% Do not edit by hand: re-run the command instead.",
    ]
    ordered = sorted(principals, key=lambda p: (p.is_gateway, p.username))
    for p in ordered:
        who = f'{{username, "{p.username}"}}'
        if p.is_gateway:
            lines.append(f'{{allow, {who}, publish, ["{TOPIC_ROOT}/{p.site}/{p.gateway}/#"]}}.')
        else:
            for access, topic in SERVICES[p.service]:
                action = "subscribe" if access == "read" else "publish"
                lines.append(f'{{allow, {who}, {action}, ["{topic}"]}}.')
    lines.append("{deny, all}.")
    return "\n".join(lines) + "\n"


def listener_conf(
    *, out_dir: Path, port: int, bind: str | None, tls: bool, client_certs: bool
) -> str:
    """Settings to append to mosquitto.conf (global auth + the TLS listener)."""
    broker = out_dir / "broker"
    lines = [
        "# enmon broker auth, generated by `enmon deploy credentials`.",
        "allow_anonymous false",
        f"password_file {broker / 'passwd'}",
        f"acl_file {broker / 'acl'}",
    ]
    if tls:
        lines += [
            f"listener {port}" + (f" {bind}" if bind else ""),
            f"cafile {broker / 'ca.crt'}",
            f"certfile {broker / 'server.crt'}",
            f"keyfile {broker / 'server.key'}",
            "tls_version tlsv1.2",
        ]
        if client_certs:
            # the certificate's CN becomes the user name, so the same ACL applies
            lines += ["require_certificate true", "use_identity_as_username true"]
    return "\n".join(lines) + "\n"


def client_mqtt_block(
    p: Principal, *, host: str, port: int, client_dir: Path | str, tls: bool, client_certs: bool
) -> str:
    """The gateway config's ``mqtt:`` block (gateway/config.py schema), secrets by path."""
    client_dir = Path(client_dir)
    lines = ["mqtt:", f"  host: {host}", f"  port: {port}", f"  client_id: {p.username}"]
    if not client_certs:
        lines += [f"  username: {p.username}", f"  password_file: {client_dir / 'password'}"]
    if tls:
        lines += ["  tls:", f"    ca_file: {client_dir / 'ca.crt'}"]
        if client_certs:
            lines += [
                f"    cert_file: {client_dir / 'client.crt'}",
                f"    key_file: {client_dir / 'client.key'}",
            ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files


def write_secret(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with mode 0600 from the first byte (no umask window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- certificates


def _x509() -> Any:
    try:
        from cryptography import x509
    except ImportError:
        raise CredentialsError(
            "certificates need the 'cryptography' package: pip install 'enmon[server]'"
        ) from None
    return x509


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True, slots=True)
class CA:
    key: Any
    cert: Any

    @classmethod
    def load_or_create(cls, ca_dir: Path, *, name: str, days: int) -> CA:
        x509 = _x509()
        from cryptography.hazmat.primitives import hashes, serialization

        key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.crt"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        write_secret(key_path, _key_pem(key))
        write_public(cert_path, _cert_pem(cert))
        log.info("event=ca_created file=%s", cert_path)
        return cls(key, cert)

    def issue(
        self, common_name: str, *, server_names: Iterable[str] = (), days: int
    ) -> tuple[bytes, bytes]:
        """A leaf certificate (PEM cert, PEM key); server names become SANs."""
        x509 = _x509()
        from cryptography.hazmat.primitives import hashes

        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),
                critical=False,
            )
        )
        names = list(server_names)
        usage = (
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
            if names
            else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if names:
            sans: list[Any] = []
            for n in names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    sans.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class CredentialsResult:
    created: list[str]
    kept: list[str]
    removed: list[str]
    out_dir: Path


def make_credentials(
    out_dir: Path,
    *,
    add: Iterable[Principal] = (),
    remove: Iterable[Principal] = (),
    rotate: Iterable[str] = (),
    tls: bool | None = None,
    client_certs: bool | None = None,
    server_names: Iterable[str] | None = None,
    broker_host: str | None = None,
    port: int | None = None,
    bind: str | None = None,
    days: int = 825,
    owner: str | None = None,
    service_owner: str | None = None,
    install_dir: str | None = None,
) -> CredentialsResult:
    """Create or update the broker's password file, ACL, listener config and client secrets.

    ``install_dir`` is where a client's folder will live on its own machine (e.g.
    ``/etc/enmon/mqtt/{user}``, ``{user}`` being replaced by the user name); its
    ``mqtt.yaml`` names files there. Default: where they are now.
    ``owner`` chowns broker/ (the broker's user); ``service_owner`` chowns the service
    identities' client folders (the user the ingest/rules containers run as).

    Settings left as None keep what the previous run into ``out_dir`` used (kept in its
    ``settings.json``), so adding a gateway later cannot silently drop TLS, change the
    port or hand the broker's files back to root.
    """
    saved = _load_settings(out_dir)
    tls = bool(saved.get("tls", False)) if tls is None else tls
    client_certs = bool(saved.get("client_certs", False)) if client_certs is None else client_certs
    names = (
        list(server_names)
        if server_names is not None
        else list(saved.get("server_names", ["localhost", "127.0.0.1"]))
    )
    broker_host = broker_host or saved.get("broker_host") or names[0]
    port = int(saved.get("port", 8883)) if port is None else port
    bind = bind if bind is not None else saved.get("bind")
    owner = owner if owner is not None else saved.get("owner")
    service_owner = service_owner if service_owner is not None else saved.get("service_owner")
    install_dir = install_dir if install_dir is not None else saved.get("install_dir")
    if client_certs and not tls:
        raise CredentialsError("client certificates need TLS: add --tls")
    broker_dir = out_dir / "broker"
    passwd_path = broker_dir / "passwd"
    entries = parse_passwd(passwd_path.read_text()) if passwd_path.exists() else {}
    for user in entries:  # refuse to build an ACL from entries we do not understand
        principal_from_username(user)

    removed = []
    for p in remove:
        if entries.pop(p.username, None) is not None:
            removed.append(p.username)
            log.info("event=credential_removed user=%s", p.username)
    wanted = {p.username: p for p in add}
    rotate_set = set(rotate)
    unknown = rotate_set - set(entries) - set(wanted)
    if unknown:
        raise CredentialsError(f"cannot rotate unknown user(s) {sorted(unknown)}: add them first")

    ca = CA.load_or_create(out_dir / "ca", name="enmon MQTT CA", days=days * 4) if tls else None
    created, kept = [], []
    for user in [*entries, *(u for u in wanted if u not in entries)]:
        p = wanted.get(user) or principal_from_username(user)
        cdir = out_dir / "clients" / user
        fresh = user not in entries or user in rotate_set or not (cdir / "password").exists()
        if fresh:
            password = secrets.token_urlsafe(24)
            write_secret(cdir / "password", password.encode() + b"\n")
            entries[user] = mosquitto_hash(password)
            created.append(user)
            log.info("event=credential_created user=%s file=%s", user, cdir / "password")
        else:
            kept.append(user)
        if ca is not None:
            write_public(cdir / "ca.crt", _cert_pem(ca.cert))
            if client_certs and (fresh or not (cdir / "client.crt").exists()):
                crt, key = ca.issue(user, days=days)
                write_public(cdir / "client.crt", crt)
                write_secret(cdir / "client.key", key)
                log.info("event=client_cert_issued user=%s file=%s", user, cdir / "client.crt")
        write_public(
            cdir / "mqtt.yaml",
            client_mqtt_block(
                p,
                host=broker_host,
                port=port,
                client_dir=install_dir.replace("{user}", user) if install_dir else cdir.resolve(),
                tls=tls,
                client_certs=client_certs,
            ).encode(),
        )
    for user in removed:
        for f in ("password", "client.key", "client.crt", "ca.crt", "mqtt.yaml"):
            (out_dir / "clients" / user / f).unlink(missing_ok=True)

    write_secret(passwd_path, format_passwd(entries).encode())
    everyone = [principal_from_username(u) for u in entries]
    write_public(broker_dir / "acl", acl_text(everyone).encode())
    write_public(broker_dir / "emqx-acl.conf", emqx_acl_text(everyone).encode())
    if ca is not None:
        write_public(broker_dir / "ca.crt", _cert_pem(ca.cert))
        if not (broker_dir / "server.crt").exists() or names != saved.get("server_names", names):
            crt, key = ca.issue(names[0], server_names=names, days=days)
            write_public(broker_dir / "server.crt", crt)
            write_secret(broker_dir / "server.key", key)
            log.info("event=server_cert_issued file=%s", broker_dir / "server.crt")
    write_public(
        broker_dir / "enmon-listener.conf",
        listener_conf(
            out_dir=out_dir.resolve(), port=port, bind=bind, tls=tls, client_certs=client_certs
        ).encode(),
    )
    settings = {
        "tls": tls,
        "client_certs": client_certs,
        "server_names": names,
        "broker_host": broker_host,
        "port": port,
        "bind": bind,
        "owner": owner,
        "service_owner": service_owner,
        "install_dir": install_dir,
    }
    write_public(out_dir / "settings.json", json.dumps(settings, indent=2).encode() + b"\n")
    if owner:
        _chown_tree(broker_dir, owner, "--owner")
    if service_owner:
        for user in entries:
            if not principal_from_username(user).is_gateway:
                _chown_tree(out_dir / "clients" / user, service_owner, "--service-owner")
    return CredentialsResult(created, kept, removed, out_dir)


def _load_settings(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "settings.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise CredentialsError(f"{path}: not valid JSON ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path}: expected an object; fix or delete it")
    return data


def _chown_tree(folder: Path, owner: str, option: str) -> None:
    """Give a folder's files to the user that must read them (0600 stays 0600).

    Mosquitto started as root drops to its own user before reading its files, and the
    containers run as fixed uids the host need not know, so ``owner`` is a user name on
    this machine or ``UID[:GID]`` (eclipse-mosquitto: 1883:1883, the enmon image: 10001).
    """
    import pwd

    if re.fullmatch(r"\d+(:\d+)?", owner):
        uid_s, _, gid_s = owner.partition(":")
        uid, gid = int(uid_s), int(gid_s or uid_s)
    else:
        try:
            pw = pwd.getpwnam(owner)
        except KeyError:
            raise CredentialsError(f"{option} {owner!r} is not a user on this machine") from None
        uid, gid = pw.pw_uid, pw.pw_gid
    try:
        for f in [folder, *folder.iterdir()]:
            os.chown(f, uid, gid)
    except PermissionError:
        raise CredentialsError(f"{option}: not allowed to chown {folder} (run as root)") from None


# --------------------------------------------------------------------------- systemd


def sd_notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``READY=1`` / ``WATCHDOG=1`` / ``STATUS=…`` to systemd; False if not under it.

    The protocol is one datagram to ``$NOTIFY_SOCKET`` (``@`` = abstract socket),
    so the gateway needs no libsystemd binding on the Pi.
    """
    env = os.environ if environ is None else environ
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return False
    target = "\0" + addr[1:] if addr.startswith("@") else addr
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(target)
        s.sendall(message.encode())
    return True


class Watchdog:
    """Pets systemd's watchdog at half its period, from the loop that proves liveness.

    Call :meth:`alive` from the poll loop after each completed cycle: if the loop
    hangs (a stuck serial read, a deadlock), the pets stop and systemd restarts
    the gateway after ``WatchdogSec``. Pets more often than needed are dropped,
    so calling it every cycle costs nothing.
    """

    def __init__(
        self, *, environ: Mapping[str, str] | None = None, clock: Any = time.monotonic
    ) -> None:
        env = os.environ if environ is None else environ
        self._env = env
        self._clock = clock
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        enabled = bool(usec) and (not pid or pid == str(os.getpid()))
        self.interval: float | None = int(usec) / 2e6 if enabled and usec else None
        self._last = -float("inf")

    def alive(self) -> bool:
        """Send ``WATCHDOG=1`` if due; True when a datagram was sent."""
        if self.interval is None:
            return False
        now = self._clock()
        if now - self._last < self.interval:
            return False
        self._last = now
        return sd_notify("WATCHDOG=1", environ=self._env)


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


# --------------------------------------------------------------------------- CLI

app = typer.Typer(
    help="Put enmon on real machines: broker credentials and TLS (configs live in deploy/).",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Put enmon on real machines: broker credentials and TLS (the configs live in deploy/)."""


@app.command()
def credentials(
    out: Annotated[
        Path,
        typer.Argument(
            help="Directory for the broker files and client secrets "
            "(keep it out of git; re-use it to add gateways)."
        ),
    ],
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway",
            "-g",
            help="SITE/GATEWAY to create (repeat). User name becomes SITE.GATEWAY.",
        ),
    ] = None,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            "-s",
            help=f"Server-side identity to create (repeat): {', '.join(SERVICES)}.",
        ),
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option("--remove", help="SITE/GATEWAY or service whose access is revoked (repeat)."),
    ] = None,
    rotate: Annotated[
        list[str] | None,
        typer.Option(
            "--rotate", help="User name whose password (and client cert) is regenerated (repeat)."
        ),
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option(
            help="Create a CA and a server certificate; listener is TLS. "
            "Default: as the previous run into OUT (settings.json), else no."
        ),
    ] = None,
    client_certs: Annotated[
        bool | None,
        typer.Option(
            help="Also issue a client certificate per identity; the broker then requires one "
            "(use_identity_as_username: the certificate CN is the user name). "
            "Default: as the previous run."
        ),
    ] = None,
    server_name: Annotated[
        list[str] | None,
        typer.Option(
            "--server-name",
            help="DNS name or IP the gateways use to reach the broker (repeat; "
            "goes into the server certificate). Default: as the previous run, else "
            "localhost and 127.0.0.1.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Broker listener port written into configs. Default: previous, else 8883."
        ),
    ] = None,
    bind: Annotated[str | None, typer.Option(help="Address the TLS listener binds to.")] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            help="chown broker/ to this user or UID[:GID] (mosquitto started as root reads its "
            "files as user 'mosquitto'; the eclipse-mosquitto image is 1883:1883)."
        ),
    ] = None,
    service_owner: Annotated[
        str | None,
        typer.Option(
            help="chown the services' client folders (ingest, rules, api) to this user or "
            "UID[:GID]: the user their containers run as (the enmon image: 10001)."
        ),
    ] = None,
    install_dir: Annotated[
        str | None,
        typer.Option(
            help="Where each clients/USER/ folder is copied on its machine; mqtt.yaml names files "
            "there. {user} is replaced by the user name, e.g. '/etc/enmon/mqtt/{user}'. "
            "Default: their path in OUT."
        ),
    ] = None,
) -> None:
    """Create per-gateway MQTT identities, the broker's password file and ACL, and TLS certificates.

    Example, first run and adding a gateway later (existing secrets are kept, and so are the
    first run's settings: TLS, port, server names, owners, install dir):

        enmon deploy credentials secrets/ -g hosp-a/gw-01 -g hosp-a/gw-02 -s ingest -s rules \\
            --tls --server-name mqtt.hosp-a.example

        enmon deploy credentials secrets/ -g hosp-a/gw-03

    Then put secrets/broker/enmon-listener.conf in mosquitto's include_dir (/etc/mosquitto/conf.d)
    and copy secrets/clients/SITE.GATEWAY/ to that gateway. Secrets are never printed.
    """
    from rich.console import Console
    from rich.table import Table

    try:
        adds = [parse_gateway_arg(g) for g in gateway or []] + [
            service_principal(s) for s in service or []
        ]
        removes = [parse_gateway_arg(r) if "/" in r else service_principal(r) for r in remove or []]
        result = make_credentials(
            out,
            add=adds,
            remove=removes,
            rotate=rotate or [],
            tls=tls,
            client_certs=client_certs,
            server_names=server_name or None,
            port=port,
            bind=bind,
            owner=owner,
            service_owner=service_owner,
            install_dir=install_dir,
        )
    except EnmonError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    table = Table("user", "state", "client files")
    for user in result.created:
        table.add_row(user, "created", str(out / "clients" / user))
    for user in result.kept:
        table.add_row(user, "kept", str(out / "clients" / user))
    for user in result.removed:
        table.add_row(user, "removed", "")
    console = Console()
    console.print(table)
    console.print(f"broker files: {out / 'broker'} (include enmon-listener.conf in mosquitto.conf)")


@app.command()
def health(
    peer_port: Annotated[
        list[int],
        typer.Option(
            "--peer-port",
            help="Port this container must hold an established TCP connection to "
            "(repeat), e.g. 1883 for the broker.",
        ),
    ],
) -> None:
    """Container health check: exit 0 when connected to every --peer-port, else 1.

    Used by deploy/compose for ingest and rules, which serve no HTTP: a worker that lost
    its broker connection and cannot get it back is reported unhealthy.
    """
    state = connected_to(peer_port)
    for port, ok in state.items():
        typer.echo(f"peer_port={port} connected={'yes' if ok else 'no'}")
    raise typer.Exit(0 if all(state.values()) else 1)
