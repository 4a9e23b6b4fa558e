"""Red-teaming: poison the user's own data and measure what poisonguard catches.

``poisonguard evaluate DATA --label COL`` takes a clean table, holds out a
clean test split, and for each attack family of
``poisonguard.pipelines.redteam.attacks`` injects poison at ``--rate`` into
the rest, judges each batch exactly as ``poisonguard run`` does
(``core.inputs.load_inputs`` then ``core.stages.judge_batch``; no Prefect,
nothing published or stored) and reports per attack
and per check precision, recall, F1 and false-positive rate, and the test
accuracy of a gradient-boosting model trained on the clean, poisoned and
sanitised rows (for the backdoor also the attack success rate on triggered
test rows). A ``none`` row (no attack) measures the false-positive rate alone.

Trusted reference: ``--reference FILE`` when given; otherwise a stratified
``TRUSTED_SHARE`` of DATA is split off as the trusted reference (and said
so), or with ``--self-referential`` the detectors run without one.
``evaluate`` (the function) also takes extra ``methods`` (name -> function of
the encoded batch returning flagged row ids), which is how
``benchmarks/detection.py`` scores other tools on the very same batches.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from poisonguard.detectors.features import FeatureEncoder
from poisonguard.expectations import save_suite
from poisonguard.pipelines.core.errors import ConfigError, InputError
from poisonguard.pipelines.core.inputs import load_inputs
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.core.stages import ATTACK_STAGE, announce_stage, judge_batch
from poisonguard.pipelines.core.tables import coerce_types, infer_kinds, read_file
from poisonguard.pipelines.redteam.attacks import ATTACKS, AttackError, inject, trigger_test_rows

TRUSTED_SHARE = 0.10
TEST_SHARE = 0.20
NO_ATTACK = "none"
EVAL_ID = "poisonguard_eval_id"
PIPELINE = "poisonguard"
DETECTORS = "detectors"  # the union of the detectors' flags, without the expectation suite


@dataclass
class Evaluation:
    """What ``evaluate`` measured.

    Attributes
    ----------
    metrics : pandas.DataFrame
        One row per (attack, method): ``attack, method, kind, poisoned,
        flagged, caught, precision, recall, f1, fpr``. ``method`` is a check
        name, ``expectations`` (all expectation checks), ``poisonguard`` (the
        union that ``run`` quarantines) or an extra method's name.
    downstream : pandas.DataFrame
        One row per (attack, training set): ``attack, trained_on, accuracy,
        attack_success``; ``attack_success`` only for the backdoor.
    notes : list of str
    """

    metrics: pd.DataFrame
    downstream: pd.DataFrame
    notes: list = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "metrics": json.loads(self.metrics.to_json(orient="records")),
                "downstream": json.loads(self.downstream.to_json(orient="records")),
                "notes": self.notes,
            },
            indent=2,
        )


def evaluate(
    data,
    *,
    label: str,
    id_column: Optional[str] = None,
    reference=None,
    attacks=None,
    rate: float = 0.05,
    config_path=None,
    seed: int = 0,
    self_referential: bool = False,
    alpha: Optional[float] = None,
    detectors: Optional[list] = None,
    methods: Optional[dict[str, Callable]] = None,
    workdir=None,
) -> Evaluation:
    """Inject each attack into ``data``, run poisonguard's stages, score the result.

    Parameters
    ----------
    data : path
        A clean table (CSV, Parquet, JSON Lines).
    label : str
    id_column : str, optional
        Row id column (default ``dataset.id`` of the config when ``data`` has
        it); without one, rows are numbered.
    reference : path, optional
        Trusted reference; otherwise ``TRUSTED_SHARE`` of ``data`` (unless
        ``self_referential``).
    attacks : list of str, optional
        Families of ``poisonguard.pipelines.redteam.attacks.ATTACKS`` (default: all).
    rate : float
        Share of the batch each attack poisons.
    config_path : path, optional
        Run config (detectors, alpha, column kinds); its reference is ignored.
    seed : int
        Seeds the splits, the attacks and the downstream models.
    self_referential : bool
        Run without a trusted reference.
    alpha : float, optional
        Overrides ``detection.alpha`` (still lowered to fit
        ``detection.max_false_positive_rate``, as in ``run``).
    detectors : list of str, optional
        Overrides ``detection.detectors``.
    methods : dict, optional
        Extra methods: ``name -> f(features) -> iterable of flagged row ids``
        where ``features`` is ``poisonguard.pipelines.core.stages.FeatureMatrices`` of the batch.
    workdir : path, optional
        Where to write the batches (a temporary folder when omitted).

    Returns
    -------
    Evaluation
    """
    attacks = list(ATTACKS) if attacks is None else list(attacks)
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ConfigError(f"unknown attack {unknown[0]!r}; known attacks: {', '.join(ATTACKS)}")
    if self_referential and reference is not None:
        raise ConfigError("--self-referential and --reference exclude each other")
    with tempfile.TemporaryDirectory(prefix="poisonguard-evaluate-") as scratch:
        folder = Path(workdir) if workdir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        setup = _prepare(
            Path(data), label, id_column, reference, config_path, seed, self_referential, alpha, detectors, folder
        )
        metrics, downstream = [], []
        for attack in [NO_ATTACK, *attacks]:
            announce_stage(f"{ATTACK_STAGE}{attack}")
            if attack == NO_ATTACK:
                batch, truth, trigger = setup.pool, set(), None
            else:
                try:
                    poisoned = inject(
                        attack, setup.pool, label=label, id_column=setup.id_column, rate=rate, seed=seed,
                        numeric=setup.numeric, categorical=setup.categorical,
                    )
                except AttackError as error:
                    setup.notes.append(f"{attack}: not injected ({error})")
                    continue
                batch, truth, trigger = poisoned.frame, set(poisoned.truth["row_id"]), poisoned.trigger
            flagged, kept_ids, features, kinds = _detect(setup, batch, attack, folder)
            for name, (kind, ids) in flagged.items():
                metrics.append(_scores(attack, name, kind, set(batch[setup.id_column].astype(str)), truth, ids))
            for name, method in (methods or {}).items():
                ids = set(map(str, method(features))) if features is not None else set()
                metrics.append(_scores(attack, name, "method", set(batch[setup.id_column].astype(str)), truth, ids))
                flagged[name] = ("method", ids)
            downstream.extend(_downstream(setup, attack, batch, flagged, trigger))
        return Evaluation(pd.DataFrame(metrics), pd.DataFrame(downstream), setup.notes)


@dataclass
class _Setup:
    settings: object
    id_column: str
    numeric: list
    categorical: list
    pool: pd.DataFrame  # clean rows to poison (typed)
    trusted: Optional[pd.DataFrame]  # typed trusted rows, or None
    test: pd.DataFrame  # typed clean test rows
    notes: list


def _prepare(data, label, id_column, reference, config_path, seed, self_referential, alpha, detectors, folder) -> _Setup:
    settings = make_settings(
        [folder / "batch.csv"], out=folder / "never-written", label=label, config_path=config_path,
        reference=reference,
    )
    config = settings.config
    raw = read_file(data, **config.dataset.csv_format)
    if label not in raw.columns:
        raise InputError(f"{data}: no label column {label!r}; columns are {', '.join(map(repr, raw.columns))}")
    trusted_raw = read_file(Path(reference), **config.dataset.csv_format) if reference is not None else None
    if id_column is not None and id_column not in raw.columns:
        raise InputError(f"{data}: no id column {id_column!r}; columns are {', '.join(map(repr, raw.columns))}")
    id_column = id_column or (config.dataset.id if config.dataset.id in raw.columns else EVAL_ID)
    if id_column == EVAL_ID:
        raw.insert(0, EVAL_ID, [f"row-{index:06d}" for index in range(len(raw))])
    features = [c for c in raw.columns if c not in {label, id_column, *config.dataset.ignore}]
    source = trusted_raw if trusted_raw is not None else raw
    kinds = infer_kinds(source, features, numeric=config.dataset.numeric, categorical=config.dataset.categorical)
    typed = coerce_types(raw, {**kinds, label: "categorical"}, id_column=id_column, source=str(data))
    notes = []
    frame = typed.typed
    unusable = set(typed.findings["row_id"]) | set(frame.loc[frame[label].isna(), id_column].astype(str))
    if unusable:
        notes.append(f"{len(unusable)} rows of {data} have unparsable values or no label and were left out")
        frame = frame[~frame[id_column].astype(str).isin(unusable)]
    rng = np.random.default_rng(seed)
    test_mask = _stratified(frame[label].astype(str).to_numpy(), TEST_SHARE, rng)
    test, rest = frame[test_mask], frame[~test_mask]
    trusted = None
    if trusted_raw is not None:
        trusted_raw = trusted_raw.copy()
        if id_column not in trusted_raw.columns:
            trusted_raw.insert(0, id_column, [f"reference-{index:06d}" for index in range(len(trusted_raw))])
        trusted = coerce_types(trusted_raw, {**kinds, label: "categorical"}, id_column=id_column, source=str(reference)).typed
        notes.append(f"trusted reference: {reference} ({len(trusted)} rows)")
    elif not self_referential:
        share = TRUSTED_SHARE * len(frame) / max(len(rest), 1)
        trusted_mask = _stratified(rest[label].astype(str).to_numpy(), share, rng)
        trusted, rest = rest[trusted_mask], rest[~trusted_mask]
        notes.append(
            f"no --reference: a stratified {TRUSTED_SHARE:.0%} of {data} ({len(trusted)} rows) was split off "
            "as the trusted reference"
        )
        _write_csv(trusted.drop(columns=[id_column]), folder / "reference.csv", config.dataset)
    else:
        notes.append("self-referential: no trusted reference; detectors calibrate on each batch itself")
    notes.append(f"{len(test)} clean rows held out to test downstream models; {len(rest)} rows are attacked")
    detection = config.detection.model_copy(
        update={k: v for k, v in {"alpha": alpha, "detectors": detectors}.items() if v is not None}
    )
    dataset = config.dataset.model_copy(
        update={
            "id": id_column,
            "reference": None if trusted is None else (Path(reference).resolve() if reference else folder / "reference.csv"),
            "numeric": [c for c in features if kinds[c] == "numeric"],
            "categorical": [c for c in features if kinds[c] == "categorical"],
        }
    )
    settings = settings.model_copy(update={"config": config.model_copy(update={"dataset": dataset, "detection": detection})})
    pool = rest.reset_index(drop=True)
    if trusted is not None and dataset.suite is None:
        settings = _with_suite_inferred_once(settings, pool, folder)
    return _Setup(
        settings=settings, id_column=id_column, numeric=dataset.numeric, categorical=dataset.categorical,
        pool=pool, trusted=trusted, test=test.reset_index(drop=True), notes=notes,
    )


def _with_suite_inferred_once(settings, pool: pd.DataFrame, folder: Path):
    """Infer the reference's suite as ``run`` would, once, and name it in the settings.

    ``run`` infers the suite from the reference on every batch; the
    reference is the same for every attack, so inferring it once (a second
    or more with Great Expectations) and loading the file gives the same
    checks faster.
    """
    path = folder / "batch-preflight.csv"
    _write_csv(pool, path, settings.config.dataset)
    inputs = load_inputs(settings.model_copy(update={"batches": [path]}))
    suite_path = save_suite(inputs.suite, folder / "suite.json")
    dataset = settings.config.dataset.model_copy(update={"suite": suite_path})
    return settings.model_copy(update={"config": settings.config.model_copy(update={"dataset": dataset})})


def _write_csv(frame: pd.DataFrame, path: Path, dataset) -> None:
    """Write rows for ``load_inputs`` in the dataset's own CSV format (its separator and decimal mark)."""
    frame.to_csv(path, index=False, sep=dataset.separator, decimal=dataset.decimal)


