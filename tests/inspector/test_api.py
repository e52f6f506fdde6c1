"""The inspector HTTP API over real servers: influxd, the rules service's alert API, uvicorn.

Roles are the point: nobody anonymous, inspectors read, facility managers may
also acknowledge — and an acknowledgement goes through the rules lifecycle, so it
lands in the live alert book *and* in the ``alert`` history with the name of who
acknowledged.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import httpx
import pytest

from tests.inspector.conftest import (
    DB,
    INSPECTOR_TOKEN,
    MANAGER_TOKEN,
    MONTH,
    Stack,
    auth,
)
from tests.support import influx_rows, wait_until

pytestmark = pytest.mark.slow
SITE = "demo-campus"


def _get(stack: Stack, path: str, token: str | None = INSPECTOR_TOKEN, **params: object
         ) -> httpx.Response:
    return httpx.get(stack.url + path, params=params, headers=auth(token) if token else {},
                     timeout=60)


def test_nobody_anonymous(stack: Stack) -> None:
    spec = httpx.get(stack.url + "/openapi.json", timeout=10).json()
    paths = [p for p in spec["paths"] if p.startswith("/api/")]
    assert len(paths) >= 8
    for p in paths:
        concrete = (p.replace("{site}", SITE).replace("{device}", "mall-main")
                    .replace("{period}", MONTH).replace("{fingerprint}", stack.live_fingerprint))
        for method in spec["paths"][p]:
            for headers in ({}, auth("enm_not-a-real-token")):
                r = httpx.request(method.upper(), stack.url + concrete, headers=headers,
                                  timeout=30)
                assert r.status_code == 401, (method, p, headers, r.text)
    # the health probe and the console page carry no data and need no token
    assert httpx.get(stack.url + "/healthz", timeout=10).json() == {"ok": True, "influx": True}
    page = httpx.get(stack.url + "/", timeout=10)
    assert "enmon 控制台" in page.text  # zh-CN, the default language
    # what senders wrote is shown on these pages: only our own script may run there
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = _get(stack, f"/api/v1/sites/{SITE}/reports/{MONTH}", format="html")
    assert "script-src 'self'" in html.headers["content-security-policy"]


def test_inspector_reads_the_tree_and_history(stack: Stack) -> None:
    me = _get(stack, "/api/v1/whoami").json()
    assert me == {"name": "wang.inspector", "role": "inspector", "may_acknowledge": False,
                  "may_enter": False, "may_control": False}
    sites = _get(stack, "/api/v1/sites").json()
    assert [s["site"] for s in sites] == [SITE] and sites[0]["has_site_file"]
    tree = {b["id"]: b for b in _get(stack, f"/api/v1/sites/{SITE}/buildings").json()}
    assert {m["device"] for m in tree["admin"]["meters"]} >= {"admin-main", "admin-light"}
    assert tree["admin"]["floor_area_m2"] == 12000
    # the energy types each building's energy view can show: those it has a total meter of,
    # not a sub-meter's type alone (its view would only refuse), electricity first
    for b in stack.loaded.data.site.buildings:
        totals = {m.energy_type for m in b.meters if m.building_total}
        assert set(tree[b.id]["energy_types"]) == totals, b.id
        assert tree[b.id]["energy_types"][:1] == (["electricity"] if "electricity" in totals
                                                  else tree[b.id]["energy_types"][:1])
    gap_device, g0, g1 = stack.loaded.data.gap
    h = _get(stack, f"/api/v1/sites/{SITE}/meters/{gap_device}/history", start="2026-10-01",
             end="2026-10-04").json()
    assert h["mode"] == "raw" and h["units"]["active_power_kw"] == "kW"
    assert [(g["start"], g["end"]) for g in h["gaps"]] == [(g0 - 900_000, g1)]
    assert {r["reason"] for r in h["rejected"]} == {"bad_json", "unknown_quantity"}
    # bad input is the caller's fault (4xx), never a server error
    assert _get(stack, f"/api/v1/sites/{SITE}/meters/nope/history").status_code == 404
    assert _get(stack, f"/api/v1/sites/{SITE}/meters/{gap_device}/history",
                start="yesterday").status_code == 422
    assert _get(stack, f"/api/v1/sites/{SITE}/meters/{gap_device}/history", start="2026-10-04",
                end="2026-10-01").status_code == 422
    assert _get(stack, f"/api/v1/sites/{SITE}/meters/{gap_device}/history",
                quantity="banana_count").status_code == 422


def test_export_and_report_downloads(stack: Stack) -> None:
    r = _get(stack, f"/api/v1/sites/{SITE}/meters/mall-main/export", start="2026-10-01",
             end="2026-10-04", mode="hour", format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 72 and "active_energy_import_kwh_consumption [kWh]" in rows[0]
    x = _get(stack, f"/api/v1/sites/{SITE}/meters/mall-main/export", start="2026-10-01",
             end="2026-10-04", format="xlsx")
    assert x.status_code == 200 and x.content[:2] == b"PK"
    rep = _get(stack, f"/api/v1/sites/{SITE}/reports/{MONTH}", building="mall").json()
    assert [b["id"] for b in rep["buildings"]] == ["mall"] and rep["kgce"] > 0
    pdf = _get(stack, f"/api/v1/sites/{SITE}/reports/{MONTH}", format="pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert _get(stack, f"/api/v1/sites/{SITE}/reports/2026-13").status_code == 422
    assert _get(stack, "/api/v1/sites/elsewhere/reports/2026").status_code == 404


def test_roles_and_acknowledgement_through_the_rules_lifecycle(stack: Stack) -> None:
    fp = stack.live_fingerprint
    alerts = _get(stack, "/api/v1/alerts", active_only="true").json()
    assert alerts["source"] == "rules"
    live = next(a for a in alerts["alerts"] if a["fingerprint"] == fp)
    assert live["state"] == "firing" and live["acked_by"] is None
    # an inspector may read but not acknowledge
    r = httpx.post(f"{stack.url}/api/v1/alerts/{fp}/ack", headers=auth(INSPECTOR_TOKEN),
                   timeout=30)
    assert r.status_code == 403
    assert stack.service.book.alerts[fp].acked_by is None
    # unknown alerts are 404, from the lifecycle itself
    r = httpx.post(f"{stack.url}/api/v1/alerts/0123456789abcdef/ack",
                   headers=auth(MANAGER_TOKEN), timeout=30)
    assert r.status_code == 404
    r = httpx.post(f"{stack.url}/api/v1/alerts/{fp}/ack", headers=auth(MANAGER_TOKEN),
                   timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"acknowledged": fp, "by": "li.facilities"}
    assert stack.service.book.alerts[fp].acked_by == "li.facilities"
    # the first acknowledgement of a fresh database also creates the `acked_by` field key:
    # under load influxd 1.6 has answered SELECT * with the point before the key (a row
    # with acked_by null) — wait for the row as written, then check it is the only one
    rows = wait_until(lambda: [r for r in influx_rows(
        stack.loaded.url, DB, f"SELECT * FROM alert WHERE fingerprint = '{fp}' AND "
                              "state = 'acknowledged'") if r.get("acked_by")],
        timeout=30, what="ack in alert history")
    assert [r["acked_by"] for r in rows] == ["li.facilities"]
    after = _get(stack, "/api/v1/alerts", days=400).json()["alerts"]
    assert next(a for a in after if a["fingerprint"] == fp)["acked_by"] == "li.facilities"
    # the stored history is merged in: the simulated days' alerts are listed too
    assert {"peak_demand", "meter_offline"} <= {a["rule"] for a in after}
    mall = _get(stack, "/api/v1/alerts", days=400, device="mall-main").json()["alerts"]
    assert [(a["rule"], a["state"]) for a in mall] == [("peak_demand", "resolved")]


def test_token_command_prints_a_hash_not_the_token_on_stdout() -> None:
    r = subprocess.run([sys.executable, "-m", "enmon", "api", "token", "--name", "x",
                        "--role", "facility_manager"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    token = r.stderr.split("token (shown once): ")[1].split()[0]
    import hashlib

    assert token not in r.stdout
    assert hashlib.sha256(token.encode()).hexdigest() in r.stdout
    r = subprocess.run([sys.executable, "-m", "enmon", "api", "openapi"], capture_output=True,
                       text=True, timeout=60)
    assert "/api/v1/alerts/{fingerprint}/ack" in json.loads(r.stdout)["paths"]
