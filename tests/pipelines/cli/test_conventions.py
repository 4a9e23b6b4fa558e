"""The command line as its neighbours behave: -h, --version, conventional help, errors first and in one line."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors.base import Detector, DetectorError, DetectorTags
from poisonguard.detectors import registry
from poisonguard.detectors.registry import register
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.core.version import __version__
from poisonguard.pipelines.runner import execute
from poisonguard.pipelines.web.views import number
from tests.cli_helpers import invoke
from tests.tiny_data import write_tiny_dataset


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


def test_version_and_short_help():
    assert invoke("--version").output.strip() == f"poisonguard {__version__}"
    for command in ([], ["run"], ["review"], ["review", "release"], ["expectations", "infer"]):
        result = invoke(*command, "-h")
        assert result.exit_code == 0 and "Usage: " in result.output and "Show this message and exit" in result.output


def test_help_shows_conventional_metavars_and_nothing_for_flags():
    text = invoke("run", "--help").output
    assert "BATCH..." in text and "PATH" in text and "TEXT" in text
    assert "<bool>" not in text and "<list" not in text and "{batches}" not in text


def test_a_semicolon_csv_is_named_as_such_before_any_work(tiny, tmp_path):
    batch = pd.read_csv(tiny["batch"], dtype=str)
    semicolons, reference = tmp_path / "semi.csv", tmp_path / "reference-semi.csv"
    batch.to_csv(semicolons, sep=";", index=False)
    pd.read_csv(tiny["reference"], dtype=str).to_csv(reference, sep=";", index=False)  # the separator is the dataset's
    result = invoke("run", semicolons, "--config", tiny["config"], "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert f"{semicolons}: the header reads as one column" in line and "pass --sep ';'" in line
    # With the separator named (the option's value reaches the reader), the same file runs.
    summary = execute(make_settings([semicolons], out=tmp_path / "out", config_path=tiny["config"], separator=";",
                                    reference=reference))
    assert summary.rows_in == len(batch)


def test_a_decimal_comma_csv_is_read_when_told_and_named_when_not(tiny, tmp_path):
    def european(source, target):  # a spreadsheet's export where the comma is the decimal mark
        frame = pd.read_csv(source, dtype=str)
        frame[["x", "y"]] = frame[["x", "y"]].apply(lambda column: column.str.replace(".", ",", regex=False))
        frame.to_csv(target, sep=";", index=False)

    batch, reference = tmp_path / "batch-eu.csv", tmp_path / "reference-eu.csv"
    european(tiny["batch"], batch)
    european(tiny["reference"], reference)
    # Read with a decimal point the numbers are text: refused before any work, naming file and column.
    result = invoke("run", batch, "--config", tiny["config"], "--reference", reference, "--sep", ";",
                    "--out", tmp_path / "refused")
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert f"{reference}: column 'x' holds numbers written with a comma (e.g. '" in line
    assert "pass --decimal ','" in line and "dataset.categorical" in line
    # Told, it is the plain file's run: the same rows quarantined, the same numbers signed.
    plain = execute(make_settings([tiny["batch"]], out=tmp_path / "plain", config_path=tiny["config"]))
    told = execute(make_settings([batch], out=tmp_path / "told", config_path=tiny["config"], reference=reference,
                                 separator=";", decimal=","))
    quarantined = [sorted(pd.read_parquet(s.out / "quarantine.parquet")["id"]) for s in (plain, told)]
    assert quarantined[0] == quarantined[1] and len(quarantined[0]) >= 4
    pd.testing.assert_frame_equal(pd.read_parquet(told.out / "clean.parquet"), pd.read_parquet(plain.out / "clean.parquet"))
    # Against a Parquet reference (numbers typed), the untold batch is rejected, the comma named.
    pd.read_csv(tiny["reference"]).to_parquet(tmp_path / "reference.parquet")
    rejected = execute(make_settings([batch], out=tmp_path / "untold", config_path=tiny["config"], separator=";",
                                     reference=tmp_path / "reference.parquet"))
    assert rejected.status == "rejected"
    assert [f for f in rejected.batch_failures if "column 'x' should be numeric" in f and "pass --decimal ','" in f]


def test_a_folder_stands_for_its_batch_files_and_names_the_run(tiny, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    batch = pd.read_csv(tiny["batch"], dtype=str)
    batch.iloc[:20].to_csv(folder / "part-1.csv", index=False)
    batch.iloc[20:].to_csv(folder / "part-2.csv", index=False)
    (folder / ".hidden.csv").write_text("ignored")
    config = tmp_path / "unnamed.toml"
    config.write_text(tiny["config"].read_text().replace('name = "tiny"\n', "")
                      .replace('reference = "reference.csv"', f'reference = "{tiny["reference"]}"'))
    settings = make_settings([folder], out=tmp_path / "out", config_path=config)
    assert [path.name for path in settings.batches] == ["part-1.csv", "part-2.csv"]
    assert settings.config.dataset.name == "part-1"  # not "dataset": named after its first batch file
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("run", empty, "--config", tiny["config"], "--out", tmp_path / "out2")
    assert result.exit_code == 2 and f"{empty}: a folder with no batch file in it" in result.output


def test_a_missing_key_is_refused_before_any_work(tiny, tmp_path):
    result = invoke("run", tiny["batch"], "--config", tiny["config"], "--key", tmp_path / "nosuch.pem",
                    "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "nosuch.pem" in line and "not found" in line
    assert not (tmp_path / "out").exists()


class _Grumbling(Detector):
    """A detector that warns, as scikit-learn's solvers do, and flags nothing."""

    name = "test.grumbling"
    tags = DetectorTags()
    _fitted_attribute = "fitted_"

    def __init__(self, alpha=0.01, random_state=0):
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, X, y=None):
        warnings.warn("lbfgs failed to converge (status=1)", RuntimeWarning, stacklevel=2)
        self.fitted_ = True
        return self

    def findings(self, X, y=None, row_ids=None):
        scores = np.zeros(len(X))
        return self._judged(scores, np.ones(len(X)), np.full(len(X), "fine", dtype=object), np.asarray(row_ids))


