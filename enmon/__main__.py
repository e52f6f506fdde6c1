"""``python -m enmon`` is the ``enmon`` command (used to start parts as subprocesses).

The command's table of parts sits above every part (``stack.cli``); the shared core
imports no part, so it runs whatever the installed ``enmon`` console script names.
"""

from importlib.metadata import entry_points

(_script,) = entry_points(group="console_scripts", name="enmon")
_script.load()()
