"""Wire contract v1: what a gateway builds, ingest parses back identically; every
way to break the contract is refused with its own stable reason."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from enmon import wire
from enmon.errors import WireError
from enmon.wire import Reason

TOPIC = "enmon/v1/hosp-a/gw-01/telemetry"


def good() -> dict[str, Any]:
    # the example batch of design.md
    return {
        "v": 1,
        "site": "hosp-a",
        "gateway": "gw-01",
        "seq": 18231,
        "sent_at": 1763726405123,
        "devices": {
            "main": {
                "building": "outpatient",
                "category": "01A00",
                "energy_type": "electricity",
                "profile": "acrel-dtsd1352",
            }
        },
        "samples": [
            {
                "device": "main",
                "ts": 1763726400000,
                "values": {"active_energy_import_kwh": 123456.78, "active_power_kw": 42.1},
                "flags": {"active_power_kw": "out_of_range"},
            }
        ],
    }


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def reason_of(payload: bytes, topic: str | None = TOPIC) -> str:
    with pytest.raises(WireError) as e:
        wire.parse_batch(payload, topic=topic)
    return str(e.value.reason)


def test_design_example_parses_exactly() -> None:
    p = wire.parse_batch(enc(good()), topic=TOPIC)
    assert p.dropped == []
    b = p.batch
    assert (b.site, b.gateway, b.seq, b.sent_at) == ("hosp-a", "gw-01", 18231, 1763726405123)
    assert b.devices["main"] == wire.DeviceMeta(
        "outpatient", "01A00", "electricity", "acrel-dtsd1352"
    )
    s = b.samples[0]
    assert s.values == {"active_energy_import_kwh": 123456.78, "active_power_kw": 42.1}
    assert s.flags == {"active_power_kw": "out_of_range"}


def test_encode_parse_round_trip_keeps_every_bit() -> None:
    values = {
        "active_energy_import_kwh": 0.1 + 0.2,
        "voltage_l1_v": 229.99999999999997,
        "active_power_kw": -1e-300,
    }
    b = wire.Batch(
        "s",
        "g",
        7,
        1_763_726_405_123,
        {"d": wire.DeviceMeta()},
        [wire.Sample("d", 1_763_726_400_000, values)],
    )
    back = wire.parse_batch(wire.encode_batch(b), topic=b.topic).batch
    assert back.samples[0].values == values
    assert back.devices["d"].energy_type == "other"


def test_encode_refuses_nan_and_oversize() -> None:
    b = wire.Batch(
        "s",
        "g",
        0,
        1_763_726_405_123,
        {"d": wire.DeviceMeta()},
        [wire.Sample("d", 1_763_726_400_000, {"active_power_kw": math.nan})],
    )
    with pytest.raises(WireError) as e:
        wire.encode_batch(b)
    assert e.value.reason == Reason.NON_FINITE
    big = [wire.Sample("d", 1_763_726_400_000 + i, {"active_power_kw": 1.0}) for i in range(9000)]
    with pytest.raises(WireError) as e:
        wire.encode_batch(wire.Batch("s", "g", 0, 0, {"d": wire.DeviceMeta()}, big))
    assert e.value.reason == Reason.TOO_LARGE


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda o: o.update(v=2), Reason.BAD_VERSION),
        (lambda o: o.update(v=True), Reason.BAD_VERSION),
        (lambda o: o.pop("seq"), Reason.MISSING_FIELD),
        (lambda o: o.update(seq="1"), Reason.BAD_TYPE),
        (lambda o: o.update(seq=True), Reason.BAD_TYPE),
        (lambda o: o.update(seq=-1), Reason.BAD_TYPE),
        (lambda o: o.update(site="hosp a"), Reason.BAD_ID),
        (lambda o: o.update(gateway="x" * 65), Reason.BAD_ID),
        (lambda o: o.update(gateway="gw-02"), Reason.TOPIC_MISMATCH),
        (lambda o: o.update(devices=[]), Reason.BAD_TYPE),
        (lambda o: o["devices"]["main"].update(energy_type="plasma"), Reason.BAD_ENERGY_TYPE),
        (lambda o: o["devices"]["main"].update(building="a,b"), Reason.BAD_ID),
        (lambda o: o.update(samples={}), Reason.BAD_TYPE),
        (lambda o: o["samples"].append(3), Reason.BAD_TYPE),
        (lambda o: o["samples"][0].pop("ts"), Reason.MISSING_FIELD),
        (lambda o: o["samples"][0].update(ts=1.5), Reason.BAD_TYPE),
    ],
)
def test_each_contract_breach_has_its_reason(mutate: Any, reason: Reason) -> None:
    o = good()
    mutate(o)
    assert reason_of(enc(o)) == reason


def test_envelope_failures() -> None:
    assert reason_of(b"x" * (wire.MAX_PAYLOAD_BYTES + 1)) == Reason.TOO_LARGE
    assert reason_of(b"\xff\xfe{") == Reason.NOT_UTF8
    assert reason_of(b'{"v":1,') == Reason.BAD_JSON
    assert reason_of(b"[1,2]") == Reason.NOT_OBJECT
    assert reason_of(b"[" * 100_000 + b"]" * 100_000) in (Reason.BAD_JSON, Reason.NOT_OBJECT)
    assert reason_of(enc(good()), topic="enmon/v1/hosp-a/gw-01/status") == Reason.BAD_TOPIC
    assert reason_of(enc(good()), topic="other/v1/hosp-a/gw-01/telemetry") == Reason.BAD_TOPIC
    o = good()
    o["samples"] = [{"device": "main", "ts": 1763726400000, "values": {}}] * (wire.MAX_SAMPLES + 1)
    assert reason_of(enc(o)) == Reason.TOO_MANY_SAMPLES


def test_bad_values_are_dropped_one_by_one_and_the_rest_kept() -> None:
    o = good()
    s = o["samples"][0]
    s["values"].update({"made_up_kwh": 1.0, "voltage_l1_v": "230", "current_l1_a": True})
    s["flags"]["voltage_l2_v"] = "Bad Flag!"
    o["samples"].append({"device": "ghost", "ts": 1763726400000, "values": {"active_power_kw": 1}})
    o["samples"].append({"device": "main", "ts": 12, "values": {"active_power_kw": 1}})
    text = json.dumps(o).replace('"active_power_kw": 42.1', '"active_power_kw": NaN')
    p = wire.parse_batch(text.encode(), topic=TOPIC)
    reasons = sorted(str(d.reason) for d in p.dropped)
    assert reasons == sorted(
        [
            "unknown_quantity",
            "bad_type",
            "bad_type",
            "bad_flag",
            "unknown_device",
            "ts_out_of_range",
            "non_finite",
        ]
    )
    assert [smp.values for smp in p.batch.samples] == [{"active_energy_import_kwh": 123456.78}]
    assert all(d.detail for d in p.dropped)


def test_topics() -> None:
    assert wire.telemetry_topic("a", "b") == "enmon/v1/a/b/telemetry"
    assert wire.parse_topic("enmon/v1/a/b/status") == ("a", "b", "status")
    assert wire.alert_topic("a", "quota") == "enmon/v1/a/alerts/quota"
    for bad in ("enmon/v1/a/b", "enmon/v1/+/b/telemetry", "enmon/v1/a/b/c/d"):
        with pytest.raises(WireError):
            wire.parse_topic(bad)
    with pytest.raises(WireError):
        wire.telemetry_topic("a/b", "c")
    # a gateway named "alerts" would own enmon/v1/{site}/alerts/… and could forge alerts
    with pytest.raises(WireError) as e:
        wire.parse_topic("enmon/v1/a/alerts/telemetry")
    assert e.value.reason == Reason.BAD_ID
