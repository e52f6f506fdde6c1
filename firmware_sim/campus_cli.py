"""``enmon sim campus|history|scale|scenarios|site-file``: the simulated campus from the shell.

Registered on ``enmon sim`` by :func:`register`; heavy imports happen inside the
commands so ``enmon --help`` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from firmware_sim.campus.sim import CampusSim

CAMPUS = typer.Option(None, "--campus", help="campus YAML (default: the shipped demo campus)")
SCENARIO = typer.Option([], "--scenario", "-s",
                        help="a scenario name from `enmon sim scenarios` or a YAML path; "
                             "repeatable")


def _broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter("write HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def _setup(campus: Path | None, scenario: list[str], seed: int | None, start: float | None,
           run_start: float) -> CampusSim:
    """The campus simulator; ``start`` None means 1 January of this year (local time)."""
    from firmware_sim.campus import CampusSim, load_campus, load_scenario, year_start

    model = load_campus(campus)
    if start is None:
        start = year_start(run_start, model.timezone_hours)
    return CampusSim(model, start=start, run_start=run_start,
                     scenarios=[load_scenario(s) for s in scenario], seed=seed)


def scenarios() -> None:
    """List the shipped scenarios: what goes wrong and which alert must follow."""
    from firmware_sim.campus.scenario import library, load_scenario

    for name in library():
        sc = load_scenario(name)
        expect = ", ".join(f"{e.alert} on {e.target}" for e in sc.expect)
        typer.echo(f"{name:22} {sc.description.strip()}\n{'':22} expect: {expect}")


def site_file(campus: Path | None = CAMPUS,
              out: Path = typer.Option(None, "-o", "--out", help="write here (default: stdout)")
              ) -> None:
    """Print the rule engine's site file for a campus (buildings, meters, quotas, boilers)."""
    import yaml

    from firmware_sim.campus import load_campus
    from firmware_sim.campus.sitefile import site_file as make

    text = yaml.safe_dump(make(load_campus(campus)), sort_keys=False, allow_unicode=True)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)


def history(
    state_dir: Path = typer.Option(..., "--state-dir",
                                   help="root of the gateways' state dirs (one per gateway)"),
    campus: Path | None = CAMPUS,
    scenario: list[str] = SCENARIO,
    days: float = typer.Option(0, "--days", help="history length in days (0: since 1 January)"),
    interval: str = typer.Option("1h", "--interval", help="reading interval, e.g. 15m, 1h"),
    dense_days: float = typer.Option(2.0, "--dense-days",
                                     help="the last N days at 15-minute resolution"),
    lean: bool = typer.Option(True, "--lean/--full",
                              help="counters and headline gauges only, or every quantity"),
    replay: str = typer.Option(None, "--replay", help="HOST:PORT: forward the queues to this "
                               "broker now (else start `enmon gateway run` on the state dirs)"),
    seed: int = typer.Option(None, "--seed", help="override the campus seed"),
) -> None:
    """Generate a year-to-date of readings into each gateway's disk queue.

    The queues are the gateways' own (``STATE_DIR/<gateway>/queue.db``): a gateway
    started on that state dir replays the history before its first live poll, with
    its own seq numbers, exactly as after a long outage.
    """
    from firmware_sim.campus.config import parse_duration
    from firmware_sim.campus_live import served_quantities
    from firmware_sim.history import energy_quantities, fill_queues
    from firmware_sim.history import replay as do_replay

    now = time.time()
    sim = _setup(campus, scenario, seed, now - days * 86_400 if days else None, now)
    q = energy_quantities(sim, served_quantities(sim)) if lean else served_quantities(sim)
    st = fill_queues(sim, state_dir, until=now, interval_s=parse_duration(interval),
                     dense_from=now - dense_days * 86_400 if dense_days else None,
                     quantities=q, max_samples=1000 if lean else 200)
    typer.echo(f"{st.samples:,} readings ({st.values:,} values) in "
               f"{sum(st.batches.values())} batches, {st.bytes / 1e6:.1f} MB, "
               f"{st.seconds:.1f} s → {state_dir}/<gateway>/queue.db")
    if replay:
        host, port = _broker(replay)
        acked = do_replay(state_dir, sim.model.site, sim.gateways(), host=host, port=port)
        typer.echo("replayed: " + ", ".join(f"{g} {n}" for g, n in acked.items()))


