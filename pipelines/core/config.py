"""The run configuration: a pydantic model loaded from a TOML file.

Every option has a default that works on ``data_samples/``. Relative paths in a
config file are resolved against the folder of that file, so a config travels
with its data.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dependency there)
    import tomli as tomllib

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from poisonguard.pipelines.core.errors import ConfigError

# Every family of poisoning has a detector by default: far or corrupted rows,
# a value its row's other values do not predict (a corrupted cell in range, a
# stamped trigger), rows impossible for their label,
# flipped labels (three complementary views), near-duplicate floods and
# backdoor triggers. One decision over all their p-values keeps the whole
# batch within DetectionConfig.max_false_positive_rate.
DEFAULT_DETECTORS = [
    "outlier.ecod",
    "outlier.cellwise",
    "outlier.class_conditional",
    "label.trusted_model",
    "label.confident_learning",
    "label.knn",
    "duplicates.flood",
    "backdoor.trigger",
]
# On ten real tables with 10 % references, on average over references let one
# clean batch in eleven exceed the rate (up to 7.8 % at 5 %, on 147 trusted
# rows); 0.75 kept all 100 within it for 0.01-0.04 of recall (benchmarks/README.md,
# "The rate for every reference, not on average"). 0.9 cost 0.05-0.11.
DEFAULT_CALIBRATION_CONFIDENCE = 0.75


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """What the columns of a dataset mean."""

    name: str = Field("dataset", description="Dataset name; names the expectation suite.")
    label: Optional[str] = Field(None, description="Label column.")
    id: Optional[str] = Field(None, description="Id column; a content hash when absent.")
    reference: Optional[Path] = Field(None, description="Trusted reference file.")
    suite: Optional[Path] = Field(None, description="Expectation suite JSON to apply.")
    numeric: Optional[list[str]] = Field(None, description="Numeric feature columns.")
    categorical: Optional[list[str]] = Field(None, description="Categorical feature columns.")
    ignore: list[str] = Field(default_factory=list, description="Columns kept but not checked.")
    separator: str = Field(",", description="Field separator of CSV batch and reference files.")
    decimal: str = Field(
        ".", description="Decimal mark of numbers in CSV files: '.' or ',' (then a point groups thousands: 1.234,5)."
    )

    @field_validator("separator")
    @classmethod
    def _separator_is_one_character(cls, value: str) -> str:
        if len(value) != 1 or value in "\"\r\n":
            raise ValueError("must be one character other than a quote or a line break, e.g. ';'")
        return value

    @field_validator("decimal")
    @classmethod
    def _decimal_is_a_point_or_a_comma(cls, value: str) -> str:
        if value not in (".", ","):
            raise ValueError("must be '.' or ','")
        return value

    @property
    def csv_format(self) -> dict[str, str]:
        """How the dataset's CSV files are written: the keyword arguments of ``tables.read_file``."""
        return {"separator": self.separator, "decimal": self.decimal}

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, value: str) -> str:
        if not value or any(ch in value for ch in "/\\\0") or value in {".", ".."}:
            raise ValueError("must be a plain name usable as a file name")
        return value


