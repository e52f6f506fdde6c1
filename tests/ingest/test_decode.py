"""The fast path (``ingest.decode``) stores exactly what the lenient parser would, and
refuses nothing itself: whatever breaks a rule goes down the lenient path, which says why.

Pure: no broker, no database (the end-to-end tests store through the same Processor).
"""

from __future__ import annotations

import math
import random

import pytest

from enmon.quantities import QUANTITIES
from enmon.wire import Batch, DeviceMeta, Sample, dumps, encode_batch
from ingest import decode
from ingest.pipeline import Processed, Processor

NOW = 1_763_726_400_000
TOPIC = "enmon/v1/site-a/gw-01/telemetry"
QTY = list(QUANTITIES)[:6]


def good_batch(**over: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "v": 1, "site": "site-a", "gateway": "gw-01", "seq": 7, "sent_at": NOW,
        "devices": {"main": {"building": "b1", "category": "01A00",
                             "energy_type": "electricity", "profile": "acrel 表"},
                    "aux": {"building": "b2", "energy_type": ""}},
        "samples": [
            {"device": "main", "ts": NOW - 1000,
             "values": {QTY[0]: 123456.78, QTY[1]: 1e-7, QTY[2]: 5, QTY[3]: -0.0},
             "flags": {QTY[1]: "out_of_range"}},
            {"device": "aux", "ts": NOW - 2000, "values": {QTY[4]: 1e15}},
            {"device": "aux", "ts": NOW - 3000, "values": {}},
            {"device": "aux", "ts": NOW - 4000, "values": {}, "flags": {QTY[0]: "stale"}},
        ]}
    obj.update(over)
    return obj


def as_points(p: Processed) -> list[object]:
    """``meter`` lines as (series, fields by value, ts): float text may differ (1e-7 vs
    1e-07), the stored double may not. Other lines (rejected, ingest_batch) verbatim."""
    out: list[object] = []
    for ln in p.lines:
        if not ln.startswith("meter,"):
            out.append(ln)
            continue
        series, fields, ts = ln.rsplit(" ", 2)
        parsed: dict[str, object] = {}
        for kv in fields.split(","):
            k, v = kv.split("=", 1)
            parsed[k] = v if v.startswith('"') or v.endswith("i") else float(v)
        out.append((series, parsed, ts))
    return out


def both(payload: bytes, topic: str = TOPIC) -> tuple[Processed, Processed]:
    fast = Processor(worker="w").process(payload, topic, NOW)
    slow = Processor(worker="w")._process_lenient(payload, topic, NOW)
    return fast, slow


def test_valid_batch_takes_the_fast_path_and_stores_the_same() -> None:
    payload = dumps(good_batch())
    assert decode.decode_strict(payload, TOPIC) is not None
    fast, slow = both(payload)
    assert as_points(fast) == as_points(slow)
    assert (fast.readings, fast.seq, fast.sent_at, fast.touched, fast.reasons) == \
        (slow.readings, slow.seq, slow.sent_at, slow.touched, slow.reasons)
    # the energy type "" is stored as "other", as the lenient path does
    assert any("energy_type=other" in ln for ln in fast.lines)


def test_gateway_built_batches_agree_on_random_values() -> None:
    rnd = random.Random(16)
    for seq in range(50):
        vals = [rnd.choice([rnd.uniform(-1e15, 1e15),
                            rnd.uniform(-1, 1) * 10 ** rnd.randint(-12, 14),
                            float(rnd.randint(-10**6, 10**6)), 0.0])
                for _ in QTY]
        payload = encode_batch(Batch(
            site="site-a", gateway="gw-01", seq=seq, sent_at=NOW,
            devices={"d1": DeviceMeta("b1", "01A00", "electricity", "p")},
            samples=[Sample("d1", NOW - 1, dict(zip(QTY, vals, strict=True)))]))
        assert decode.decode_strict(payload, TOPIC) is not None
        fast, slow = both(payload)
        assert as_points(fast) == as_points(slow)
        stored = as_points(fast)[0][1]  # type: ignore[index]
        assert all(stored[q] == v and math.copysign(1, stored[q]) == math.copysign(1, v)
                   for q, v in zip(QTY, vals, strict=True))


