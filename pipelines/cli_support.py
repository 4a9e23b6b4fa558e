"""What every command-line module shares: consoles and plain error reporting."""
from __future__ import annotations

import functools

import typer
from rich.console import Console

from pipelines.errors import PoisonguardError

console = Console()
error_console = Console(stderr=True)


def reports_errors(command):
    """Print a PoisonguardError as one line and exit with its code, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PoisonguardError as error:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper
