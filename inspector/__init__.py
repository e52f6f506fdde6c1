"""Inspector and facility-manager tools: meter history, exports, reports, HTTP API, console.

Inspectors and facility managers read Python no better than they read Modbus
registers, so everything here ends in something they can open: a table on the
terminal, a CSV or XLSX file, an HTML or PDF report, a web console. Layout::

    store.py     the only module that talks to InfluxDB (InfluxQL via enmon.influx)
    history.py   pure: gaps, flags, rollups of one meter's readings; CSV/XLSX export
    report.py    pure: a month's or year's figures, using energy.accounting / energy.quota
    render.py    HTML (Jinja2) with inline SVG charts, PDF via WeasyPrint
    alerts.py    pure fold of the ``alert`` measurement; acknowledging through the lifecycle
    auth.py      bearer tokens with roles (inspector reads, facility manager acknowledges)
    api.py       FastAPI app: sites, buildings, meters, history, alerts, reports, console
    demo.py      a simulated campus month pushed through the wire contract and ingest
    cli.py       ``enmon history``, ``enmon report``, ``enmon api`` (imports only typer)

Heavy dependencies (fastapi, openpyxl, weasyprint, jinja2) come from the
``inspector`` extra and are imported inside the functions that need them.
"""
