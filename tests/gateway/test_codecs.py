"""Frame-level worked examples: Modbus RTU/TCP and DL/T 645-2007.

Vectors are the published worked examples (Modbus Application Protocol
V1.1b3 §6.3; the widely reproduced RTU request ``11 03 00 6B 00 03 76 87``;
DL/T 645-2007 read-address broadcast and read-energy frames), so a framing
bug on both the gateway and the simulator side cannot cancel out.
"""

from __future__ import annotations

import pytest

from gateway import dlt645 as d
from gateway import modbus_frames as mf


def test_rtu_request_matches_published_example() -> None:
    req = mf.ReadRequest(0x11, "holding", 0x006B, 3)
    assert mf.rtu_request(req).hex(" ") == "11 03 00 6b 00 03 76 87"
    assert mf.rtu_request(mf.ReadRequest(1, "holding", 0, 10)).hex(" ") == "01 03 00 00 00 0a c5 cd"


def test_rtu_response_parse_spec_example() -> None:
    req = mf.ReadRequest(0x11, "holding", 0x006B, 3)
    # spec §6.3: registers 108..110 = 0x022B, 0x0000, 0x0064
    frame = mf.with_crc(bytes.fromhex("11 03 06 02 2B 00 00 00 64"))
    assert mf.rtu_response_length(frame[:3]) == len(frame)
    assert mf.parse_rtu_response(req, frame) == [0x022B, 0, 0x64]


def test_rtu_errors_are_distinguished() -> None:
    req = mf.ReadRequest(1, "input", 0, 2)
    good = mf.with_crc(bytes.fromhex("01 04 04 43 66 00 00"))
    assert mf.parse_rtu_response(req, good) == [0x4366, 0]
    with pytest.raises(mf.FrameError, match="CRC"):
        mf.parse_rtu_response(req, good[:-1] + bytes([good[-1] ^ 1]))
    exc = mf.with_crc(bytes.fromhex("01 84 02"))
    assert mf.rtu_response_length(exc) == 5
    with pytest.raises(mf.ModbusException) as info:
        mf.parse_rtu_response(req, exc)
    assert info.value.code == 2 and "illegal data address" in str(info.value)
    with pytest.raises(mf.FrameError, match="unit 2"):
        mf.parse_rtu_response(req, mf.with_crc(bytes.fromhex("02 04 04 43 66 00 00")))


def test_tcp_mbap_roundtrip() -> None:
    req = mf.ReadRequest(1, "holding", 0x006B, 3)
    assert mf.tcp_request(req, 0x1234).hex(" ") == "12 34 00 00 00 06 01 03 00 6b 00 03"
    answer = bytes.fromhex("12 34 00 00 00 09 01 03 06 02 2B 00 00 00 64")
    assert mf.tcp_frame_length(answer[:6]) == len(answer)
    assert mf.parse_tcp_response(req, 0x1234, answer) == [0x022B, 0, 0x64]
    with pytest.raises(mf.FrameError):
        mf.parse_tcp_response(req, 0x1235, answer)


def test_line_timing_per_spec() -> None:
    assert mf.char_time(9600) == pytest.approx(11 / 9600)
    assert mf.silent_interval(9600) == pytest.approx(3.5 * 11 / 9600)
    assert mf.silent_interval(115200) == 0.00175


# --------------------------------------------------------------------------- DL/T 645


def test_dlt645_read_address_broadcast_frame() -> None:
    assert d.read_address_request().hex(" ") == "fe fe fe fe 68 aa aa aa aa aa aa 68 13 00 df 16"


def test_dlt645_read_energy_request() -> None:
    frame = d.read_request("000000000001", "00010000")
    assert frame.hex(" ") == "fe fe fe fe 68 01 00 00 00 00 00 68 11 04 33 33 34 33 b3 16"


def test_dlt645_answer_parse_and_value() -> None:
    # meter 123456789012 answers DI 00010000 with 123456.78 kWh
    data = d.di_bytes("00010000") + bytes.fromhex("78563412")
    wire = b"\x00\xff" + d.build_frame("123456789012", d.C_READ_OK, data)  # garbage first
    frame, used = d.find_frame(wire)
    assert frame is not None and used == len(wire)
    assert frame.address == "123456789012"
    raw = d.parse_read_response("123456789012", "00010000", frame)
    assert d.decode_bcd(raw, 2) == 123456.78


def test_dlt645_abnormal_answer_and_checksum() -> None:
    err = d.build_frame("000000000001", d.C_READ_ERR, b"\x02", preamble=False)
    frame, _ = d.find_frame(err)
    assert frame is not None
    with pytest.raises(d.Dlt645Error, match="no requested data"):
        d.parse_read_response("000000000001", "00010000", frame)
    bad = err[:-2] + bytes([(err[-2] + 1) & 0xFF]) + err[-1:]
    with pytest.raises(d.Dlt645FrameError):
        d.find_frame(bad)


@pytest.mark.parametrize(("value", "nbytes", "decimals", "signed", "hex_lsb"), [
    (230.1, 2, 1, False, "0123"),
    (-1.2345, 3, 4, True, "452381"),
    (0.985, 2, 3, True, "8509"),
    (123456.78, 4, 2, False, "78563412"),
])
def test_bcd_roundtrip(
    value: float, nbytes: int, decimals: int, signed: bool, hex_lsb: str
) -> None:
    raw = d.encode_bcd(value, nbytes, decimals, signed)
    assert raw.hex() == hex_lsb
    assert d.decode_bcd(raw, decimals, signed) == pytest.approx(value)


def test_bcd_refuses_no_data_marker() -> None:
    with pytest.raises(d.Dlt645FrameError):
        d.decode_bcd(b"\xff\xff\xff\xff", 2)


def test_dlt645_signed_bcd_spans_the_standards_range() -> None:
    """DL/T 645-2007 XX.XXXX kW (3 bytes, sign in the top bit) reaches ±79.9999, not 9.9999."""
    from gateway.dlt645 import decode_bcd, encode_bcd

    for value in (14.3, -14.3, 79.9999, -0.0001, 9.9999, 10.0):
        raw = encode_bcd(value, 3, 4, signed=True)
        assert decode_bcd(raw, 4, signed=True) == pytest.approx(value, abs=1e-9)
    # BCD 14.3000, LSB first
    assert encode_bcd(14.3, 3, 4, signed=True) == bytes([0x00, 0x30, 0x14])