def _stratified(labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A mask choosing ``share`` of each label's rows (at least one of labels with 2+ rows)."""
    mask = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        count = int(round(share * len(rows)))
        count = min(max(count, 1 if len(rows) >= 2 else 0), len(rows) - 1)
        mask[rng.choice(rows, count, replace=False)] = True
    return mask


def _detect(setup: _Setup, batch: pd.DataFrame, attack: str, folder: Path):
    """Judge one batch as ``poisonguard run`` does (``core.stages.judge_batch``); flagged ids per check.

    A batch rejected as a whole (a batch-level check failed) counts as every
    row quarantined.
    """
    path = folder / f"batch-{attack}.csv"
    _write_csv(batch, path, setup.settings.config.dataset)
    settings = setup.settings.model_copy(update={"batches": [path]})
    inputs = load_inputs(settings)
    judgement = judge_batch(inputs)
    all_ids = set(inputs.batch.row_ids)
    expectation = judgement.outcomes[0].findings
    flagged = {"expectations": ("expectation", set(expectation.loc[expectation["flagged"], "row_id"]))}
    detected = set()
    for outcome in judgement.outcomes:
        if outcome.kind == "detector" and outcome.details.get("skipped"):
            # It judged nothing: a row of zeros would read as a detector that missed everything.
            # Said once (the reason is usually the same for every attack); its table rows are left out.
            note = f"{outcome.name} was skipped and has no rows below: {outcome.details['skipped']}"
            if note not in setup.notes:
                setup.notes.append(note)
        elif outcome.kind == "detector":
            flagged[outcome.name] = ("detector", set(outcome.findings.loc[outcome.findings["flagged"], "row_id"]))
            detected |= flagged[outcome.name][1]
    if judgement.features is not None:  # the detectors ran
        flagged[DETECTORS] = ("detectors", detected)
    if judgement.rejected:
        return _rejected(setup, flagged, all_ids, attack, judgement.batch_failures)
    flagged[PIPELINE] = ("pipeline", set(judgement.decision.quarantined_ids))
    return flagged, set(judgement.decision.kept_ids), judgement.features, inputs.kinds


def _rejected(setup: _Setup, flagged: dict, all_ids: set, attack: str, failures: list):
    """A batch ``run`` would reject as a whole: nothing of it reaches training."""
    flagged[PIPELINE] = ("pipeline", set(all_ids))
    setup.notes.append(f"{attack}: the whole batch is rejected ({failures[0]})")
    return flagged, set(), None, None


def _scores(attack, method, kind, all_ids, truth, flagged) -> dict:
    flagged = set(flagged) & all_ids
    caught = len(flagged & truth)
    clean = len(all_ids - truth)
    precision = caught / len(flagged) if flagged else float("nan")
    recall = caught / len(truth) if truth else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if caught else (0.0 if truth else float("nan"))
    return {
        "attack": attack, "method": method, "kind": kind, "poisoned": len(truth), "flagged": len(flagged),
        "caught": caught, "precision": precision, "recall": recall, "f1": f1,
        "fpr": len(flagged - truth) / clean if clean else float("nan"),
    }


def _downstream(setup: _Setup, attack, batch, flagged, trigger) -> list[dict]:
    """Test accuracy (and backdoor success) of models trained on clean / poisoned / sanitised rows."""
    label, id_column = setup.settings.label, setup.id_column
    kinds = {**{c: "numeric" for c in setup.numeric}, **{c: "categorical" for c in setup.categorical}, label: "categorical"}
    typed = coerce_types(batch.astype(object), kinds, id_column=id_column, source="batch").typed
    base = [setup.trusted] if setup.trusted is not None else []
    encoder = FeatureEncoder(numeric=setup.numeric, categorical=setup.categorical).fit(pd.concat([*base, setup.pool]))
    sets = {"clean": setup.pool, "poisoned": typed}
    for name, (kind, ids) in flagged.items():
        if kind in ("pipeline", "method"):
            key = "sanitised" if name == PIPELINE else f"sanitised: {name}"
            sets[key] = typed[~typed[id_column].astype(str).isin(ids)]
    if attack == NO_ATTACK:
        sets.pop("poisoned")
    test_x = encoder.transform(setup.test)
    test_y = setup.test[label].astype(str).to_numpy()
    triggered = trigger_test_rows(setup.test, trigger, label=label) if trigger is not None else None
    rows = []
    for name, rows_used in sets.items():
        train = pd.concat([*base, rows_used])
        train = train[train[label].notna()]
        model = HistGradientBoostingClassifier(random_state=0).fit(
            encoder.transform(train), train[label].astype(str).to_numpy()
        )
        record = {"attack": attack, "trained_on": name, "rows": len(train),
                  "accuracy": float(np.mean(model.predict(test_x) == test_y)), "attack_success": float("nan")}
        if triggered is not None and len(triggered):
            record["attack_success"] = float(np.mean(model.predict(encoder.transform(triggered)) == trigger.target))
        rows.append(record)
    return rows
