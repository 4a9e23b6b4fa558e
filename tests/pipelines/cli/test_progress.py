"""The spinner's line follows the stages: every stage announced in order, in words, with the attack being judged."""

from poisonguard.pipelines.cli.progress import StageProgress
from poisonguard.pipelines.core.config import DEFAULT_DETECTORS
from poisonguard.pipelines.core.stages import detector_run_order, stage_listener
from poisonguard.pipelines.redteam.evaluate import evaluate
from poisonguard.pipelines.runner import execute
from poisonguard.pipelines.core.settings import make_settings
from tests.tiny_data import write_tiny_dataset


class Lines:
    def __init__(self):
        self.lines = []

    def update(self, text):
        self.lines.append(text)


def test_a_line_names_the_stage_the_detector_and_the_time():
    ticks = iter([100.0, 112.4, 130.0])
    status = Lines()
    progress = StageProgress(status, rows=244, detectors=["outlier.ecod", "label.knn"], clock=lambda: next(ticks))
    progress("check-expectations")
    progress("detect-label.knn")
    assert status.lines == [
        "checking the expectation suite · 244 rows · 12 s in",
        "detector label.knn (2 of 2) · 244 rows · 30 s in",
    ]


def test_a_run_announces_every_stage_in_order(tmp_path):
    tiny = write_tiny_dataset(tmp_path / "data")
    settings = make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"])
    heard = []
    with stage_listener(heard.append):
        execute(settings)
    assert heard == ["load-inputs", "check-expectations", "check-batch", "encode-features",
                     *[f"detect-{name}" for name in detector_run_order(DEFAULT_DETECTORS)], "decide", "check-model-impact",
                     "collect-evidence", "publish"]
    heard.clear()
    execute(make_settings([tiny["batch"]], out=tmp_path / "out2", config_path=tiny["config"]))
    assert heard == []  # the listener is gone after its block


def test_an_evaluation_says_which_batch_it_judges(tmp_path):
    tiny = write_tiny_dataset(tmp_path / "data")
    status = Lines()
    progress = StageProgress(status, rows=None, detectors=[], attacks=2)
    with stage_listener(progress):
        evaluate(tiny["batch"], label="label", id_column="id", attacks=["far_rows"], seed=0,
                 detectors=["outlier.ecod"])
    assert status.lines[0].startswith("batch 'none' (1 of 2) · checking the expectation suite")
    assert any(line.startswith("batch 'far_rows' (2 of 2) · detector outlier.ecod") for line in status.lines)


def test_a_batch_rejected_by_its_schema_runs_no_detector(tmp_path):
    tiny = write_tiny_dataset(tmp_path / "data")
    text = tiny["batch"].read_text().splitlines()
    header = text[0].split(",")
    dropped = header.index("y")
    tiny["batch"].write_text("\n".join(",".join(v for i, v in enumerate(line.split(",")) if i != dropped)
                                       for line in text) + "\n")
    heard = []
    with stage_listener(heard.append):
        summary = execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"]))
    assert summary.status == "rejected" and "y" in str(summary.rejection())
    assert heard == ["load-inputs", "check-expectations", "check-batch", "reject-batch"]
