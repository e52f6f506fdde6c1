"""Pure parts of ingest: message → lines, completeness arithmetic, metrics text."""

from __future__ import annotations

import datetime as dt

from enmon.wire import Batch, DeviceMeta, Sample, encode_batch
from ingest.completeness import SeqAggregate, completeness, day_bounds
from ingest.metrics import Stats, render_prometheus, stats_line
from ingest.pipeline import TS_FUTURE, Processor, TimeLimits

NOW = 1_763_726_400_000  # 2025-11-21T12:00:00Z
TOPIC = "enmon/v1/site-a/gw-01/telemetry"


def batch(ts: int = NOW, seq: int = 7, gw: str = "gw-01", **values: float) -> bytes:
    return encode_batch(Batch(
        site="site-a", gateway=gw, seq=seq, sent_at=NOW,
        devices={"main": DeviceMeta("b1", "01A00", "electricity", "p")},
        samples=[Sample("main", ts, dict(values) or {"active_power_kw": 1.5})]))


def test_good_batch_becomes_meter_and_batch_points() -> None:
    p = Processor(worker="w1").process(batch(active_power_kw=2.5, voltage_l1_v=230.0), TOPIC, NOW)
    assert p.reasons == [] and p.readings == 2
    meter = [ln for ln in p.lines if ln.startswith("meter,")]
    assert len(meter) == 1
    assert "active_power_kw=2.5" in meter[0] and meter[0].endswith(f" {NOW}")
    batch_pt = [ln for ln in p.lines if ln.startswith("ingest_batch,")]
    assert batch_pt == [f"ingest_batch,gateway=gw-01,site=site-a seq=7i,samples=1i {NOW}"]


def test_spoofed_topic_is_rejected_with_reason_and_hash() -> None:
    p = Processor(worker="w1").process(batch(gw="gw-02"), TOPIC, NOW)
    assert p.reasons == ["topic_mismatch"] and p.readings == 0
    [rec] = p.lines
    assert rec.startswith("rejected,gateway=gw-01,reason=topic_mismatch,site=site-a,worker=w1 ")
    assert "payload_sha256=" in rec


def test_rejects_never_share_a_timestamp() -> None:
    proc = Processor(worker="w1")
    recs = [proc.process(b"not json", TOPIC, NOW).lines[0] for _ in range(50)]
    stamps = [int(r.rsplit(" ", 1)[1]) for r in recs]
    assert len(set(stamps)) == 50 and stamps == sorted(stamps)


def test_clock_flags_and_far_future_refused() -> None:
    lim = TimeLimits(future_flag_s=300, future_reject_s=86_400, past_flag_s=86_400)
    proc = Processor(worker="w1", limits=lim)
    ahead = proc.process(batch(ts=NOW + 600_000), TOPIC, NOW)
    assert ahead.flags == ["clock_ahead"] and 'flag_ts="clock_ahead"' in ahead.lines[0]
    late = proc.process(batch(ts=NOW - 2 * 86_400_000), TOPIC, NOW)
    assert late.flags == ["late"] and 'flag_ts="late"' in late.lines[0]
    far = proc.process(batch(ts=NOW + 2 * 86_400_000), TOPIC, NOW)
    assert far.reasons == [TS_FUTURE] and far.readings == 0
    assert not any(ln.startswith("meter,") for ln in far.lines)
    ok = proc.process(batch(ts=NOW - 1000), TOPIC, NOW)
    assert ok.flags == [] and "flag_ts" not in ok.lines[0]


def test_completeness_counts_gaps_duplicates_and_midnight() -> None:
    c = completeness(SeqAggregate(count=12, distinct=10, min_seq=101, max_seq=112), 100)
    assert (c.expected, c.received, c.gaps, c.duplicates) == (12, 10, 2, 2)
    assert abs(c.ratio - 10 / 12) < 1e-12
    # the batches lost across midnight are charged to the day they end in
    c2 = completeness(SeqAggregate(5, 5, 10, 14), prev_max_seq=4)
    assert (c2.expected, c2.gaps, c2.first_seq) == (10, 5, 5)
    # no previous day known: start from the day's first seq
    assert completeness(SeqAggregate(5, 5, 10, 14)).ratio == 1.0
    # seq went backwards (gateway lost its state): never above 100 %
    assert completeness(SeqAggregate(3, 3, 1, 2), prev_max_seq=50).ratio == 1.0
    assert completeness(SeqAggregate(0, 0, 0, 0)).expected == 0


def test_day_bounds_follow_the_time_zone() -> None:
    s, e = day_bounds(dt.date(2026, 11, 21), "Asia/Shanghai")
    assert e - s == 86_400_000
    assert dt.datetime.fromtimestamp(s / 1000, dt.UTC).hour == 16  # 00:00 +08:00


def test_metrics_text_and_stats_line() -> None:
    st = Stats(messages=3, readings=10)
    st.rejected["bad_json"] += 2
    st.completeness[("site-a", "gw-01")] = 0.5
    text = render_prometheus(st, worker="w1")
    assert 'enmon_ingest_messages_total{worker="w1"} 3' in text
    assert 'enmon_ingest_rejected_total{worker="w1",reason="bad_json"} 2' in text
    assert 'enmon_ingest_completeness_ratio{worker="w1",site="site-a",gateway="gw-01"} 0.5' in text
    assert 'enmon_ingest_last_ack_timestamp_seconds{worker="w1"} 0.0' in text  # none yet
    st.last_ack_at = 1_763_726_400.25
    text = render_prometheus(st, worker="w1")
    assert 'enmon_ingest_last_ack_timestamp_seconds{worker="w1"} 1763726400.25' in text
    ln = stats_line(st, worker="w1", ts_ms=NOW)
    assert ln.startswith("ingest_stats,worker=w1 ") and "rejected=2i" in ln


def test_fast_batch_lines_equal_generic_line() -> None:
    from enmon.lineproto import batch_lines, line
    from enmon.wire import parse_batch

    b = parse_batch(encode_batch(Batch(
        site="site-a", gateway="gw-01", seq=3, sent_at=NOW,
        devices={"main": DeviceMeta("b1", "", "electricity", "p"),
                 "aux": DeviceMeta("b2", "01A00", "gas", "p")},
        samples=[Sample("main", NOW, {"active_power_kw": 1e-7, "voltage_l1_v": 230.0},
                        {"voltage_l1_v": "out_of_range"}),
                 Sample("aux", NOW + 1, {"gas_volume_m3": 12345678.9})]))).batch
    b.devices["aux"] = DeviceMeta("b 2,x=y", "01A00", "gas", "p")  # needs escaping
    generic = [
        line("meter", {"site": "site-a", "gateway": "gw-01", "device": s.device,
                       "building": b.devices[s.device].building,
                       "category": b.devices[s.device].category,
                       "energy_type": b.devices[s.device].energy_type},
             {**s.values, **{f"flag_{q}": f for q, f in s.flags.items()}, "seq": 3}, s.ts)
        for s in b.samples]
    assert batch_lines(b) == generic


def test_sample_config_loads() -> None:
    from pathlib import Path

    from ingest.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "ingest" / "sample.yaml")
    assert cfg.batch.receive_maximum == 1000 and cfg.metrics.day_tz == "Asia/Shanghai"
