"""A meter's long raw history over the API, and the one-round read of a history.

Real influxd with the campus days of ``loaded`` (every meter read every 15 minutes) and
the real API stack. The history reads the meter's view together with its tags when the
site file names the meter; what it shows must be what the two-round read (tags, then
readings) shows, including when the site file's guess is wrong.
"""

from __future__ import annotations

import httpx
import pytest

from tests.inspector.conftest import DB, INSPECTOR_TOKEN, Loaded, Stack, auth

pytestmark = pytest.mark.slow
SITE = "demo-campus"


def _history(stack: Stack, device: str, **params: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/api/v1/sites/{SITE}/meters/{device}/history",
                     params=params, headers=auth(INSPECTOR_TOKEN), timeout=120)


def test_a_15_minute_meters_year_of_raw_readings_is_served(stack: Stack) -> None:
    device = stack.loaded.data.gap[0]
    short = _history(stack, device, start="2026-10-01", end="2026-10-04")
    year = _history(stack, device, start="2025-10-05", end="2026-10-04")  # 364 days
    assert short.status_code == 200 and year.status_code == 200, year.text
    s, y = short.json(), year.json()
    assert y["readings"] == s["readings"] > 200
    assert y["rows"] == s["rows"] and y["flags"] == s["flags"]
    assert y["columns"] == s["columns"] == ["active_energy_import_kwh", "active_power_kw"]
    # the silent year before the data is one gap at the range's start
    assert y["gaps"][0]["edge"] and y["gaps"][0]["end"] == y["rows"][0]["time"]
    assert y["gaps"][1:] == s["gaps"]
    # more than 400 days is still refused
    assert _history(stack, device, start="2025-01-01", end="2026-10-04").status_code == 422


def _same(a: object, b: object) -> None:
    ha, hb = a.as_dict(), b.as_dict()  # type: ignore[attr-defined]
    for k in ("columns", "rows", "flags", "rejected", "entries", "readings", "gaps"):
        assert ha[k] == hb[k], k


@pytest.mark.parametrize("fields", [None, ["all"], ["active_power_kw"]])
async def test_the_one_round_read_shows_the_two_round_history(loaded: Loaded,
                                                             fields: list[str] | None) -> None:
    from enmon.influx import InfluxConfig, InfluxQL
    from inspector.store import Store, fetch_history

    site = loaded.data.site
    device, g0, _ = loaded.data.gap
    span = dict(site=site.site, device=device, start=loaded.data.start_ms,
                end=loaded.data.end_ms, fields=fields)
    wrong = site.model_copy(deep=True)  # a site file whose energy type is not the stored one
    for _, m in wrong.meters():
        if m.device == device:
            object.__setattr__(m, "energy_type", "water")
    store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
    try:
        with_site = await fetch_history(store, **span, site_model=site)
        without = await fetch_history(store, **span)
        guessed_wrong = await fetch_history(store, **span,
                                            site_model=wrong)
    finally:
        await store.close()
    assert with_site.readings > 200 and any(g.start == g0 - 900_000 for g in with_site.gaps)
    assert with_site.meta["interval_source"] == "site file poll_interval_s"
    _same(with_site, without)
    _same(with_site, guessed_wrong)
