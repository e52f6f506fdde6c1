"""The issue's "must show" fault tests: kill -9, InfluxDB down for 60 s, a worker lost
from a shared subscription. Real mosquitto, real influxd, real worker processes.

"Exactly once" is checked on count *and* values: every reading of the stream is
read back by its timestamp and compared with the value it was sent with.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from enmon.localrun import InfluxDB1, Mosquitto
from ingest.options import BatchConfig
from tests.conftest import INFLUX_DB
from tests.ingest.conftest import (
    ProcWorker,
    Publisher,
    Stream,
    ThreadWorker,
    count,
    expected_rows,
    influx_cfg,
    make_batch,
    mqtt_cfg,
    stored,
    stored_count,
    topic,
    write_ingest_config,
)
from tests.support import influx_rows, record_fault, wait_until

pytestmark = pytest.mark.slow

GATEWAYS = ["gw-01", "gw-02", "gw-03", "gw-04"]


def fleet(batches_per_gw: int, samples: int = 10) -> list[tuple[str, bytes]]:
    """Interleaved batches of several gateways, in seq order per gateway."""
    return [(topic(gw), make_batch(gw, s, samples))
            for s in range(batches_per_gw) for gw in GATEWAYS]


def assert_exactly_once(influxdb: InfluxDB1, batches_per_gw: int, fault: str) -> None:
    sent = kept = 0
    for gw in GATEWAYS:
        want = expected_rows(gw, range(batches_per_gw))
        got = stored(influxdb, gw)
        assert len(got) == len(want), f"{gw}: {len(got)} readings stored, {len(want)} sent"
        assert got == want, f"{gw}: stored values differ from the ones sent"
        sent, kept = sent + len(want), kept + len(got)
    # one ingest_batch point per batch: no batch counted twice either
    n = count(influxdb, "SELECT count(seq) FROM ingest_batch")
    assert n == batches_per_gw * len(GATEWAYS)
    points = stored_count(influxdb)
    record_fault(fault, sent=sent, stored=kept, lost=sent - kept, duplicated=points - kept,
                 note=f"{n} batches of {len(GATEWAYS)} gateways")


def test_kill_9_mid_stream_then_restart_stores_every_reading_once(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, publisher: Publisher) -> None:
    per_gw = 400  # 1600 batches, 16 000 readings
    total = per_gw * len(GATEWAYS) * 10
    cfg = write_ingest_config(tmp_path / "ingest.yaml", mosquitto, influxdb,
                              batch={"max_lines": 500, "max_wait_s": 0.05})
    worker = ProcWorker(cfg, "ingest-k9", tmp_path).start()
    try:
        stream = Stream(publisher, fleet(per_gw), rate_per_s=400).start()
        wait_until(lambda: stored_count(influxdb) >= total // 4, 60, "a quarter stored")
        worker.kill()  # SIGKILL: no goodbye, unacked batches stay with the broker
        at_kill = stored_count(influxdb)
        assert 0 < at_kill < total, "the kill must land mid-stream"
        stream.join()
        worker.start()
        wait_until(lambda: stored_count(influxdb) >= total, 90, "every reading after restart")
        assert_exactly_once(influxdb, per_gw, "ingest kill -9 mid-stream, restarted")
    finally:
        worker.stop()


def test_influxdb_down_60s_mid_stream_everything_arrives(
        mosquitto: Mosquitto, influxdb: InfluxDB1, publisher: Publisher) -> None:
    per_gw = 300
    total = per_gw * len(GATEWAYS) * 10
    # a small Receive Maximum so the outage's backlog (~900 messages) must wait in the broker
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-down"), influx_cfg(influxdb),
                      batch=BatchConfig(receive_maximum=200)) as w:
        # the stream lasts well past the outage: 1200 batches at 15/s ≈ 80 s
        stream = Stream(publisher, fleet(per_gw), rate_per_s=15).start()
        wait_until(lambda: stored_count(influxdb) >= 500, 60, "the stream flowing")
        influxdb.stop()
        wait_until(lambda: w.stats.write_retries > 0, 30, "the worker noticing the outage")
        acked_at_outage = w.stats.acked
        outage_end = time.monotonic() + 60  # the figure: InfluxDB away for 60 s
        max_queue = 0
        while time.monotonic() < outage_end:
            # nothing may be acknowledged while nothing can be stored ...
            assert w.stats.acked == acked_at_outage, "acked while InfluxDB was down"
            # ... and memory stays bounded: the broker stops at Receive Maximum
            max_queue = max(max_queue, w.stats.queue_depth)
            time.sleep(0.5)
        sent_during_outage = stream.sent
        influxdb.start()
        stream.join()
        wait_until(lambda: stored_count(influxdb) >= total, 120, "everything after InfluxDB")
        assert_exactly_once(influxdb, per_gw, "InfluxDB down 60 s mid-stream")
        assert w.error is None
        assert 0 < max_queue <= w.batch.receive_maximum, max_queue
        assert sent_during_outage - acked_at_outage > w.batch.receive_maximum


def test_three_workers_one_killed_every_reading_once(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, publisher: Publisher) -> None:
    per_gw = 300
    total = per_gw * len(GATEWAYS) * 10
    cfg = write_ingest_config(tmp_path / "ingest.yaml", mosquitto, influxdb,
                              batch={"max_lines": 300, "max_wait_s": 0.05})
    workers = [ProcWorker(cfg, f"ingest-{i}", tmp_path).start() for i in (1, 2, 3)]
    try:
        stream = Stream(publisher, fleet(per_gw), rate_per_s=300).start()
        wait_until(lambda: stored_count(influxdb) >= total // 4, 60, "a quarter stored")
        workers[1].kill()
        assert stored_count(influxdb) < total, "the kill must land mid-stream"
        stream.join()
        # mosquitto keeps handing the dead member its share (facts.md): its session
        # holds them until the worker with that client id comes back
        workers[1].start()
        wait_until(lambda: stored_count(influxdb) >= total, 90, "every reading")
        assert_exactly_once(influxdb, per_gw, "one of three shared-subscription workers "
                            "kill -9, restarted")
        by_worker = {r["worker"]: r["last"] for r in influx_rows(
            influxdb.url, INFLUX_DB, "SELECT last(messages) FROM ingest_stats GROUP BY worker")}
        assert set(by_worker) == {"ingest-1", "ingest-2", "ingest-3"}, by_worker
        assert all(n > 0 for n in by_worker.values()), "each worker took a share"
    finally:
        for w in workers:
            w.stop()
