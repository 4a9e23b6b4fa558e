"""``parallel_detectors.run_detectors_at_once``: the detectors as tasks (fits, then chunks), with run_detector's outcomes."""
import pickle

import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors.registry import registered_detectors
from poisonguard.pipelines.core.checks import encode_features, run_detector
from poisonguard.pipelines.core.inputs import load_inputs
from poisonguard.pipelines.core.parallel_detectors import run_detectors_at_once
from poisonguard.pipelines.core.settings import make_settings
from tests.detectors.test_contract import JUDGED_IN_CHUNKS

DETECTORS = sorted(registered_detectors())


def three_classes(n_rows, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n_rows)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 4.0, -1.0]])
    frame = pd.DataFrame(np.round(centres[codes] + rng.normal(size=(n_rows, 3)), 3), columns=["x", "y", "z"])
    frame["label"] = np.array(["a", "b", "c"])[codes]
    return frame


def features_and_settings(tmp_path, *, reference_rows, chunk_rows=37, extra=""):
    batch = three_classes(160, 1)
    batch.loc[[3, 50, 99], ["x", "y", "z"]] = [[30.0, -30.0, 9.0], [-25.0, 25.0, 9.0], [40.0, 40.0, -9.0]]
    batch.loc[[7, 8, 60], "label"] = ["c", "a", "b"]
    batch.loc[[20, 21], "label"] = ""  # unlabelled rows: the label detectors are given the others
    batch.to_csv(tmp_path / "batch.csv", index=False)
    lines = ["[dataset]", 'label = "label"']
    if reference_rows:
        reference = three_classes(reference_rows, 2)
        reference.loc[len(reference)] = [1.0, 1.0, 1.0, "d"]  # a label with one trusted row: left out
        reference.to_csv(tmp_path / "reference.csv", index=False)
        lines.append('reference = "reference.csv"')
    lines += ["[detection]", "detectors = [" + ", ".join(f'"{name}"' for name in DETECTORS) + "]",
              f"chunk_rows = {chunk_rows}", extra]
    (tmp_path / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", config_path=tmp_path / "config.toml")
    return encode_features(load_inputs(settings)), settings


class RecordingRunner:
    """A parallel stage runner that runs its tasks one by one, arguments and results pickled as to a worker."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, stages):
        self.calls.append([name for name, _, _ in stages])
        results = []
        for _, function, args in stages:
            sent = pickle.loads(pickle.dumps((function, args)))
            results.append(pickle.loads(pickle.dumps(sent[0](*sent[1]))))
        return results


def assert_same_outcome(at_once, alone):
    assert (at_once.name, at_once.kind, at_once.rows_checked) == (alone.name, alone.kind, alone.rows_checked)
    assert at_once.details == alone.details
    pd.testing.assert_frame_equal(at_once.findings, alone.findings)
    assert (at_once.judged is None) == (alone.judged is None)
    if alone.judged is not None:
        for field in ("row_ids", "scores", "p_values", "flagged", "findings_rows"):
            np.testing.assert_array_equal(getattr(at_once.judged, field), getattr(alone.judged, field))


def test_with_a_reference_every_detector_is_fitted_then_scored_in_chunks_or_whole(tmp_path):
    features, settings = features_and_settings(tmp_path, reference_rows=120)
    runner = RecordingRunner()
    outcomes = run_detectors_at_once(DETECTORS, features, settings, runner)

    assert [outcome.name for outcome in outcomes] == DETECTORS
    own_ids = set(map(id, features.batch_row_ids))
    for outcome in outcomes:
        assert_same_outcome(outcome, run_detector(outcome.name, features, settings))
        # Named by this process's own id strings, not the copies the tasks sent back.
        assert set(map(id, outcome.judged.row_ids)) <= own_ids
    fits, scoring = runner.calls
    assert fits == [f"fit-{name}" for name in DETECTORS]
    # 158 labelled rows: five chunks of at most 37 for a label detector, 160 rows (five) for the others.
    expected = []
    for name in DETECTORS:
        if name in JUDGED_IN_CHUNKS:
            expected += [f"score-{name} {number}/5" for number in range(1, 6)]
        else:
            expected.append(f"detect-{name}")
    assert scoring == expected
    trusted = next(outcome for outcome in outcomes if outcome.name == "label.trusted_model")
    assert trusted.details["rare_labels"] == ["d"] and trusted.rows_checked == 158
    assert trusted.judged.flagged.any()  # the test judges something


def test_one_chunk_when_the_batch_is_smaller_than_a_chunk(tmp_path):
    features, settings = features_and_settings(tmp_path, reference_rows=120, chunk_rows=100_000)
    runner = RecordingRunner()
    outcomes = run_detectors_at_once(["outlier.ecod"], features, settings, runner)
    assert runner.calls == [["fit-outlier.ecod"], ["score-outlier.ecod 1/1"]]
    assert_same_outcome(outcomes[0], run_detector("outlier.ecod", features, settings))


def test_without_a_reference_each_detector_is_one_task(tmp_path):
    features, settings = features_and_settings(tmp_path, reference_rows=0)
    runner = RecordingRunner()
    outcomes = run_detectors_at_once(DETECTORS, features, settings, runner)
    # label.trusted_model repeats confident learning's test here: skipped before any task.
    assert runner.calls == [[], [f"detect-{name}" for name in DETECTORS if name != "label.trusted_model"]]
    for outcome in outcomes:
        assert_same_outcome(outcome, run_detector(outcome.name, features, settings))
    assert "skipped" in outcomes[DETECTORS.index("label.trusted_model")].details


@pytest.mark.parametrize("reference_rows", [5, 12])
def test_too_little_to_judge_is_skipped_as_alone(tmp_path, reference_rows):
    # A reference of a few rows: some detectors cannot fit on it (NotEnoughData), on a worker as here.
    features, settings = features_and_settings(tmp_path, reference_rows=reference_rows)
    outcomes = run_detectors_at_once(DETECTORS, features, settings, RecordingRunner())
    alone = [run_detector(name, features, settings) for name in DETECTORS]
    for outcome, expected in zip(outcomes, alone):
        assert_same_outcome(outcome, expected)
    if reference_rows == 5:
        assert any("skipped" in outcome.details for outcome in alone)
