"""The ingest worker end to end against real mosquitto and influxd."""

from __future__ import annotations

import urllib.request

from enmon.localrun import InfluxDB1, Mosquitto
from ingest.options import MetricsConfig
from tests.conftest import INFLUX_DB
from tests.ingest.conftest import (
    Publisher,
    ThreadWorker,
    expected_rows,
    influx_cfg,
    make_batch,
    mqtt_cfg,
    stored,
    topic,
)
from tests.support import influx_rows, wait_until


def test_stream_is_stored_once_and_spoofed_topic_rejected(
        mosquitto: Mosquitto, influxdb: InfluxDB1, publisher: Publisher) -> None:
    with ThreadWorker(mqtt_cfg(mosquitto), influx_cfg(influxdb),
                      metrics=MetricsConfig(port=0, stats_interval_s=0.5,
                                            completeness_interval_s=0)) as w:
        items = [(topic("gw-01"), make_batch("gw-01", s)) for s in range(50)]
        # gw-02 publishes a batch that claims to be gw-01 on its own topic, and vice versa
        items.append((topic("gw-02"), make_batch("gw-01", 999)))
        publisher.publish_all(items)
        want = expected_rows("gw-01", range(50))
        wait_until(lambda: stored(influxdb, "gw-01") == want, 60, "all readings stored")
        rej = wait_until(lambda: influx_rows(
            influxdb.url, INFLUX_DB, "SELECT * FROM rejected"), 30, "the spoof in rejected")
        assert [(r["reason"], r["site"], r["gateway"]) for r in rej] == [
            ("topic_mismatch", "site-a", "gw-02")]
        assert len(rej[0]["payload_sha256"]) == 64
        # the spoofed batch's readings (seq 999) were not stored under either gateway
        assert all(t < 1_763_700_000_000 + 999 * 10 for t in stored(influxdb, "gw-01"))
        wait_until(lambda: w.stats.acked == 51, 30, "every message acked")
        assert w.stats.rejected == {"topic_mismatch": 1}
        wait_until(lambda: influx_rows(influxdb.url, INFLUX_DB,
                                       "SELECT last(messages) FROM ingest_stats"), 30,
                   "ingest_stats written")
    assert w.error is None


def test_metrics_endpoint(mosquitto: Mosquitto, influxdb: InfluxDB1,
                          publisher: Publisher) -> None:
    from enmon.localrun import free_port

    port = free_port()
    with ThreadWorker(mqtt_cfg(mosquitto), influx_cfg(influxdb),
                      metrics=MetricsConfig(port=port, completeness_interval_s=0)):
        publisher.publish_all([(topic("gw-01"), make_batch("gw-01", 1)),
                               (topic("gw-01"), b"{not json")])

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        def acked_twice() -> str | None:
            t = scrape()
            return t if 'enmon_ingest_acked_total{worker="ingest-1"} 2' in t else None

        text = wait_until(acked_twice, 30, "metrics show 2 acks")
        assert 'enmon_ingest_rejected_total{worker="ingest-1",reason="bad_json"} 1' in text
        assert 'enmon_ingest_readings_total{worker="ingest-1"} 10' in text
