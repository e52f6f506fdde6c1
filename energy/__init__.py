"""The energy domain, pure: every kWh, kgce, CO2, quota and efficiency figure enmon shows.

See README.md. No I/O here; the rule engine and the inspector both call these functions.
"""
