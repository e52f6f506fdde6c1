"""Run the real servers enmon talks to — mosquitto, influxd, victoria-metrics — on
free loopback ports, each in its own directory.

Used by ``enmon demo`` and by the test fixtures, so the demo and the tests start
the servers the same way. Nothing here is a mock: these are the Debian packages'
binaries. Each server can be stopped (SIGTERM), killed (SIGKILL) and started again
on the same port and data directory, which is what fault-injection tests need.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from enmon.errors import ServiceError

log = logging.getLogger("enmon.localrun")

# Debian package that provides each binary, for the install hint.
PACKAGES = {"mosquitto": "mosquitto", "influxd": "influxdb", "victoria-metrics": "victoria-metrics"}
_SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin"


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it).

    The OS may offer a port again as soon as its probe socket is closed, so two servers
    set up one after the other (influxd's HTTP and RPC ports, say) could be handed the
    same number; ports this process already handed out are never offered twice.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise ServiceError("no free TCP port found in 100 tries")


def find_binary(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def install_hint(*names: str) -> str:
    pkgs = " ".join(sorted({PACKAGES[n] for n in names}))
    return f"apt-get update && apt-get install -y {pkgs}"


def ensure_installed(names: list[str], *, may_install: bool) -> None:
    """Install the Debian packages for missing binaries when allowed, else say how."""
    missing = [n for n in names if find_binary(n) is None]
    if not missing:
        return
    cmd = install_hint(*missing)
    if not may_install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(f"missing {', '.join(missing)}; install with:  sudo {cmd}")
    log.info("event=install packages=%s", ",".join(PACKAGES[n] for n in missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # policy-rc.d keeps the packages' own services from starting on the default ports
    rc = subprocess.run(
        ["sh", "-c", cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if rc.returncode != 0 or any(find_binary(n) is None for n in missing):
        raise ServiceError(f"could not install {missing}: {rc.stderr.decode()[-400:]}")


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except ServiceError:
            raise  # the check itself says waiting is pointless (the process died)
        except Exception:  # not ready yet: connection refused, HTTP error, ...
            pass
        time.sleep(interval)
    raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")


def _tcp_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as r:
        return bool(200 <= r.status < 300)


@dataclass(kw_only=True)
class Server:
    """One server process with a fixed port and data dir across restarts."""

    name: str
    workdir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    # subclasses fill these
    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ready(self) -> bool:
        return _tcp_open(self.host, self.port)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = self.command()[0]
        if find_binary(binary) is None:
            raise ServiceError(f"{binary} not found; install with:  sudo {install_hint(binary)}")
        logf = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the servers directly
        )
        logf.close()
        try:
            wait_for(
                lambda: self._alive_or_raise() and self.ready(),
                timeout,
                f"{self.name} on port {self.port}",
            )
        except ServiceError:
            self.kill()
            raise
        log.info("event=started server=%s port=%d pid=%d", self.name, self.port, self.proc.pid)

    def _alive_or_raise(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-800:]
            raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
        return True

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        log.info("event=stopped server=%s port=%d", self.name, self.port)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: what a power cut or OOM does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@dataclass(kw_only=True)
class Mosquitto(Server):
    name: str = "mosquitto"
    extra_conf: str = ""

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        persist = self.workdir / "persist"
        persist.mkdir(parents=True, exist_ok=True)
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"{user}"
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {persist}/\n"
            # a persistent ingest session must be able to hold an InfluxDB outage's worth
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{self.extra_conf}"
        )
        return ["mosquitto", "-c", str(conf)]


@dataclass(kw_only=True)
class InfluxDB1(Server):
    """Debian's influxdb 1.6 (v1 API only)."""

    name: str = "influxd"
    rpc_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
            return bool(r.status == 204)

    def command(self) -> list[str]:
        conf = self.workdir / "influxdb.conf"
        d = self.workdir
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            '  wal-fsync-delay = "0s"\n'
            f'[http]\n  bind-address = "{self.host}:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )
        return ["influxd", "-config", str(conf)]


@dataclass(kw_only=True)
class VictoriaMetrics(Server):
    """A real server that implements InfluxDB's ``/api/v2/write`` (for the v2 write path)."""

    name: str = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/health")

    def command(self) -> list[str]:
        return [
            "victoria-metrics",
            f"-storageDataPath={self.workdir}/data",
            f"-httpListenAddr={self.host}:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=ERROR",
        ]


@dataclass(kw_only=True)
class Part:
    """One enmon process (``python -m enmon ARGS``) with its log in ``workdir``.

    ``stop()`` is a clean shutdown (SIGTERM: the part flushes and says goodbye);
    ``kill()`` is SIGKILL, for crash tests.
    """

    name: str
    args: list[str]
    workdir: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        import sys

        self.workdir.mkdir(parents=True, exist_ok=True)
        logf = self.log_path.open("ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "enmon", *self.args],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        logf.close()
        log.info("event=started part=%s pid=%d", self.name, self.proc.pid)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("event=part_kill part=%s reason=no_exit_after_sigterm", self.name)
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""
