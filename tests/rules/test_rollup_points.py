"""Roll-up points as written: every value reads back as the same double, whichever way the
line was formatted (one orjson call for plain field names, one value at a time otherwise)."""

from __future__ import annotations

import random

from enmon.lineproto import escape_tag, fmt_field
from rules.rollups import points


def _generic(key: str, ts: int, fields: dict[str, float]) -> str:
    return f"{key} " + ",".join(f"{escape_tag(k)}={fmt_field(v)}" for k, v in fields.items()) \
        + f" {ts}"


def _fields(line: str) -> dict[str, float]:
    text = line.split(" ")[1]
    return {k: float(v) for k, v in (kv.split("=") for kv in text.split(","))}


def test_points_read_back_as_the_same_doubles_as_the_generic_line() -> None:
    rnd = random.Random(3)
    values = [0.0, -0.0, 1e-7, 1e-300, 12.5, 1 / 3, 2.0**53 + 2, 1e16, 9.999e22, -4.2e-5]
    values += [rnd.uniform(-1e6, 1e6) for _ in range(200)] + [rnd.random() for _ in range(200)]
    series = []
    for i in range(0, len(values), 2):
        fields = {"amount": values[i], "kgce": values[i + 1] if i + 1 < len(values) else 1.0}
        series.append((f"energy_hourly,meter=m{i},site=s", {1_700_000_000_000 + i: fields}))
    got = points(series)
    want = [_generic(k, ts, f) for k, by in series for ts, f in by.items()]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.split(" ")[0] == w.split(" ")[0] and g.split(" ")[2] == w.split(" ")[2]
        assert _fields(g) == _fields(w)  # the same doubles, however they are spelled


def test_a_band_name_that_is_not_a_plain_word_is_escaped_and_empty_points_left_out() -> None:
    got = points([("energy_hourly,meter=m1", {1: {"amount": 1.5, "cost_尖 峰": 2.0}, 2: {}}),
                  ("energy_hourly,meter=m2", {3: {"amount": 2.25}})])
    assert got == ["energy_hourly,meter=m1 amount=1.5,cost_尖\\ 峰=2.0 1",
                   "energy_hourly,meter=m2 amount=2.25 3"]
