"""Commands of this part (filled in by the feature that owns it)."""

import typer

app = typer.Typer(no_args_is_help=True)
