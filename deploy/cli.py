"""``enmon deploy …``: what an operator runs to put enmon on real machines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.credentials import make_credentials
from deploy.health import connected_to
from deploy.identity import SERVICES, parse_gateway_arg, service_principal
from enmon.errors import EnmonError

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
