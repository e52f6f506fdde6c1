"""M-Bus (EN 13757-2/-3) codec: published frames decode to their documented values, and
anything malformed is refused with a reason instead of being read as a value."""

from __future__ import annotations

import pytest

from gateway import mbus as m

# "The M-Bus: A Documentation" (m-bus.com, rev 4.8), ch. 6.5 example RSP_UD, variable data
# structure: ID 12345678, manufacturer 4024h (PAD), version 1, medium 07h water, access 55h.
DOC_RSP_UD = bytes.fromhex(
    "681F1F68080272785634122440010755000000"
    "0313153100"      # volume 12.565 m3 (24-bit integer, VIF 13h = 1e-3 m3)
    "DA023B1301"      # max. volume flow 0.113 m3/h, 4-digit BCD, storage 5
    "8B60043718021816"  # energy 218.37 kWh, 6-digit BCD, tariff 2, subunit 1
)


def test_documented_rsp_ud_decodes() -> None:
    f = m.decode_frame(DOC_RSP_UD)
    assert (f.kind, f.c, f.a, f.ci) == ("long", 0x08, 0x02, 0x72)
    r = m.parse_response(f)
    assert r.secondary.ident == "12345678"
    assert r.manufacturer == "PAD" and r.secondary.manufacturer == 0x4024
    assert r.medium == "water" and r.access == 0x55 and r.status == 0
    vol, flow, energy = r.records
    assert (vol.description, vol.unit, vol.value) == ("volume", "m3", pytest.approx(12.565))
    assert (flow.description, flow.function, flow.storage) == ("volume flow", "maximum", 5)
    assert flow.value == pytest.approx(0.113)
    assert (energy.description, energy.unit, energy.tariff, energy.subunit) == (
        "energy", "Wh", 2, 1)
    assert energy.value == pytest.approx(218370)
    assert m.canonical(energy) == ("GJ", pytest.approx(218.37 * 0.0036))


def test_short_frames_and_checksums() -> None:
    assert m.req_ud2(1) == bytes.fromhex("105B015C16")
    assert m.snd_nke(0xFD) == bytes.fromhex("1040FD3D16")
    assert m.decode_frame(bytes.fromhex("107B017C16")).c == 0x7B
    assert m.decode_frame(b"\xe5").kind == "ack"


@pytest.mark.parametrize("raw,reason", [
    (DOC_RSP_UD[:-2] + b"\x19\x16", "checksum"),
    (DOC_RSP_UD[:-1] + b"\x17", "stop byte"),
    (bytes.fromhex("105B015D16"), "checksum"),
    (b"\x68\x1f\x1e\x68" + DOC_RSP_UD[4:], "68 L L 68"),
    (b"\x00\x01garbage", "not an M-Bus frame"),
    (DOC_RSP_UD[:20], "needs"),
])
def test_malformed_frames_refused_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(m.MbusFrameError, match=reason):
        m.decode_frame(raw)


def test_cut_record_refused() -> None:
    data = DOC_RSP_UD[7:-2][:-2]  # body after C A CI, last record cut
    f = m.Frame("long", 0x08, 2, 0x72, data)
    with pytest.raises(m.MbusFrameError, match="needs 3 bytes"):
        m.parse_response(f)


def test_secondary_address_roundtrip_and_wildcards() -> None:
    a = m.SecondaryAddress.parse("12345678.PAD.01.07")
    assert a.to_bytes() == bytes.fromhex("7856341224400107")
    assert m.SecondaryAddress.from_bytes(a.to_bytes()) == a
    sel = m.decode_frame(m.select_request(m.SecondaryAddress("1234FFFF")))
    pattern = m.parse_select_request(sel)
    assert pattern is not None and pattern.matches(a)
    assert not m.SecondaryAddress("1235FFFF").matches(a)
    assert not m.SecondaryAddress("12345678", manufacturer=m.manufacturer_code("LUG")).matches(a)


def test_wildcard_search_finds_every_meter() -> None:
    meters = [m.SecondaryAddress(x) for x in ("12345678", "12345699", "70000001")]

    def probe(pattern: str) -> m.Probe:
        n = sum(m.SecondaryAddress(pattern).matches(x) for x in meters)
        return "none" if n == 0 else "one" if n == 1 else "collision"

    assert sorted(m.wildcard_search(probe)) == ["12345678", "12345699", "70000001"]


def test_heat_meter_vifs_and_types() -> None:
    recs = (
        b"\x04\x06" + (123456).to_bytes(4, "little")    # energy, 32-bit int, kWh
        + b"\x0c\xfb\x08" + m.encode_bcd(1234, 4)        # energy 0.1 GJ (FBh 08h), 8-digit BCD
        + b"\x0a\x5a" + m.encode_bcd(705, 2)             # flow temperature 70.5 °C
        + b"\x0a\x5e" + m.encode_bcd(502, 2)             # return temperature 50.2 °C
        + b"\x02\x61" + (2030).to_bytes(2, "little")     # temperature difference 20.30 K
        + b"\x04\x2b" + (15000).to_bytes(4, "little")    # power 15000 W
        + b"\x04\x3b" + (1234).to_bytes(4, "little")     # flow 1.234 m3/h
        + b"\x04\x22" + (8760).to_bytes(4, "little")     # on time 8760 h
        + b"\x0c\x78" + m.encode_bcd(87654321, 4)        # fabrication number
        + b"\x44\x06" + (100000).to_bytes(4, "little")   # energy, storage 1 (due date)
        + b"\x02\x5a" + (-55).to_bytes(2, "little", signed=True)  # -5.5 °C signed int
    )
    sec = m.SecondaryAddress("87654321", m.manufacturer_code("LUG"), 0x07, 0x04)
    r = m.parse_response(m.decode_frame(m.response_frame(1, sec, 3, 0, recs)))
    got = [(x.description, x.value, x.storage) for x in r.records]
    assert got == [
        ("energy", pytest.approx(123456000.0), 0), ("energy", pytest.approx(123.4), 0),
        ("flow temperature", pytest.approx(70.5), 0),
        ("return temperature", pytest.approx(50.2), 0),
        ("temperature difference", pytest.approx(20.30), 0),
        ("power", pytest.approx(15000.0), 0), ("volume flow", pytest.approx(1.234), 0),
        ("on time", 8760, 0), ("fabrication number", 87654321, 0),
        ("energy", pytest.approx(100000000.0), 1), ("flow temperature", pytest.approx(-5.5), 0),
    ]
    assert m.canonical(r.records[0]) == ("GJ", pytest.approx(444.4416))
    assert m.canonical(r.records[5]) == ("kW", pytest.approx(15.0))
    assert r.manufacturer == "LUG"
