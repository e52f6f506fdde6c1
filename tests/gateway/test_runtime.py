"""The runtime's poll → validate → batch path over real pty buses (no broker needed).

Counter faults come from the simulated meter itself (firmware_sim fault injection):
a DL/T 645 energy register (XXXXXX.XX, 4 BCD bytes) that wraps after 999 999.99 kWh,
then a swapped meter that starts again near zero. Both must arrive flagged, never as a
negative or huge step.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from enmon import wire
from firmware_sim.dlt645_meter import Dlt645Server, Meter
from firmware_sim.faults import CounterFaults, Faults
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import library
from gateway.agent import Gateway
from gateway.config import GatewayConfig, load_config
from gateway.validation import RESET, ROLLOVER

SAMPLE = Path(__file__).resolve().parents[2] / "gateway" / "sample.yaml"


def test_sample_config_is_valid() -> None:
    cfg = load_config(SAMPLE)
    assert {d.transport.type for d in cfg.devices} == {"tcp", "serial", "rtu_over_tcp"}


async def test_rollover_and_meter_swap_are_flagged(tmp_path: Path) -> None:
    cap = 1_000_000.0  # XXXXXX.XX wraps from 999999.99 to 0
    true_kwh = itertools.count(start=0, step=40.0)
    fault = CounterFaults(capacity=cap, offset=cap - 100.0)  # 100 kWh before the wrap

    def reading() -> dict[str, float]:
        return {"active_energy_import_kwh": fault.apply(next(true_kwh))}

    dlt = library.load("chint-dtsu666-dlt645")
    sdm = library.load("eastron-sdm120")
    meter = Dlt645Server({"000000000009": Meter(dlt, reading)}).start()  # type: ignore[arg-type]
    dead = ModbusSlaveServer({1: Unit(sdm, {}, Faults(dead=True))}).start()  # type: ignore[arg-type]
    try:
        cfg = GatewayConfig.model_validate({
            "site": "s", "gateway": "g", "state_dir": str(tmp_path),
            "devices": [
                {"name": "e", "profile": "chint-dtsu666-dlt645", "address": "000000000009",
                 "quantities": ["active_energy_import_kwh"],
                 "counters": {"active_energy_import_kwh": {"capacity": cap}},
                 "transport": {"type": "serial", "port": meter.device, "timeout_s": 0.3}},
                {"name": "gone", "profile": "eastron-sdm120",
                 "transport": {"type": "serial", "port": dead.device, "timeout_s": 0.1}},
            ]})
        gw = Gateway(cfg)
        samples: list[wire.Sample] = []
        for _ in range(5):
            samples += await gw.poll_once()
        # the meter is swapped: from the next reading on a new one counts from 0.5 kWh
        fault.replaced_at, fault.replacement_start = fault.offset + 200.0, 0.5
        samples += await gw.poll_once()
        h = gw.health()
        for b in gw.buses:
            await b.close()
        gw.queue.close()
    finally:
        meter.stop()
        dead.stop()
    assert {s.device for s in samples} == {"e"}  # the dead meter yields no sample at all
    values = [s.values["active_energy_import_kwh"] for s in samples]
    flags = [s.flags.get("active_energy_import_kwh") for s in samples]
    assert values[:3] == [999_900.0, 999_940.0, 999_980.0]
    assert flags[:3] == [None, None, None]
    assert flags[3] == ROLLOVER and values[3] < 100  # wrapped: flagged, never negative
    assert flags[4] is None and values[4] > values[3]  # then ordinary consumption again
    assert flags[5] == RESET and values[5] < values[4]  # meter swap
    assert h["flags"] == {ROLLOVER: 1, RESET: 1}
    assert h["devices"]["gone"]["timeouts"] >= 1 and h["devices"]["gone"]["ok"] == 0


def test_seq_continues_after_the_legacy_seq_file(tmp_path: Path) -> None:
    (tmp_path / "seq").write_text("41")  # what a gateway without a disk queue left behind
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{"name": "m", "profile": "eastron-sdm630",
                     "transport": {"type": "tcp", "host": "127.0.0.1"}}]})
    gw = Gateway(cfg)
    assert gw.enqueue([wire.Sample("m", 1_763_726_400_000, {"voltage_l1_v": 230.0})]) == 42
    gw.queue.close()
