"""Roll-ups follow what was stored, not the wall clock.

Real mosquitto, a real ingest worker and a real influxd: a gateway that was offline for
ten hours replays its disk queue, and a batch from last month arrives late. Every hour,
site-day and month those readings touch must be recomputed — by a rule engine that was
restarted in between — and equal the consumption computed from the raw counters.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from energy.site import Site
from enmon.influx import InfluxConfig
from enmon.localrun import InfluxDB1, Mosquitto
from enmon.wire import Batch, DeviceMeta, Sample, encode_batch
from tests.conftest import INFLUX_DB
from tests.ingest.conftest import Publisher, ThreadWorker, mqtt_cfg, topic
from tests.support import influx_rows, rules_pass, wait_until

SITE_ID = "site-a"
SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 20, tzinfo=SH)
STEP = timedelta(minutes=15)
MAIN_PER_STEP, HVAC_PER_STEP = 10.0, 5.0  # kWh per 15 min
SITE = Site.model_validate({
    "site": SITE_ID, "timezone": "Asia/Shanghai",
    "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
        {"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
         "category": "01000", "building_total": True, "poll_interval_s": 900},
        {"id": "hvac", "gateway": "gw-02", "device": "hvac", "energy_type": "electricity",
         "category": "01B00", "poll_interval_s": 900}]}]})


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def counter(device: str, t: datetime) -> float:
    per = MAIN_PER_STEP if device == "main" else HVAC_PER_STEP
    return 1000.0 + per * ((t - DAY) / STEP)


class Gateway:
    """Publishes counter readings as a gateway does: batches with a seq per gateway."""

    def __init__(self, pub: Publisher, gw: str, device: str) -> None:
        self.pub, self.gw, self.device, self.seq = pub, gw, device, 0

    def send(self, readings: list[tuple[datetime, float]], per_batch: int = 8) -> None:
        items = []
        for i in range(0, len(readings), per_batch):
            part = readings[i:i + per_batch]
            self.seq += 1
            items.append((topic(self.gw), encode_batch(Batch(
                site=SITE_ID, gateway=self.gw, seq=self.seq, sent_at=int(time.time() * 1000),
                devices={self.device: DeviceMeta("b1", "01000", "electricity", "test")},
                samples=[Sample(self.device, ms(t), {"active_energy_import_kwh": v})
                         for t, v in part]))))
        self.pub.publish_all(items)


def steps(start: datetime, end: datetime) -> list[datetime]:
    out, t = [], start
    while t <= end:
        out.append(t)
        t += STEP
    return out


def stored(influx: InfluxDB1, device: str) -> int:
    rows = influx_rows(influx.url, INFLUX_DB, "SELECT count(active_energy_import_kwh) AS n "
                       f"FROM meter WHERE device = '{device}'")
    return int(rows[0]["n"]) if rows else 0


def figures(influx: InfluxDB1, meas: str, meter: str) -> dict[int, float]:
    return {int(r["time"]): r["amount"] for r in influx_rows(
        influx.url, INFLUX_DB, f"SELECT amount FROM {meas} WHERE meter = '{meter}'")}


async def one_pass(influx: InfluxDB1, now: int) -> None:
    """A rule engine process's pass: a new Scheduler each time, as after a restart."""
    await rules_pass(influx.url, INFLUX_DB, [SITE], now)


async def test_replayed_and_late_readings_reach_every_rollup(
        mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    pub = Publisher(mosquitto)
    gw1, gw2 = Gateway(pub, "gw-01", "main"), Gateway(pub, "gw-02", "hvac")
    end = DAY + timedelta(days=1)
    try:
        with ThreadWorker(mqtt_cfg(mosquitto), InfluxConfig(url=influxdb.url,
                                                            database=INFLUX_DB)):
            # 1. gw-01 goes offline at 08:00; gw-02 reports the whole day
            early = steps(DAY, DAY + timedelta(hours=8))
            gw1.send([(t, counter("main", t)) for t in early])
            gw2.send([(t, counter("hvac", t)) for t in steps(DAY, end)])
            wait_until(lambda: stored(influxdb, "main") == len(early)
                       and stored(influxdb, "hvac") == 97, 30, "first readings stored")
            await one_pass(influxdb, ms(end))
            assert sum(figures(influxdb, "energy_hourly", "main").values()) == 8 * 40.0

            # 2. ten hours later gw-01 is back and replays its disk queue, then runs live
            rest = steps(DAY + timedelta(hours=8, minutes=15), end)
            gw1.send([(t, counter("main", t)) for t in rest])
            # 3. and a batch from October arrives late (a gateway's clock-fixed backlog)
            oct_a, oct_b = datetime(2026, 10, 5, 12, tzinfo=SH), datetime(2026, 10, 5, 13,
                                                                          tzinfo=SH)
            gw1.send([(oct_a, 100.0), (oct_b, 140.0)])
            wait_until(lambda: stored(influxdb, "main") == len(early) + len(rest) + 2, 30,
                       "replayed and late readings stored")
            await one_pass(influxdb, ms(end))  # a restarted rule engine: state from the DB
    finally:
        pub.close()

    hourly = figures(influxdb, "energy_hourly", "main")
    day_hours = {ms(DAY + timedelta(hours=h)): 40.0 for h in range(24)}
    assert {k: v for k, v in hourly.items() if ms(DAY) <= k < ms(end)} == day_hours

    # the 1000 − 140 kWh between 13:00 on 5 Oct and 00:00 on 20 Nov is spread over that
    # time (a counter cannot say when it was used): October's share by elapsed time
    nov1 = datetime(2026, 11, 1, tzinfo=SH)
    span = ms(DAY) - ms(oct_b)
    oct_share = 860.0 * (ms(nov1) - ms(oct_b)) / span
    daily = figures(influxdb, "energy_daily", "main")
    assert daily[ms(DAY)] == 960.0
    assert abs(daily[ms(datetime(2026, 10, 5, tzinfo=SH))]
               - (40.0 + 860.0 * (ms(datetime(2026, 10, 6, tzinfo=SH)) - ms(oct_b)) / span)
               ) < 1e-6
    monthly = figures(influxdb, "energy_monthly", "main")
    assert abs(monthly[ms(datetime(2026, 10, 1, tzinfo=SH))] - (40.0 + oct_share)) < 1e-6
    assert abs(monthly[ms(nov1)] - (960.0 + 860.0 - oct_share)) < 1e-6
    assert figures(influxdb, "energy_daily", "hvac")[ms(DAY)] == 480.0
    # every day in between got its share, and the days add up to the months
    assert abs(sum(daily.values()) - (40.0 + 860.0 + 960.0)) < 1e-6