HUGE = "9" * 400
HOSTILE: dict[str, bytes] = {
    "nan": dumps(good_batch()).replace(b"123456.78", b"NaN"),
    "infinity": dumps(good_batch()).replace(b"123456.78", b"-Infinity"),
    "huge_int": dumps(good_batch()).replace(b"123456.78", HUGE.encode()),
    "out_of_range": dumps(good_batch()).replace(b"123456.78", b"1.5e15"),
    "bool_value": dumps(good_batch()).replace(b"123456.78", b"true"),
    "string_value": dumps(good_batch()).replace(b"123456.78", b'"1"'),
    "lone_surrogate": dumps(good_batch()).replace("acrel 表".encode(), b"\\ud800"),
    "control_char": dumps(good_batch()).replace("acrel 表".encode(), b"a\\u0000b"),
    "not_utf8": dumps(good_batch()).replace("acrel 表".encode(), b"\xff\xfe"),
    "unknown_quantity": dumps(good_batch()).replace(QTY[4].encode(), b"bogus_q"),
    "bad_flag": dumps(good_batch()).replace(b"out_of_range", b"Out Of Range"),
    "flag_with_newline": dumps(good_batch()).replace(b"out_of_range", b"stale\\n"),
    "unknown_device": dumps(good_batch()).replace(b'"device":"aux"', b'"device":"ghost"', 1),
    "duplicate_sample": dumps(good_batch(samples=[
        {"device": "main", "ts": NOW, "values": {QTY[0]: 1.0}},
        {"device": "main", "ts": NOW, "values": {QTY[0]: 2.0}}])),
    "ts_before_2000": dumps(good_batch()).replace(str(NOW - 1000).encode(), b"1000"),
    "ts_float": dumps(good_batch()).replace(str(NOW - 1000).encode(), b"1.5e12"),
    "bad_device_id": dumps(good_batch()).replace(b'"aux"', b'"a/x"'),
    "bad_building": dumps(good_batch()).replace(b'"b1"', b'"b 1"'),
    "bad_energy_type": dumps(good_batch()).replace(b'"electricity"', b'"plasma"'),
    "long_profile": dumps(good_batch()).replace("acrel 表".encode(), b"p" * 65),
    "v_true": dumps(good_batch(v=True)),
    "v_2": dumps(good_batch(v=2)),
    "duplicate_v_last_wins": dumps(good_batch()).replace(b'"v":1', b'"v":1,"v":2'),
    "seq_negative": dumps(good_batch(seq=-1)),
    "seq_huge": dumps(good_batch(seq=7)).replace(b'"seq":7', b'"seq":' + HUGE.encode()),
    "reserved_gateway": dumps(good_batch(gateway="alerts")),
    "topic_mismatch": dumps(good_batch(site="site-b")),
    "too_many_samples": dumps(good_batch(samples=[
        {"device": "main", "ts": NOW - i, "values": {}} for i in range(4097)])),
    "not_object": b"[1,2,3]",
    "bad_json": b'{"v":1,',
    "deep": b"[" * 100_000,
    "empty": b"",
    "flags_null": dumps(good_batch(samples=[
        {"device": "main", "ts": NOW, "values": {}, "flags": None}])),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_payloads_leave_the_fast_path_and_end_as_the_lenient_parser_says(
        case: str) -> None:
    payload = HOSTILE[case]
    assert decode.decode_strict(payload, TOPIC) is None, case
    fast, slow = both(payload)
    assert as_points(fast) == as_points(slow)
    assert fast.reasons == slow.reasons and fast.reasons, case


def test_late_or_early_readings_are_flagged_by_the_lenient_path() -> None:
    late = dumps(good_batch(samples=[{"device": "main", "ts": NOW - 8 * 86_400_000,
                                      "values": {QTY[0]: 1.0}}]))
    ahead = dumps(good_batch(samples=[{"device": "main", "ts": NOW + 600_000,
                                       "values": {QTY[0]: 1.0}}]))
    assert decode.decode_strict(late, TOPIC) is not None  # valid wire, but needs a flag
    for payload, flag in ((late, "late"), (ahead, "clock_ahead")):
        fast, slow = both(payload)
        assert fast.flags == slow.flags == [flag]
        assert as_points(fast) == as_points(slow)


def test_a_huge_sent_at_is_stored_at_ingest_time_on_both_paths() -> None:
    payload = dumps(good_batch()).replace(str(NOW).encode() + b',"devices"',
                                          HUGE.encode() + b',"devices"')
    fast, slow = both(payload)
    assert fast.sent_at == slow.sent_at == NOW and not fast.reasons
    assert as_points(fast) == as_points(slow)


def test_names_found_good_are_remembered_yet_a_bad_one_never_passes() -> None:
    """IDs and device metadata are checked against their patterns once and then
    remembered: a warm (and a just-cleared) cache still sends every bad name down the
    lenient path, and the cache stays within its bound."""
    checked = decode._Checked(limit=3)  # the good batch has 4 IDs: cleared on the way
    good = dumps(good_batch())
    for _ in range(2):
        assert decode.decode_strict(good, TOPIC, checked) is not None
        for case in ("bad_device_id", "bad_building", "long_profile", "control_char",
                     "reserved_gateway", "topic_mismatch"):
            assert decode.decode_strict(HOSTILE[case], TOPIC, checked) is None, case
    assert len(checked._ids) <= 3 and len(checked._metas) <= 3
    # a name that differs from a remembered one only by what the pattern forbids
    bad = dumps(good_batch()).replace(b'"main"', b'"main\\n"')
    assert decode.decode_strict(bad, TOPIC, checked) is None
