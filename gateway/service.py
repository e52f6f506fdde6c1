"""The long-running ``enmon gateway run`` process: what it loads and what it leaves out.

A Pi-class gateway runs for months in 1 GB next to the OS, and whatever it imports
stays resident. ``stack.cli.main`` hands ``enmon gateway run -c FILE`` straight to
:func:`run` with ``lean=True`` (no typer/click, no other part's CLI), and :func:`run`
keeps out of memory what the poll loop never uses (measured with
``bench/gateway_rss.py``, 32 meters):

* **OpenSSL** (``_hashlib``, ``_ssl``, ``ssl``: ~4.5 MB resident, most of it libcrypto's
  own tables) when the config has no ``mqtt.tls``. Hashes (the command HMACs) then use
  Python's built-in sha256, asyncio runs as on a Python built without ssl, and paho gets
  a stand-in for the exception classes it names in ``except`` clauses (it raises them only
  from a TLS socket, which it never opens without ``tls_set``). With ``mqtt.tls`` all of
  it loads as usual. Only modules imported while the config is read and the gateway's
  modules load see OpenSSL missing; the block is lifted before polling starts.
* **pydantic's plugin discovery** (``importlib.metadata``, ``email``, ``zipfile``): the
  gateway runs no pydantic plugins, as with ``PYDANTIC_DISABLE_PLUGINS=__all__``.
* **urllib.request** (``http.client``, ``email``): paho imports it only to look up an
  ``mqtt_proxy`` when PySocks is installed; a placeholder imports it on first use.

Besides, a gateway holds only the protocol codecs its devices use (``gateway.library``
loads a profile's module by its ``protocol:``; the drivers import their codec when built)
and the signed-command service only when ``commands.enabled``: a Modbus-only gateway has
no M-Bus, CJ/T 188, DL/T 645 or serial-line code in memory (~2.3 MB with TLS).

Config validation is the same pydantic validation with the same messages; only the
imports around it change.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

#: C modules that map and initialise OpenSSL (libcrypto, libssl), and the one that needs them
OPENSSL = ("_hashlib", "_ssl", "ssl")
#: the built-in modules that give hashlib every algorithm it always offers without OpenSSL
#: (Debian's Python has them all); each entry: alternatives (3.12 merged the sha2 modules)
BUILTIN_HASHES = (("_md5",), ("_sha1",), ("_sha2", "_sha256"), ("_sha2", "_sha512"),
                  ("_blake2",), ("_sha3",))
#: pydantic's plugin loader module, replaced by one that finds no plugins
PYDANTIC_LOADER = "pydantic.plugin._loader"


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module nobody has used yet; the first attribute
    asked for imports the real module (which takes its place) and answers from it."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)  # also sets it on the parent package
        return getattr(real, attr)


def defer(name: str) -> None:
    """Import ``name`` only when something first uses one of its attributes."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    stand_in = _Deferred(name)
    sys.modules[name] = stand_in
    if parent:
        setattr(importlib.import_module(parent), child, stand_in)


def _no_plugins() -> tuple[()]:
    return ()


def disable_pydantic_plugins() -> None:
    """No pydantic plugins in this process, and no package-metadata scan to find them."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if PYDANTIC_LOADER not in sys.modules:
        loader = types.ModuleType(PYDANTIC_LOADER, "pydantic plugins: none in the gateway")
        loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
        sys.modules[PYDANTIC_LOADER] = loader


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def hold_back_openssl() -> list[str]:
    """Make OpenSSL's modules unimportable for now; returns what to give back.

    Nothing is held back if one is already loaded or a built-in hash is missing."""
    if any(m in sys.modules for m in OPENSSL):
        return []
    if not all(any(_importable(m) for m in alternatives) for alternatives in BUILTIN_HASHES):
        return []  # hashlib would miss an algorithm (and log an error for it): keep OpenSSL
    for m in OPENSSL:
        sys.modules[m] = None  # type: ignore[assignment]
    return list(OPENSSL)


def release(held: list[str]) -> None:
    """Let those modules be imported again (by whatever needs them later)."""
    for m in held:
        if m in sys.modules and sys.modules[m] is None:
            del sys.modules[m]
    held.clear()


class _NoTLS:
    """paho's ``ssl`` on a gateway without TLS: the exceptions its socket code catches,
    never raised by a plain socket."""

    class SSLWantReadError(OSError):
        pass

    class SSLWantWriteError(OSError):
        pass

    class CertificateError(ValueError):
        pass


def run(config: Path, *, lean: bool = False) -> None:
    """Poll the configured devices until SIGTERM/SIGINT; ``lean``: load only what that needs
    (for a fresh process: ``stack.cli.main``; an interpreter that already holds the CLI and
    OpenSSL gains nothing)."""
    held: list[str] = []
    if lean:
        disable_pydantic_plugins()
        defer("urllib.request")
        held = hold_back_openssl()
    try:
        from gateway.config import load_config

        cfg = load_config(config)
        if cfg.mqtt.tls is not None:
            release(held)
        import paho.mqtt.client

        if paho.mqtt.client.ssl is None:
            paho.mqtt.client.ssl = _NoTLS
        from gateway.agent import Gateway
    finally:
        release(held)
    gw = Gateway(cfg, config_file=str(config))

    import asyncio
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await gw.run(stop)

    asyncio.run(main())
    logging.getLogger("enmon.gateway").info("event=stopped")
