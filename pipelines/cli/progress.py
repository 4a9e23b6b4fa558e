"""The line under the spinner while a run or an evaluation works: which stage, how far, since when.

Imported inside the commands, after the pipeline (see ``cli/run.py``).
"""
from __future__ import annotations

import time
from typing import Optional

from poisonguard.pipelines.core.stages import ATTACK_STAGE

# Stage names (core.stages, runner.execute) in words; detectors get their own line.
STAGE_WORDS = {
    "load-inputs": "reading the batch",
    "check-expectations": "checking the expectation suite",
    "check-batch": "batch-level checks (schema, drift)",
    "encode-features": "encoding the features",
    "decide": "deciding which rows to quarantine",
    "check-model-impact": "checking the model impact",
    "collect-evidence": "collecting evidence for the reviewers",
    "publish": "signing and publishing",
    "reject-batch": "recording the rejected batch",
    "hold-batch": "holding the batch for review",
}
DETECTOR_STAGE = "detect-"


class StageProgress:
    """Rewrites a rich ``Status`` as stages start: ``stage · rows · seconds in``.

    Parameters
    ----------
    status : rich.status.Status (anything with ``update(str)``)
    rows : int or None
        Rows of the batch, shown on every line (None: not shown).
    detectors : list of str
        The configured detectors, to say "2 of 7".
    attacks : int
        How many batches an evaluation judges (0 for a run).
    """

    def __init__(self, status, *, rows: Optional[int], detectors: list[str], attacks: int = 0, clock=time.perf_counter):
        self.status = status
        self.rows = rows
        self.detectors = list(detectors)
        self.attacks = attacks
        self.clock = clock
        self.started = clock()
        self.attack = None
        self.attacks_seen = 0

    def __call__(self, stage: str) -> None:
        if stage.startswith(ATTACK_STAGE):
            self.attack = stage[len(ATTACK_STAGE):]
            self.attacks_seen += 1
            return
        self.status.update(self.line(stage))

    def line(self, stage: str) -> str:
        if stage.startswith(DETECTOR_STAGE):
            name = stage[len(DETECTOR_STAGE):]
            place = f" ({self.detectors.index(name) + 1} of {len(self.detectors)})" if name in self.detectors else ""
            words = f"detector {name}{place}"
        else:
            words = STAGE_WORDS.get(stage, stage)
        where = ""
        if self.attack is not None:
            where = f"batch '{self.attack}' ({self.attacks_seen} of {self.attacks}) · "
        rows = f" · {self.rows} rows" if self.rows is not None else ""
        return f"{where}{words}{rows} · {self.clock() - self.started:.0f} s in"
