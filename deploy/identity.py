"""Who may talk to the broker: gateway and service identities and mosquitto password files.

A gateway is ``{site}.{gateway}``; a service (ingest, rules, api) has no dot, so the two
never collide. A service that runs as several processes gets one identity per replica
(``ingest-1``, ``ingest-2`` …) with the service's permissions: the broker binds each
client id to its user name (``use_username_as_clientid``), so two processes under one
identity would take each other's session. Passwords are stored as mosquitto_passwd 2.x
PBKDF2-SHA512 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from enmon.errors import EnmonError
from enmon.wire import ID_PATTERN, RESERVED_GATEWAY_IDS, TOPIC_ROOT

# --------------------------------------------------------------------------- identities

_ID = re.compile(ID_PATTERN)
# a replica of a service: the service's name, a dash and a suffix (ingest-2, ingest-host3-1)
_REPLICA = re.compile(r"^(?P<service>[a-z]+)-(?P<replica>[A-Za-z0-9_-]{1,40})$")
# Service identities and what each may do. A service name never contains a dot,
# a gateway user name always does ("{site}.{gateway}"), so they cannot collide.
SERVICES: dict[str, tuple[tuple[str, str], ...]] = {
    # shared subscription $share/ingest/enmon/v1/+/+/telemetry (+ status, health)
    "ingest": (("read", f"{TOPIC_ROOT}/#"),
               # end-to-end acks: which of a gateway's batches are stored in the database
               ("write", f"{TOPIC_ROOT}/+/+/ack")),
    # streaming checks read telemetry/status; alerts go to enmon/v1/{site}/alerts/{rule}
    "rules": (("read", f"{TOPIC_ROOT}/#"), ("write", f"{TOPIC_ROOT}/+/alerts/#")),
    # the API (and the operator's `enmon gateway command`) may send signed device commands
    "api": (("read", f"{TOPIC_ROOT}/#"), ("write", f"{TOPIC_ROOT}/+/+/command")),
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
    """A service identity: ``ingest`` or one of its replicas ``ingest-1`` (same permissions)."""
    if name in SERVICES:
        return Principal(username=name, service=name)
    m = _REPLICA.fullmatch(name)
    if m is None or m["service"] not in SERVICES:
        raise CredentialsError(
            f"service {name!r} is not one of {sorted(SERVICES)} or a replica of one "
            "(e.g. ingest-2: the service, a dash, up to 40 letters, digits, _ or -)")
    return Principal(username=name, service=m["service"])


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
