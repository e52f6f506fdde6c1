"""``python -m enmon`` is the ``enmon`` command (used to start parts as subprocesses)."""

from enmon.cli import main

main()