@pytest.fixture
def grumbling(monkeypatch):
    """``_Grumbling`` registered for one test: left registered, it changed the list of known detectors that
    another test's error message names, in whichever test process ran this one first."""
    monkeypatch.setattr(registry, "_REGISTRY", registry.registered_detectors())  # the built-ins loaded first
    register(_Grumbling)


def test_library_warnings_become_report_notes_not_terminal_noise(tiny, tmp_path, recwarn, grumbling):
    config = tmp_path / "grumble.toml"
    config.write_text(tiny["config"].read_text().replace('reference = "reference.csv"', f'reference = "{tiny["reference"]}"')
                      .replace("[detection]\n", '[detection]\ndetectors = ["test.grumbling"]\n'))
    summary = execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=config))
    assert "test.grumbling warned: RuntimeWarning: lbfgs failed to converge (status=1)" in summary.notes
    assert not [w for w in recwarn if "lbfgs" in str(w.message)]
    assert "lbfgs failed to converge" in (summary.out / "report.html").read_text()


def test_a_label_with_one_trusted_row_is_left_out_of_the_label_detectors_only(tiny, tmp_path):
    reference = pd.read_csv(tiny["reference"], dtype=str)
    lone = reference[reference["label"] == "blue"].index[1:]
    reference = reference.drop(index=lone)  # one 'blue' row left in the trusted data
    path = tmp_path / "reference.csv"
    reference.to_csv(path, index=False)
    # (The batch-level label-shift check would reject this batch: 15 'blue' rows against one trusted.)
    config = tmp_path / "no-batch-checks.toml"
    config.write_text(tiny["config"].read_text() + "[batch]\nchecks = []\n")
    summary = execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=config, reference=path))
    assert summary.status == "succeeded"
    assert any("Rows labelled 'blue' were not judged by the label detectors" in note for note in summary.notes)
    ran = {row["check"]: row for row in summary.per_check}
    blue = int((pd.read_csv(tiny["batch"], dtype=str)["label"] == "blue").sum())
    assert ran["label.trusted_model"]["rows_checked"] == 45 - blue  # the other labels were judged
    assert "skipped" not in str(ran["label.trusted_model"]["threshold_note"])


def test_numbers_on_the_review_page_have_no_thousands_separators():
    assert number(2007) == "2007" and number(1125.5) == "1125.5" and number(0.00001) == "1e-05"


def test_a_detector_without_confidence_runs_unless_the_config_asks_for_it(tiny, tmp_path, grumbling):
    config = tmp_path / "grumble.toml"
    text = (tiny["config"].read_text().replace('reference = "reference.csv"', f'reference = "{tiny["reference"]}"')
            .replace("[detection]\n", '[detection]\ndetectors = ["test.grumbling"]\n'))
    config.write_text(text)
    # The default confidence is not forced on it: it runs, and the run records what its level holds.
    out = execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=config)).out
    checks = json.loads((out / "provenance.json").read_text())["checks"]
    assert [check["calibration"] for check in checks if check["name"] == "test.grumbling"] == [
        "takes no confidence: its level holds on average over references"]
    config.write_text(text.replace("[detection]\n", "[detection]\ncalibration_confidence = 0.9\n"))
    # Refused by name, as an unknown detector parameter is, before anything is written.
    with pytest.raises(DetectorError, match="detector 'test.grumbling' has no parameter 'confidence'"):
        execute(make_settings([tiny["batch"]], out=tmp_path / "held", config_path=config))
    assert not (tmp_path / "held").exists()
