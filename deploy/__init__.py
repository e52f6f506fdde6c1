"""Putting enmon on real machines: broker identities and ACLs, certificates, health checks.

The ``enmon deploy`` command (``cli.py``); the configs it goes with live in the folders
beside it (``compose/``, ``pi/``, ``cluster/``, ``grafana/``). See README.md.
"""