def campus_run(
    campus: Path | None = CAMPUS,
    scenario: list[str] = SCENARIO,
    broker: str = typer.Option("127.0.0.1:1883", "--broker",
                               help="the broker the gateways should reach (through a "
                                    "cuttable relay per gateway)"),
    out: Path = typer.Option(None, "--out", help="write gateway configs and the rules site "
                                                 "file for this campus here"),
    poll: float = typer.Option(10.0, "--poll", help="poll interval in the gateway configs, s"),
    duration: float = typer.Option(0, "--duration", help="stop after N s (0: until Ctrl-C)"),
    seed: int = typer.Option(None, "--seed", help="override the campus seed"),
) -> None:
    """Serve every device of a campus on real endpoints (Modbus TCP, serial line over TCP).

    With --out, writes one `enmon gateway run` config per campus gateway (pointing
    at these endpoints and at the broker through a relay that uplink-loss scenarios
    cut) and the rules site file, then keeps serving until Ctrl-C.
    """
    import asyncio
    import contextlib
    import signal

    import yaml

    from firmware_sim.campus.sitefile import gateway_configs
    from firmware_sim.campus.sitefile import site_file as make_site
    from firmware_sim.campus_live import LiveCampus

    now = time.time()
    sim = _setup(campus, scenario, seed, now, now)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with LiveCampus(sim, broker=_broker(broker)) as live:
            for dev, t in sorted(live.transports.items()):
                info = sim.devices[dev]
                typer.echo(f"{info.gateway:10} {dev:14} {info.profile:24} {t['type']}://"
                           f"{t['host']}:{t['port']} unit {info.unit_id}")
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                cfgs = gateway_configs(sim.model, transports=live.transports,
                                       mqtt={g: live.mqtt_for(g) for g in sim.gateways()},
                                       state_root=out / "state", poll_interval_s=poll,
                                       quantities=live.quantities())
                for gw, cfg in cfgs.items():
                    (out / f"{gw}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
                (out / "site.yaml").write_text(
                    yaml.safe_dump(make_site(sim.model), sort_keys=False, allow_unicode=True))
                typer.echo(f"wrote {len(cfgs)} gateway configs and site.yaml to {out}; run "
                           f"`enmon gateway run -c {out}/<gateway>.yaml`")
            typer.echo("serving (Ctrl-C stops)")
            t0 = time.monotonic()
            while not stop.is_set():
                if duration and time.monotonic() - t0 >= duration:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    asyncio.run(main())


def scale(
    broker: str = typer.Option("127.0.0.1:1883", "--broker", help="HOST:PORT"),
    gateways: int = typer.Option(100, "--gateways", help="simulated gateways (≤ 5000)"),
    meters: int = typer.Option(10, "--meters-per-gateway", help="meters behind each gateway"),
    interval: float = typer.Option(5.0, "--interval", help="seconds between a gateway's batches"),
    duration: float = typer.Option(60.0, "--duration", help="run time, s (≤ 3600)"),
    connections: int = typer.Option(20, "--connections", help="MQTT connections to spread the "
                                    "gateways over"),
    lean: bool = typer.Option(True, "--lean/--full", help="kWh and kW per reading, or an "
                              "SDM630's full set"),
    site: str = typer.Option("scale", "--site", help="site id of the simulated gateways"),
) -> None:
    """Thousands of simulated meters behind many simulated gateways, publishing batches."""
    from firmware_sim.scale import run_scale

    host, port = _broker(broker)
    st = run_scale(host=host, port=port, gateways=gateways, meters_per_gateway=meters,
                   interval_s=interval, duration_s=duration, connections=connections,
                   lean=lean, site=site)
    for k, v in st.summary().items():
        typer.echo(f"{k:22} {v}")


def register(app: typer.Typer) -> None:
    """Add the campus commands to ``enmon sim``."""
    app.command("campus")(campus_run)
    app.command("history")(history)
    app.command("scale")(scale)
    app.command("scenarios")(scenarios)
    app.command("site-file")(site_file)
