"""Key energy-using unit statistics (重点用能单位) and their upload to a monitoring platform.

A deployable part beside rules and the inspector: it reads stored readings, computes the
unit's daily and monthly statistics with :mod:`energy.keyunit`, keeps every document in a
durable outbox and sends it to the configured platform until the platform acknowledges it.
"""