class DetectionConfig(_Strict):
    """Which detectors run, and the share of clean rows a batch may lose.

    ``max_false_positive_rate`` is the share of clean rows the statistical
    checks together may quarantine: the rules an inferred suite learnt from
    the reference (ranges, value sets, never-empty) and every detector. One
    decision over all of them (``pipelines.core.decision.apply_decision_rule``):
    the inferred rules may quarantine at most half of it, counted on the
    batch; each row's detector p-values are combined into one p-value
    (``combine``: Simes, or Bonferroni) and the row is quarantined when it is
    at most what the rules left. Hard rules (a cell that does not parse, an
    empty or unknown label, a rule written by hand) are no statistical
    finding and are outside the rate. ``alpha`` is the level of each
    detector's own flag (lowered to ``max_false_positive_rate / detectors``):
    what a detector says alone, and never more than the decision quarantines.
    With a reference, ``calibration_confidence`` (0.75 by default) holds
    each detector's level for that share of the references a batch could
    have been judged against, not only on average over them
    (calibration-conditional p-values, ``detectors.calibration``), at a
    cost in recall on small references; 0.5 gives the plain conformal
    p-values, which hold it on average (a median bound is never above the
    mean where a row can be flagged).
    """

    alpha: float = Field(0.01, gt=0.0, lt=0.5, description="Each detector's own flag level (capped, see above).")
    max_false_positive_rate: float = Field(
        0.05, gt=0.0, lt=0.5, description="Share of clean rows the inferred rules and detectors together may quarantine.",
    )
    combine: Literal["simes", "bonferroni"] = Field(
        "simes", description="How a row's detector p-values become one: simes (positive dependence) or bonferroni (any).",
    )
    calibration_confidence: float = Field(
        DEFAULT_CALIBRATION_CONFIDENCE, ge=0.5, lt=1.0,
        description=("With a reference, each detector holds its level for all but 1 - this share of the "
                     "references it could have been given; 0.5: only on average over them."),
    )
    detectors: list[str] = Field(default_factory=lambda: list(DEFAULT_DETECTORS))
    params: dict[str, dict] = Field(default_factory=dict, description="Per-detector parameters.")
    random_state: int = 0
    chunk_rows: int = Field(
        100_000, ge=1,
        description=("On a Dask cluster (run --dask), the batch rows a detector that judges in chunks scores "
                     "as one task."),
    )

    @property
    def detector_confidence(self) -> Optional[float]:
        """The ``confidence`` detectors are given: None at 0.5, the plain conformal p-values.

        A ``Beta(j + 1, n - j)`` median is under its mean ``(j + 1) / (n + 1)``
        for every count below half the trusted rows, so at 0.5 the bound
        changes no p-value a decision could use.
        """
        return None if self.calibration_confidence <= 0.5 else self.calibration_confidence

    @property
    def detector_alpha(self) -> float:
        """The level of each detector's own flag: ``alpha``, lowered to Bonferroni's share of the rate.

        At that level a detector's flag alone gets the row quarantined by
        either combination (when the inferred rules left the whole rate).
        """
        return min(self.alpha, self.max_false_positive_rate / max(len(self.detectors), 1))


class StoreConfig(_Strict):
    url: Optional[str] = Field(None, description="SQLAlchemy URL; SQLite in the state folder when absent.")


class SigningConfig(_Strict):
    key: Optional[Path] = Field(None, description="Private key PEM; the state folder's key when absent.")


BATCH_CHECKS = ("schema", "drift", "label_shift", "model_impact")


class BatchChecksConfig(_Strict):
    """Batch-level checks that quarantine a whole batch (``detectors.drift``).

    A distribution counts as shifted when its effect size exceeds the
    threshold *and* the difference is significant at ``p_value``. They need
    trusted rows (a reference, or a dataset's previous versions); without
    them only the schema is compared, with the suite.
    """

    checks: list[Literal["schema", "drift", "label_shift", "model_impact"]] = Field(
        default_factory=lambda: list(BATCH_CHECKS), description="Which batch-level checks run."
    )
    p_value: float = Field(0.001, gt=0.0, lt=1.0, description="Significance a shift must also reach.")
    min_rows: int = Field(20, ge=1, description="Distribution checks skip smaller batches (too noisy).")
    numeric_test: Literal["ks", "wasserstein"] = "ks"
    categorical_test: Literal["psi", "jensen_shannon"] = "psi"
    ks_threshold: float = Field(0.3, gt=0.0, le=1.0, description="Largest KS statistic D allowed.")
    wasserstein_threshold: float = Field(0.5, gt=0.0, description="Largest Wasserstein distance, in trusted SDs.")
    psi_threshold: float = Field(0.25, gt=0.0, description="Largest population stability index.")
    jensen_shannon_threshold: float = Field(0.2, gt=0.0, le=1.0, description="Largest Jensen-Shannon distance.")
    label_threshold: float = Field(
        0.25, gt=0.0, description="Largest shift of the label distribution, in categorical_test's statistic."
    )
    max_drifted_columns: int = Field(0, ge=0, description="Reject when more columns than this drift.")
    impact_model: Literal["logistic", "gradient_boosting", "random_forest"] = "logistic"
    impact_max_drop: float = Field(0.02, ge=0.0, lt=1.0, description="Accuracy the kept rows may cost on trusted rows.")
    impact_p_value: float = Field(
        0.01, gt=0.0, lt=1.0,
        description="Significance (McNemar) of that drop, and (Wilcoxon) of the worse held-out log-loss it needs too.",
    )
    impact_folds: int = Field(5, ge=2, le=20)
    impact_sample_rows: int = Field(
        20_000, ge=100,
        description="Kept batch rows, and trusted rows, the impact models train on, at most (seeded samples).",
    )

    @property
    def numeric_threshold(self) -> float:
        return self.ks_threshold if self.numeric_test == "ks" else self.wasserstein_threshold

    @property
    def categorical_threshold(self) -> float:
        return self.psi_threshold if self.categorical_test == "psi" else self.jensen_shannon_threshold


