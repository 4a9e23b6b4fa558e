"""The root of the ``poisonguard`` command: every sub-command is registered here, and
no command module imports this one."""
from __future__ import annotations

import typer

from poisonguard.pipelines.cli import emit, evaluate, run, watch
from poisonguard.pipelines.cli.common import CONTEXT_SETTINGS, console
from poisonguard.pipelines.cli.expectations import expectations_app
from poisonguard.pipelines.cli.review import review_app
from poisonguard.pipelines.core.version import __version__

app = typer.Typer(
    help="Detect poisoned rows in training data, quarantine them, and emit a signed clean dataset.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings=CONTEXT_SETTINGS,
)


def _show_version(value: bool) -> None:
    if value:
        console.print(f"poisonguard {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Detect poisoned rows in training data, quarantine them, and emit a signed clean dataset."""
app.command("run")(run.run)
app.command("verify")(run.verify)
app.command("keygen")(run.keygen)
app.command("emit")(emit.emit_command)
app.command("watch")(watch.watch_command)
app.command("serve")(watch.serve_command)
app.command("evaluate")(evaluate.evaluate_command)
app.add_typer(expectations_app, name="expectations")
app.add_typer(review_app, name="review")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
