"""The command line: exit codes, one-line errors, and nothing written on failure."""
import ast
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from poisonguard.pipelines.cli.app import app
from tests.tiny_data import write_tiny_dataset

runner = CliRunner()


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_keygen_writes_a_private_and_a_public_key(tmp_path):
    result = invoke("keygen", "--out", tmp_path / "keys")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "keys" / "private.pem").stat().st_mode & 0o777 == 0o600
    assert b"PUBLIC KEY" in (tmp_path / "keys" / "public.pem").read_bytes()
    again = invoke("keygen", "--out", tmp_path / "keys")
    assert again.exit_code != 0 and "private.pem" in again.output


def bad_inputs(tiny, tmp_path):
    """(name, arguments, expected words in the message) for each kind of bad input."""
    batch, reference = tiny["batch"], tiny["reference"]
    duplicate = tmp_path / "dup.csv"
    pd.concat([pd.read_csv(batch, dtype=str)] * 2).to_csv(duplicate, index=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("id,x,y,shade,label\n")
    unreadable = tmp_path / "broken.parquet"
    unreadable.write_bytes(b"PAR1 this is not parquet")
    no_label_reference = tmp_path / "ref-no-label.csv"
    pd.read_csv(reference).drop(columns=["label"]).to_csv(no_label_reference, index=False)
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[dataset\nlabel = 'label'\n")
    return [
        ("missing file", [tmp_path / "nope.csv", "--label", "label"], ["nope.csv", "not found"]),
        ("unreadable file", [unreadable, "--label", "label"], ["broken.parquet", "cannot read as parquet"]),
        ("missing label column", [batch, "--label", "target"], ["batch.csv", "no label column 'target'"]),
        ("missing id column", [batch, "--label", "label", "--id", "key"], ["batch.csv", "no id column 'key'"]),
        ("duplicate ids", [duplicate, "--label", "label", "--id", "id"], ["duplicate id", "dup.csv row"]),
        ("empty batch", [empty, "--label", "label"], ["empty.csv", "no rows"]),
        (
            "reference without the label",
            [batch, "--label", "label", "--reference", no_label_reference],
            ["ref-no-label.csv", "no label column 'label'"],
        ),
        ("unparseable config", [batch, "--config", bad_config], ["bad.toml", "not valid TOML"]),
        ("no label anywhere", [batch], ["no label column given", "--label"]),
    ]


def test_bad_input_gives_one_clear_line_and_creates_nothing(tiny, tmp_path):
    for name, arguments, words in bad_inputs(tiny, tmp_path):
        out = tmp_path / "out"
        result = invoke("run", *arguments, "--out", out)
        assert result.exit_code == 2, (name, result.output)
        for word in words:
            assert word in result.output, (name, word, result.output)
        assert "Traceback" not in result.output, name
        assert not out.exists(), name
        assert not list(tmp_path.glob(".out*")), name


def command_in_a_fresh_process(arguments: list[str], modules: tuple[str, ...]) -> tuple[str, list[str]]:
    """What ``poisonguard ARGUMENTS`` prints in a new interpreter (stdout, then stderr), and which of ``modules`` it imported."""
    code = (
        "import sys; from poisonguard.pipelines.cli.app import app\n"
        f"try:\n    app({arguments!r})\nexcept SystemExit:\n    pass\n"
        f"print('IMPORTED', [m for m in {modules!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    output, _, imported = result.stdout.rpartition("IMPORTED ")
    assert imported, result.stdout + result.stderr
    return output + result.stderr, ast.literal_eval(imported)


def test_help_answers_without_importing_prefect():
    output, imported = command_in_a_fresh_process(["run", "--help"], ("prefect", "great_expectations", "pyod", "cleanlab"))
    assert "--reference" in output
    assert imported == []


@pytest.mark.parametrize("command", ["run", "evaluate"])
@pytest.mark.parametrize("missing", ["batch", "reference", "config"])
def test_a_missing_file_is_named_before_the_pipeline_is_imported(tmp_path, command, missing):
    # A mistyped path waited 4 s for scikit-learn and Great Expectations to import.
    present = tmp_path / "present.csv"
    present.write_text("id,x,label\n1,0.5,a\n")
    paths = {"batch": present, "reference": present, "config": None}
    paths[missing] = tmp_path / f"no-{missing}.csv"
    arguments = [command, str(paths["batch"]), "--label", "label", "--reference", str(paths["reference"])]
    arguments += ["--config", str(paths["config"])] if paths["config"] else []
    arguments += ["--out", str(tmp_path / "out")] if command == "run" else []
    output, imported = command_in_a_fresh_process(arguments, ("sklearn", "great_expectations", "prefect"))
    assert imported == []
    message = "config file not found" if missing == "config" else "file not found"
    assert f"no-{missing}.csv: {message}" in " ".join(output.split()), output


def test_reviewing_does_not_import_the_detectors(tiny_run):
    # A reviewer's every command would pay scikit-learn's 2.5 s of imports.
    output, imported = command_in_a_fresh_process(
        ["review", "list", "--limit", "3"], ("sklearn", "prefect", "great_expectations", "pyod")
    )
    assert "pending" in output
    assert imported == []


def test_verify_reports_a_missing_signature(tmp_path):
    folder = tmp_path / "unsigned"
    folder.mkdir()
    (folder / "clean.parquet").write_bytes(b"x")
    invoke("keygen", "--out", tmp_path / "keys")
    result = invoke("verify", folder, "--public-key", tmp_path / "keys" / "public.pem")
    assert result.exit_code == 4 and "signature.sig" in result.output


def test_expectations_infer_writes_a_reviewable_suite(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("expectations", "infer", "--reference", tiny["reference"], "--label", "label", "--name", "tiny")
    assert result.exit_code == 0, result.output
    path = Path("expectations/suites/tiny.json")
    text = path.read_text()
    assert '"expect_column_values_to_be_between"' in text and '"red"' in text
    again = invoke("expectations", "infer", "--reference", tiny["reference"], "--label", "label", "--name", "tiny")
    assert again.exit_code == 2 and "--force" in again.output


def test_the_spinner_says_what_it_reads_before_the_first_stage(tiny, tmp_path, monkeypatch):
    # A million CSV rows take seconds to read and type, before any stage is announced.
    from poisonguard.pipelines.cli import common

    shown = []
    real_status = common.console.status
    monkeypatch.setattr(common.console, "status", lambda text, **options: shown.append(text) or real_status(text, **options))
    result = invoke("run", tiny["batch"], "--config", tiny["config"], "--out", tmp_path / "out")
    assert result.exit_code in (0, 1), result.output
    assert shown[:2] == ["reading 1 batch file and the trusted reference…", "working…"]
