"""What every command-line module shares: consoles, plain error reporting, quiet services."""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import typer
from rich.console import Console

from poisonguard.pipelines.core.errors import USER_ERRORS, ConfigError, InputError, exit_code

# About when the command started (this module is among the first it imports),
# for the "time: ... in all" line of a run.
STARTED = time.perf_counter()

console = Console()
error_console = Console(stderr=True)
# Every command and group answers -h as well as --help, as their neighbours do.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def reports_errors(command):
    """Print a user error (bad input, config, rejected batch ...) as one line and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_code(error)) from None

    return wrapper


def quiet_services() -> None:
    """Telemetry off and logs short, unless the user chose otherwise."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def require_existing_files(inputs: Sequence[Path], config: Optional[Path] = None) -> None:
    """Name a missing input or config file at once, before the pipeline's seconds of imports.

    The loaders say the same later (and more: formats, columns), but a
    mistyped path is the commonest mistake, and scikit-learn and Great
    Expectations took 4 s to import before one was reported.
    """
    for path in inputs:
        if path is not None and not Path(path).exists():
            raise InputError(f"{path}: file not found")
    if config is not None and not Path(config).exists():
        raise ConfigError(f"{config}: config file not found")
