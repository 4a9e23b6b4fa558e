"""The root of the ``poisonguard`` command: every sub-command is registered here, and
no command module imports this one."""
from __future__ import annotations

import typer

from poisonguard.pipelines.cli import emit, evaluate, run, watch
from poisonguard.pipelines.cli.expectations import expectations_app
from poisonguard.pipelines.cli.review import review_app

app = typer.Typer(
    help="Detect poisoned rows in training data, quarantine them, and emit a signed clean dataset.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
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
