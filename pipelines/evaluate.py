"""The red-team command: poison the user's own data and measure what poisonguard catches.

``poisonguard evaluate DATA --label COL`` takes a clean table, holds out a
clean test split, and for each attack family of ``detectors.attacks`` injects
poison at ``--rate`` into the rest, runs the same stages as ``poisonguard
run`` (``pipelines.run``: load_inputs, check_expectations, encode_features,
run_detector, decide; no Prefect, nothing published) and reports per attack
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
import typer

from pipelines.cli_support import console, reports_errors
from pipelines.errors import ConfigError, InputError

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
        Families of ``detectors.attacks.ATTACKS`` (default: all).
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
        where ``features`` is ``pipelines.run.FeatureMatrices`` of the batch.
    workdir : path, optional
        Where to write the batches (a temporary folder when omitted).

    Returns
    -------
    Evaluation
    """
    from detectors.attacks import ATTACKS, AttackError, inject

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
    from pipelines.batch_io import coerce_types, infer_kinds, read_file
    from pipelines.settings import make_settings

    raw = read_file(data)
    if label not in raw.columns:
        raise InputError(f"{data}: no label column {label!r}; columns are {', '.join(map(repr, raw.columns))}")
    trusted_raw = read_file(Path(reference)) if reference is not None else None
    settings = make_settings(
        [folder / "batch.csv"], out=folder / "never-written", label=label, config_path=config_path,
        reference=reference,
    )
    config = settings.config
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
        trusted.drop(columns=[id_column]).to_csv(folder / "reference.csv", index=False)
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
    from expectations import save_suite
    from pipelines import run

    path = folder / "batch-preflight.csv"
    pool.to_csv(path, index=False)
    inputs = run.load_inputs(settings.model_copy(update={"batches": [path]}))
    suite_path = save_suite(inputs.suite, folder / "suite.json")
    dataset = settings.config.dataset.model_copy(update={"suite": suite_path})
    return settings.model_copy(update={"config": settings.config.model_copy(update={"dataset": dataset})})


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
    """Run the stages of ``poisonguard run`` on one batch; flagged ids per check.

    The order is ``pipelines.run.execute``'s: expectations and the batch-level
    checks (a failure rejects the whole batch: every row counts as
    quarantined), features, detectors, the decision, and the model-impact
    check. Batch-level checks run when ``pipelines.drift`` provides them.
    """
    from pipelines import run

    try:
        from pipelines import drift
    except ImportError:  # pragma: no cover - batch-level checks not installed
        drift = None
    path = folder / f"batch-{attack}.csv"
    batch.to_csv(path, index=False)
    settings = setup.settings.model_copy(update={"batches": [path]})
    inputs = run.load_inputs(settings)
    outcomes = [run.check_expectations(inputs)]
    batch_check = drift.check_batch(inputs) if drift is not None and hasattr(drift, "check_batch") else None
    outcomes += [batch_check] if batch_check is not None else []
    all_ids = set(inputs.batch.row_ids)
    flagged = {}
    expectation = outcomes[0].findings
    flagged["expectations"] = ("expectation", set(expectation.loc[expectation["flagged"], "row_id"]))
    failures = [failure for outcome in outcomes for failure in outcome.batch_failures]
    if failures:
        return _rejected(setup, flagged, all_ids, attack, failures)
    features = run.encode_features(inputs)
    detected = set()
    for name in settings.config.detection.detectors:
        outcome = run.run_detector(name, features, settings)
        flagged[name] = ("detector", set(outcome.findings.loc[outcome.findings["flagged"], "row_id"]))
        detected |= flagged[name][1]
        outcomes.append(outcome)
    flagged[DETECTORS] = ("detectors", detected)
    decision = run.decide(inputs, outcomes)
    if drift is not None and hasattr(drift, "check_model_impact"):
        impact = drift.check_model_impact(inputs, features, decision)
        if impact is not None and impact.batch_failures:
            return _rejected(setup, flagged, all_ids, attack, impact.batch_failures)
    flagged[PIPELINE] = ("pipeline", set(decision.quarantined_ids))
    return flagged, set(decision.kept_ids), features, inputs.kinds


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
    from sklearn.ensemble import HistGradientBoostingClassifier

    from detectors.attacks import trigger_test_rows
    from detectors.features import FeatureEncoder
    from pipelines.batch_io import coerce_types

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


def _print(evaluation: Evaluation) -> None:
    from rich.table import Table

    for note in evaluation.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print("detection per attack and check (FPR: share of the clean rows flagged)")
    for attack, rows in evaluation.metrics.groupby("attack", sort=False):
        poisoned = int(rows["poisoned"].iloc[0])
        table = Table(title=f"{attack}: {poisoned} poisoned rows", title_justify="left")
        table.add_column("check", no_wrap=True, min_width=25)
        for column in ("flagged", "prec.", "recall", "F1", "FPR"):
            table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
        for row in rows.itertuples():
            table.add_row(
                row.method, str(row.flagged), _fmt(row.precision), _fmt(row.recall), _fmt(row.f1),
                f"{100 * row.fpr:.1f}%", style="bold" if row.method == PIPELINE else None,
            )
        console.print(table)
    table = Table(title="downstream: HistGradientBoosting test accuracy on held-out clean rows")
    for column in ("attack", "trained on", "rows", "accuracy", "backdoor success"):
        table.add_column(column, justify="left" if column in ("attack", "trained on") else "right")
    for row in evaluation.downstream.itertuples():
        table.add_row(row.attack, row.trained_on, str(row.rows), _fmt(row.accuracy), _fmt(row.attack_success))
    console.print(table)


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


@reports_errors
def evaluate_command(
    data: Path = typer.Argument(..., help="A clean table (CSV, Parquet, JSON Lines) to attack."),
    label: str = typer.Option(..., "--label", help="Label column."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Row id column; rows are numbered without one."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Trusted reference; else 10% of DATA is split off."),
    attacks: Optional[str] = typer.Option(None, "--attacks", help="Comma-separated attack families (default: all)."),
    rate: float = typer.Option(0.05, "--rate", help="Share of the batch each attack poisons."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config (detectors, alpha, column kinds)."),
    seed: int = typer.Option(0, "--seed", help="Seeds splits, attacks and models."),
    self_referential: bool = typer.Option(False, "--self-referential", help="Run without any trusted reference."),
    alpha: Optional[float] = typer.Option(
        None, "--alpha",
        help="Per-detector false-positive rate (overrides config); lowered to fit detection.max_false_positive_rate.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """Red-team your data: inject each attack family and report what poisonguard catches."""
    from pipelines.cli import quiet_services

    quiet_services()
    chosen = [name.strip() for name in attacks.split(",") if name.strip()] if attacks else None
    if not 0.0 < rate < 0.5:
        raise ConfigError(f"--rate must be between 0 and 0.5, got {rate}")
    with console.status("poisoning and checking…") if not as_json else _nothing():
        evaluation = evaluate(
            data, label=label, id_column=id_column, reference=reference, attacks=chosen, rate=rate,
            config_path=config, seed=seed, self_referential=self_referential, alpha=alpha,
        )
    if as_json:
        typer.echo(evaluation.to_json())
    else:
        _print(evaluation)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