class WatchConfig(_Strict):
    """How ``poisonguard watch`` and ``serve`` treat an inbox of batches."""

    inbox: Optional[str] = Field(None, description="Inbox folder or fsspec URL (what `serve` watches).")
    root: Optional[Path] = Field(None, description="Where versions go: ROOT/NAME/vNNNN (default STATE/datasets).")
    settle_seconds: float = Field(
        2.0, ge=0.0, description="Files modified more recently than this are left for the next pass (still uploading)."
    )
    reference_rows: int = Field(
        5000, ge=10, description="Trusted rows the next batch is checked against: the configured reference, "
        "then a sample of the dataset's clean rows so far."
    )
    review_above: Optional[float] = Field(
        0.5, gt=0.0, le=1.0, description="Quarantine rate above which a person approves or rejects the batch."
    )
    review_timeout: int = Field(3600, ge=1, description="Seconds a paused flow waits for that person.")
    lease_seconds: int = Field(60, ge=5, description="A watcher that stops renewing its lock loses it after this.")
    max_attempts: int = Field(3, ge=1, description="A batch that fails this often is moved to rejected/.")


class RunConfig(_Strict):
    """Everything a run needs besides its batch files and output folder."""

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    batch: BatchChecksConfig = Field(default_factory=BatchChecksConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)

    def resolved_against(self, folder: Path) -> "RunConfig":
        """Return a copy whose relative paths are taken from ``folder``."""
        def absolute(path: Optional[Path]) -> Optional[Path]:
            if path is None or path.is_absolute():
                return path
            return (folder / path).resolve()

        dataset = self.dataset.model_copy(
            update={"reference": absolute(self.dataset.reference), "suite": absolute(self.dataset.suite)}
        )
        signing = self.signing.model_copy(update={"key": absolute(self.signing.key)})
        inbox = self.watch.inbox
        if inbox is not None and "://" not in inbox:
            inbox = str(absolute(Path(inbox)))
        watch = self.watch.model_copy(update={"root": absolute(self.watch.root), "inbox": inbox})
        return self.model_copy(update={"dataset": dataset, "signing": signing, "watch": watch})


def load_config(path: Optional[os.PathLike | str]) -> RunConfig:
    """Load a ``RunConfig`` from a TOML file, or the defaults when ``path`` is None.

    Raises
    ------
    ConfigError
        The file is missing, is not TOML, or does not fit the model; the
        message names the file and the offending key.
    """
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    return parse_config(text, source=str(path)).resolved_against(path.resolve().parent)


def parse_config(text: str, *, source: str = "<config>") -> RunConfig:
    """Parse TOML ``text`` into a ``RunConfig``; errors name ``source`` and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML ({error})") from None
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
