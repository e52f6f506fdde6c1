"""A local stand-in for a provincial online monitoring platform (重点用能单位在线监测平台).

Real parts, not a mock: an HTTPS server (stdlib ``http.server`` in a thread) on a free
loopback port, with a self-signed certificate made in a temp dir, that checks the
HMAC-SHA256 signature *independently of the product's code* (its own implementation of
the canonical form in ``upload/README.md``), stores records by record id and revision,
and answers like a platform would. Use it from any test::

    from tests.upload.platform import Platform

    with Platform(tmp_path) as p:                 # started; stopped at the end
        cfg = p.config(outbox=tmp_path / "ob.sqlite")   # a dict for upload.config
        ...
        p.wait_for(lambda: len(p.records) == 3, what="3 records")
        assert p.records["U1:day:2026-11-03"].keys() == {1, 2}

API (all thread-safe):

- ``Platform(workdir, *, secret=b"…", key_id="unit-test", path="/api/v1/records",
  delay_s=0.0, max_skew_s=300)``; ``start()``, ``stop()`` (the port closes: connections
  are refused), ``start()`` again binds the *same* port; ``running``; context manager.
- ``url``, ``ca_file`` (the cert to trust), ``secret_file`` (mode 0600), ``key_id``,
  ``config(outbox=…, **overrides) -> dict`` (a valid upload config mapping).
- ``records``: ``{record_id: {revision: Accepted}}`` — what was accepted, once each;
  ``log``: every request as ``Request(record_id, revision, status, outcome)``, where
  outcome is ``"new"``, ``"update"``, ``"duplicate"`` or the refusal's error code.
- ``refuse(record_id=None, *, status=422, error="malformed_document", message="…",
  times=None)``: refuse that record (or every record when None) with that status;
  ``times`` = how many times (None: until ``clear_refusals()``). 422/409/400 are
  permanent to the client, 503/429 retryable.
- ``known_units``: None (any) or a set of unit codes; others get 422 ``unknown_unit``.
- ``hold(record_id) -> threading.Event``: the next request for that record is accepted
  and stored, then its response waits until the event is set (``stop()`` sets it) —
  the "platform has it, the client has no receipt yet" moment for crash tests.
- ``delay_s``: sleep before each answer (to catch a sender mid-run).
- ``wait_for(predicate, timeout=20, what=…)``: poll ``predicate()`` until true or fail.

Platform semantics: a record id is the key; a revision greater than the stored one is
accepted (``op`` "create" for revision 1, "update" after); the same revision with the
same body is a duplicate (200, the original receipt, ``duplicate: true``); the same
revision with a different body is 409 ``revision_conflict``; a lower one 409
``stale_revision``. A bad signature, unknown key, skewed clock, body hash mismatch or
replayed nonce is 401.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Accepted:
    record_id: str
    revision: int
    op: str
    document: dict[str, Any]
    body_sha256: str
    receipt_id: str
    received_at: str


@dataclass(frozen=True)
class Request:
    record_id: str | None
    revision: int | None
    status: int
    outcome: str


@dataclass
class _Refusal:
    record_id: str | None
    status: int
    error: str
    message: str
    times: int | None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: dict[str, dict[int, Accepted]] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    nonces: dict[str, float] = field(default_factory=dict)
    refusals: list[_Refusal] = field(default_factory=list)
    holds: dict[str, threading.Event] = field(default_factory=dict)
    receipts: int = 0


def make_cert(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also its own CA) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = workdir / "platform-cert.pem", workdir / "platform-key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def expected_signature(secret: bytes, method: str, path: str, timestamp: str, nonce: str,
                       body: bytes) -> str:
    """The platform's own reading of the README's canonical form."""
    text = (f"ENMON-HMAC-SHA256\n{method}\n{path}\n{timestamp}\n{nonce}\n"
            f"{hashlib.sha256(body).hexdigest()}")
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    platform: Platform

    def finish_request(self, request: Any, client_address: Any) -> None:
        # the TLS handshake runs in the connection's own thread, not the accept loop
        request.settimeout(10)
        try:
            tls = self.platform._ssl.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (or is killed) is not a test failure


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: stop() really disconnects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any], rid: str | None, rev: int | None,
                outcome: str) -> None:
        p = self.server.platform
        with p._state.lock:
            p._state.log.append(Request(rid, rev, status, outcome))
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        p = self.server.platform
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        if p.delay_s:
            time.sleep(p.delay_s)
        if self.path != p.path:
            self._answer(404, {"error": "not_found"}, None, None, "not_found")
            return
        why = p._auth_problem(self.headers, self.path, body)
        if why:
            self._answer(401, {"error": "bad_signature", "message": why}, None, None,
                         "bad_signature")
            return
        try:
            env = json.loads(body)
            rid, rev, doc = str(env["record_id"]), int(env["revision"]), dict(env["document"])
            op = str(env["op"])
            unit = doc["unit"]["code"]
        except (ValueError, KeyError, TypeError) as exc:
            self._answer(422, {"error": "malformed_document", "message": repr(exc)}, None,
                         None, "malformed_document")
            return
        status, answer, outcome, held = p._decide(rid, rev, op, unit, doc, body)
        if held is not None:  # stored; the client hears nothing until released
            held.wait(timeout=60)
        self._answer(status, answer, rid, rev, outcome)


class Platform:
    """See the module docstring for the API."""

    def __init__(self, workdir: Path, *, secret: bytes = b"test-platform-secret-0123456789",
                 key_id: str = "unit-test", path: str = "/api/v1/records",
                 delay_s: float = 0.0, max_skew_s: float = 300.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.secret, self.key_id, self.path = secret, key_id, path
        self.delay_s, self.max_skew_s = delay_s, max_skew_s
        self.known_units: set[str] | None = None
        self.ca_file, key_file = make_cert(self.workdir)
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(self.ca_file, key_file)
        self.secret_file = self.workdir / "platform-secret"
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret + b"\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"https://127.0.0.1:{self.port}{path}"
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> Platform:
        if self._server is not None:
            return self
        deadline = time.monotonic() + 10
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.platform = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"platform-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the platform down: the listening port closes; held answers are released."""
        with self._state.lock:
            for ev in self._state.holds.values():
                ev.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> Platform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- test controls

    def config(self, *, outbox: Path | str, **overrides: Any) -> dict[str, Any]:
        """An upload config mapping that reaches this platform (fast backoff for tests)."""
        cfg: dict[str, Any] = {
            "outbox": str(outbox), "transport": "https_json", "endpoint": self.url,
            "ca_file": str(self.ca_file), "key_id": self.key_id,
            "secret_file": str(self.secret_file), "timeout_s": 5.0, "poll_s": 0.2,
            "backoff": {"base_s": 0.05, "max_s": 0.5},
        }
        cfg.update(overrides)
        return cfg

    def refuse(self, record_id: str | None = None, *, status: int = 422,
               error: str = "malformed_document", message: str = "refused by the test",
               times: int | None = None) -> None:
        with self._state.lock:
            self._state.refusals.append(_Refusal(record_id, status, error, message, times))

    def clear_refusals(self) -> None:
        with self._state.lock:
            self._state.refusals.clear()

    def hold(self, record_id: str) -> threading.Event:
        ev = threading.Event()
        with self._state.lock:
            self._state.holds[record_id] = ev
        return ev

    @property
    def records(self) -> dict[str, dict[int, Accepted]]:
        with self._state.lock:
            return {k: dict(v) for k, v in self._state.records.items()}

    @property
    def log(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.log)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0,
                 what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"platform: timed out after {timeout}s waiting for {what}; "
                             f"log tail: {self.log[-5:]}")

    # -------------------------------------------------------------- the platform's rules

    def _auth_problem(self, headers: Any, path: str, body: bytes) -> str:
        h = {k.lower(): v for k, v in headers.items()}
        try:
            key, ts, nonce = (h["x-enmon-key-id"], h["x-enmon-timestamp"],
                              h["x-enmon-nonce"])
            content, sig = h["x-enmon-content-sha256"], h["x-enmon-signature"]
        except KeyError as exc:
            return f"missing header {exc.args[0]}"
        if key != self.key_id:
            return f"unknown key id {key!r}"
        if not ts.isdigit() or abs(time.time() - int(ts)) > self.max_skew_s:
            return "timestamp outside the allowed window"
        if content != hashlib.sha256(body).hexdigest():
            return "body does not match X-Enmon-Content-SHA256"
        good = expected_signature(self.secret, "POST", path, ts, nonce, body)
        if not hmac.compare_digest(good, sig):
            return "signature mismatch"
        with self._state.lock:
            now = time.time()
            for n, t in list(self._state.nonces.items()):
                if now - t > 2 * self.max_skew_s:
                    del self._state.nonces[n]
            if nonce in self._state.nonces:
                return "nonce replayed"
            self._state.nonces[nonce] = now
        return ""

    def _decide(self, rid: str, rev: int, op: str, unit: str, doc: dict[str, Any],
                body: bytes) -> tuple[int, dict[str, Any], str, threading.Event | None]:
        st = self._state
        with st.lock:
            for r in st.refusals:
                if r.record_id in (None, rid) and (r.times is None or r.times > 0):
                    if r.times is not None:
                        r.times -= 1
                    return r.status, {"error": r.error, "message": r.message}, r.error, None
            if self.known_units is not None and unit not in self.known_units:
                return 422, {"error": "unknown_unit",
                             "message": f"unit {unit} is not registered"}, "unknown_unit", None
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
            revs = st.records.setdefault(rid, {})
            if rev in revs:
                prior = revs[rev]
                if prior.body_sha256 != digest:
                    return 409, {"error": "revision_conflict",
                                 "message": f"revision {rev} already holds other content"
                                 }, "revision_conflict", None
                return 200, {"receipt_id": prior.receipt_id, "received_at": prior.received_at,
                             "duplicate": True}, "duplicate", None
            if revs and rev < max(revs):
                return 409, {"error": "stale_revision",
                             "message": f"have revision {max(revs)}"}, "stale_revision", None
            expected_op = "create" if rev == 1 else "update"
            if op != expected_op:
                return 422, {"error": "malformed_document",
                             "message": f"op {op!r} for revision {rev}"}, "bad_op", None
            outcome = "update" if revs else "new"
            st.receipts += 1
            acc = Accepted(rid, rev, op, doc, digest, f"R{st.receipts:06d}",
                           datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
            revs[rev] = acc
            held = st.holds.pop(rid, None)
        return 200, {"receipt_id": acc.receipt_id, "received_at": acc.received_at,
                     "duplicate": False}, outcome, held
