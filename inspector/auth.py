"""Bearer tokens with roles: inspectors read, facility managers may also acknowledge,
operators may also send device commands.

The config file holds only the SHA-256 of each token (``enmon api token`` makes a
token and prints the line to paste), so a leaked config or repository grants
nothing, and the token itself is shown once and never logged. Comparison is in
constant time. Nobody is anonymous: every data endpoint needs a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Role = Literal["inspector", "facility_manager", "data_clerk", "operator"]
# what each role may do; a facility manager can do everything an inspector can. Inspectors
# audit the figures, so they do not enter readings; a data clerk (抄表员) reads and enters
# manual readings and corrections, each recorded under the token's name. Writing to a
# device (a set-point, a meter's demand period) is control, not supervision: only an
# operator (运行操作员) may, and no other role is granted it — an unknown role, or one
# added later without "control", may not (fail closed)
PERMISSIONS: dict[str, frozenset[str]] = {
    "inspector": frozenset({"read"}),
    "facility_manager": frozenset({"read", "ack", "enter"}),
    "data_clerk": frozenset({"read", "enter"}),
    "operator": frozenset({"read", "control"}),
}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "enm_" + secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str

    def may(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, frozenset())


class TokenBook:
    """Looks a presented token up among the configured hashes."""

    def __init__(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """``entries``: (name, role, sha256 hex of the token)."""
        self._entries = [(n, r, h.lower()) for n, r, h in entries]

    def who(self, token: str | None) -> Principal | None:
        if not token:
            return None
        digest = token_hash(token)
        found = None
        for name, role, h in self._entries:  # no early exit: time does not depend on position
            if hmac.compare_digest(digest, h):
                found = Principal(name, role)
        return found
