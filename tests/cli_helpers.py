"""Calling the command line from tests: invoke, and the review listing as JSON."""
import json

from typer.testing import CliRunner

from poisonguard.pipelines.cli.app import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def listing(*options):
    result = invoke("review", "list", "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def entry_id(row_id):
    return next(item["id"] for item in listing("--limit", 1000) if item["row_id"] == row_id)


def shown(entry):
    result = invoke("review", "show", entry, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
