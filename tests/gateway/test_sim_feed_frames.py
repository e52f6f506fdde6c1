"""firmware_sim.rtu.feed_frames: the 68…16 request splitter of the DL/T 645 and CJ/T 188
simulators must end on any buffer (it looped forever on one without a 68h start byte)."""

from __future__ import annotations

import threading

from firmware_sim.rtu import feed_frames
from gateway import dlt645 as d


class _Broken(Exception):
    pass


def _always_broken(buf: bytes) -> tuple[None, int]:
    raise _Broken(f"cannot parse {buf.hex()}")


def _run(buf: bytearray, find: object, error: type[Exception]) -> list[bytes] | None:
    """feed_frames in a thread with a deadline: None if it did not return (the old bug)."""
    out: list[list[bytes]] = []
    t = threading.Thread(target=lambda: out.append(
        feed_frames(buf, find, error, lambda f: b"answer")),  # type: ignore[arg-type]
        daemon=True)
    t.start()
    t.join(2.0)
    return out[0] if out else None


def test_a_buffer_without_a_start_byte_is_dropped_not_looped_on() -> None:
    buf = bytearray(b"\x01\x02\xfe\xfe\x16")  # noise (no 68h) a codec refuses
    assert _run(buf, _always_broken, _Broken) == []
    assert buf == bytearray()


def test_noise_and_a_corrupt_frame_then_a_good_one_on_the_real_codec() -> None:
    good = d.read_request("000012345678", "00010000")
    corrupt = bytearray(good)
    corrupt[-2] ^= 0xFF  # checksum
    buf = bytearray(b"\x00\x11" + bytes(corrupt) + b"\xfe\xfe" + good)
    assert _run(buf, d.find_frame, d.Dlt645FrameError) == [b"answer"]
    assert buf == bytearray()
