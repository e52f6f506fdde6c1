"""The live demo campus answers for its water meters and outdoor-air sensor on the wire.

An independent Modbus master (pymodbus) reads the registers the profiles name, the way
a deployer's ``modpoll`` would: the admin water meter as unit 6 of the admin RS-485
line (Modbus RTU behind a serial server), the hospital water meter and the weather
station on their own Modbus TCP ports. Decoded with the profile, the registers carry
what the simulator measures, to the register's resolution (whole m³, L/h, 0.1 °C).
"""

from __future__ import annotations

import time

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType

from firmware_sim.campus import CampusSim, load_campus
from firmware_sim.campus_live import LiveCampus
from gateway.profile import Field_, ModbusProfile, load_profile, to_canonical


async def _read(host: str, port: int, unit: int, fields: list[Field_], *, rtu: bool
                ) -> dict[str, float]:
    client = AsyncModbusTcpClient(host, port=port, timeout=5, retries=1,
                                  framer=FramerType.RTU if rtu else FramerType.SOCKET)
    await client.connect()
    try:
        start = min(f.address for f in fields)
        count = max(f.address + f.words for f in fields) - start
        rr = await client.read_holding_registers(start, count=count, device_id=unit)
        assert not rr.isError(), rr
        regs = list(rr.registers)
        return {f.quantity: to_canonical(f, regs[f.address - start:f.address - start + f.words])
                for f in fields}
    finally:
        client.close()


@pytest.mark.timeout(120)
async def test_water_meters_and_weather_station_are_served_with_their_register_maps() -> None:
    sim = CampusSim(load_campus(), start=time.time())
    water = load_profile("dynaflox-ultrad")
    air = load_profile("greystone-ntdamod")
    assert isinstance(water, ModbusProfile) and isinstance(air, ModbusProfile)
    async with LiveCampus(sim) as live:
        t = live.transports
        assert t["admin-water"]["type"] == "rtu_over_tcp"
        assert t["admin-water"] == t["admin-main"]  # one serial server for the whole line
        assert t["hosp-water"]["type"] == "tcp" and t["campus-weather"]["type"] == "tcp"
        got = {
            "admin-water": await _read(str(t["admin-water"]["host"]),
                                       int(str(t["admin-water"]["port"])), 6,
                                       water.fields(), rtu=True),
            "hosp-water": await _read(str(t["hosp-water"]["host"]),
                                      int(str(t["hosp-water"]["port"])), 8,
                                      water.fields(), rtu=False),
            "campus-weather": await _read(str(t["campus-weather"]["host"]),
                                          int(str(t["campus-weather"]["port"])), 9,
                                          air.fields(), rtu=False),
        }
        with live._lock:
            now = {d: sim.reading(d) for d in got}
    for dev in ("admin-water", "hosp-water"):
        v, f = got[dev]["water_volume_m3"], got[dev]["water_flow_m3_h"]
        assert v == int(v) and abs(v - now[dev]["water_volume_m3"]) <= 1.0, (dev, v)
        assert v > 100  # a seeded meter index, not an empty register
        assert f == pytest.approx(now[dev]["water_flow_m3_h"], abs=0.05), dev
    w = got["campus-weather"]
    assert w["outdoor_temp_c"] == pytest.approx(now["campus-weather"]["outdoor_temp_c"], abs=0.2)
    assert w["relative_humidity_pct"] == pytest.approx(
        now["campus-weather"]["relative_humidity_pct"], abs=0.2)
