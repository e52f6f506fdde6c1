"""``enmon deploy credentials``: every file a broker and its clients need, from one directory.

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
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.broker import acl_text, client_mqtt_block, emqx_acl_text, listener_conf
from deploy.identity import (
    CredentialsError,
    Principal,
    format_passwd,
    mosquitto_hash,
    parse_passwd,
    principal_from_username,
)
from deploy.pki import CA, cert_pem, write_public, write_secret

log = logging.getLogger("enmon.deploy")

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
            write_public(cdir / "ca.crt", cert_pem(ca.cert))
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
        write_public(broker_dir / "ca.crt", cert_pem(ca.cert))
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
