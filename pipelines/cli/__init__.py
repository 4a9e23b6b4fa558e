"""The ``poisonguard`` command line (Typer + rich): the only code that imports them."""
from poisonguard.pipelines.cli.app import app, main

__all__ = ["app", "main"]
