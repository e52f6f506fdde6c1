"""HMAC-SHA256 request signature (pure: no I/O, no clock; the caller passes time and nonce).

The canonical form is six lines joined by ``\\n`` (no trailing newline)::

    ENMON-HMAC-SHA256
    POST                      the HTTP method, upper case
    /api/v1/records           the request path as sent (with ``?query`` if any)
    1764700000                X-Enmon-Timestamp: Unix seconds
    3f2a…(32 hex)             X-Enmon-Nonce: 128 random bits, never reused
    e3b0…(64 hex)             X-Enmon-Content-SHA256: SHA-256 of the body bytes

``X-Enmon-Signature`` is the lower-case hex HMAC-SHA256 of that text under the shared
secret; ``X-Enmon-Key-Id`` names which secret. Signing the body's hash (not a re-encoded
body) means a platform verifies the exact bytes it received, whatever its JSON library.
"""

from __future__ import annotations

import hashlib
import hmac

ALGORITHM = "ENMON-HMAC-SHA256"
H_KEY = "X-Enmon-Key-Id"
H_TIMESTAMP = "X-Enmon-Timestamp"
H_NONCE = "X-Enmon-Nonce"
H_CONTENT = "X-Enmon-Content-SHA256"
H_SIGNATURE = "X-Enmon-Signature"


def canonical(method: str, path: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    """The text that is signed (see the module docstring)."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((ALGORITHM, method.upper(), path, str(timestamp), nonce, digest)).encode()


def signature(secret: bytes, method: str, path: str, timestamp: int, nonce: str,
              body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the canonical form."""
    return hmac.new(secret, canonical(method, path, timestamp, nonce, body),
                    hashlib.sha256).hexdigest()


def sign_headers(secret: bytes, key_id: str, method: str, path: str, timestamp: int,
                 nonce: str, body: bytes) -> dict[str, str]:
    """The five headers a signed request carries."""
    return {
        H_KEY: key_id,
        H_TIMESTAMP: str(timestamp),
        H_NONCE: nonce,
        H_CONTENT: hashlib.sha256(body).hexdigest(),
        H_SIGNATURE: signature(secret, method, path, timestamp, nonce, body),
    }
