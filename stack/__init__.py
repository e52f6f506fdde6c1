"""The whole stack wired together: the ``enmon`` command's table of parts and the demo.

This is the one package allowed to import every part (gateway, ingest, rules,
inspector, deploy, firmware_sim); nothing imports it. See README.md.
"""
