"""Batch-level checks: does a whole batch look like the trusted data?

Row detectors judge rows one at a time; these functions judge a batch as a
whole, against trusted rows, and return one :class:`BatchCheck` per test (a
line of the report's drift table):

* :func:`schema_drift` - columns that appeared, went missing or changed type;
* :func:`numeric_drift` - Kolmogorov-Smirnov statistic or Wasserstein
  distance (in trusted standard deviations) of one numeric column;
* :func:`categorical_drift` - population stability index or Jensen-Shannon
  distance of one categorical column (also used for the label);
* :func:`model_impact` - does adding the batch to the trusted training rows
  make a model worse on trusted rows it did not see?

A distribution is called drifted only when its effect size exceeds the
threshold *and* the difference is statistically significant (``p_value``), so
a small batch does not fail on noise and a huge batch does not fail on a
difference too small to matter.

Pure functions of numpy / pandas values: no Prefect, no files.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import StratifiedKFold

from poisonguard.detectors._classifiers import logistic_regression
from poisonguard.detectors._sampling import population_mask
from poisonguard.detectors._threads import map_in_threads, one_blas_thread
from poisonguard.detectors._unique import distinct_objects

NUMERIC_TESTS = ("ks", "wasserstein")
CATEGORICAL_TESTS = ("psi", "jensen_shannon")
IMPACT_MODELS = ("logistic", "gradient_boosting", "random_forest")
# Added to every category count before the PSI's logarithm (Jeffreys'
# prior), so a category absent on one side gives a finite index that grows
# with the number of rows behind it, not a blow-up from one stray value.
PSI_SMOOTHING = 0.5
MISSING = "<missing>"
# A numeric column is compared on a seeded sample of at most this many of the
# batch's numbers. The KS statistic of such a sample is within about 0.003
# of the whole column's (its error falls as 1 / sqrt(n)), against a
# threshold of 0.3, and its p-value is set by the smaller side, the trusted
# rows. Sorting whole columns was 21 s of a 10-million-row run.
DRIFT_SAMPLE_VALUES = 200_000


@dataclass(frozen=True)
class BatchCheck:
    """The outcome of one batch-level test, one line of the drift table.

    Attributes
    ----------
    check : str
        ``"batch.schema"``, ``"batch.drift"``, ``"batch.label_shift"`` or
        ``"batch.model_impact"``.
    column : str
        The column tested (``""`` for the model-impact check).
    test : str
        The statistic, e.g. ``"ks"``, ``"psi"``, ``"accuracy drop"``.
    statistic : float
        Its value (NaN when the test could not run).
    threshold : float
        The value above which the batch fails (with ``p_value`` small enough).
    p_value : float
        Significance of the difference (NaN when there is none).
    failed : bool
        Whether this test asks for the whole batch to be quarantined.
    reason : str
        One sentence with the evidence, for the report.
    """

    check: str
    column: str
    test: str
    statistic: float
    threshold: float
    p_value: float
    failed: bool
    reason: str

    def as_dict(self) -> dict:
        """Plain JSON values (NaN as None)."""
        return {key: (None if isinstance(value, float) and math.isnan(value) else value)
                for key, value in asdict(self).items()}


# --------------------------------------------------------------------------- schema


def schema_drift(
    trusted_columns: Sequence[str],
    batch_columns: Sequence[str],
    *,
    trusted_kinds: Optional[dict[str, str]] = None,
    batch_kinds: Optional[dict[str, str]] = None,
    ignore: Iterable[str] = (),
) -> list[BatchCheck]:
    """Columns that appeared, went missing, or changed kind.

    Parameters
    ----------
    trusted_columns, batch_columns : sequence of str
    trusted_kinds, batch_kinds : dict of str to {"numeric", "categorical"}, optional
        Kinds inferred separately on each side; a column numeric in the
        trusted data and categorical in the batch changed type.
    ignore : iterable of str
        Columns never reported (the id column, ignored columns).

    Returns
    -------
    list of BatchCheck
        One failed check per problem column (empty when the schemas agree).
    """
    skip = set(ignore)
    trusted, batch = [c for c in trusted_columns if c not in skip], [c for c in batch_columns if c not in skip]
    problems = []
    for column in batch:
        if column not in trusted:
            problems.append(_schema(column, "new column", f"column {column!r} is new: the trusted data has no such column"))
    for column in trusted:
        if column not in batch:
            problems.append(_schema(column, "missing column", f"column {column!r} is missing from the batch"))
    trusted_kinds, batch_kinds = trusted_kinds or {}, batch_kinds or {}
    for column in batch:
        before, after = trusted_kinds.get(column), batch_kinds.get(column)
        if column in trusted and before and after and before != after:
            problems.append(_schema(
                column, "type change", f"column {column!r} was {before} in the trusted data but is {after} in the batch"
            ))
    return problems


def _schema(column: str, test: str, reason: str) -> BatchCheck:
    return BatchCheck("batch.schema", column, test, 1.0, 0.0, math.nan, True, reason)


# --------------------------------------------------------------------------- distributions


def population_stability_index(
    expected: np.ndarray, actual: np.ndarray, *, smoothing: float = PSI_SMOOTHING
) -> float:
    """PSI of two count vectors over the same categories.

    ``sum((a - e) * ln(a / e))`` over shares, after adding ``smoothing`` to
    every count. Rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a
    major shift.

    Parameters
    ----------
    expected, actual : array of float, shape (n_categories,)
        Non-negative counts (trusted and batch).
    smoothing : float
        Pseudo-count added to each category on each side.

    Returns
    -------
    float, >= 0
    """
    e = _shares(np.asarray(expected, dtype=float) + smoothing, 0.0)
    a = _shares(np.asarray(actual, dtype=float) + smoothing, 0.0)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count vectors."""
    e, a = _shares(expected, 0.0), _shares(actual, 0.0)
    return float(np.nan_to_num(_jensen_shannon(e, a)))


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    return float(jensenshannon(p, q, base=2))


def _shares(counts, floor: float) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    shares = counts / total if total > 0 else np.full(len(counts), 1.0 / max(len(counts), 1))
    if floor > 0:
        shares = np.maximum(shares, floor)
        shares = shares / shares.sum()
    return shares


def category_counts(trusted, batch) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts per category (as text; missing as ``<missing>``) on both sides.

    Returns
    -------
    (categories, trusted_counts, batch_counts)
        Categories sorted by trusted frequency, then those only in the batch.
    """
    left, right = _as_categories(trusted), _as_categories(batch)
    left_counts, right_counts = left.value_counts(), right.value_counts()
    categories = list(left_counts.index) + sorted(set(right_counts.index) - set(left_counts.index))
    return (
        [str(c) for c in categories],
        left_counts.reindex(categories, fill_value=0).to_numpy(dtype=float),
        right_counts.reindex(categories, fill_value=0).to_numpy(dtype=float),
    )


def _as_categories(values) -> pd.Series:
    """Each value as text, ``MISSING`` for an empty or blank one."""
    series = pd.Series(values, dtype=object)
    try:
        # Once per distinct text, not cell by cell: a mixed table's 23 text
        # columns of 240,000 rows took 2.8 s.
        return pd.Series(distinct_objects(series, convert=lambda v: v if v.strip() else MISSING, missing=MISSING),
                         index=series.index)
    except TypeError:  # not all text (numbers, JSON Lines' lists): cell by cell
        missing = series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())
        return series.where(~missing, MISSING).map(str)


def categorical_drift(
    trusted,
    batch,
    *,
    column: str,
    test: str = "psi",
    threshold: float = 0.25,
    p_value: float = 0.001,
    check: str = "batch.drift",
) -> BatchCheck:
    """Has the distribution of one categorical column (or the label) shifted?

    Parameters
    ----------
    trusted, batch : array-like, shape (n_trusted,) and (n_batch,)
        Values; compared as text, missing values as one more category.
    column : str
        Name for the report.
    test : {"psi", "jensen_shannon"}
        Effect size compared with ``threshold``.
    threshold : float
    p_value : float
        The chi-square test of homogeneity must also be below this.
    check : str
        ``"batch.drift"``, or ``"batch.label_shift"`` for the label.

    Returns
    -------
    BatchCheck
    """
    if test not in CATEGORICAL_TESTS:
        raise ValueError(f"categorical test {test!r}: expected one of {', '.join(CATEGORICAL_TESTS)}")
    categories, left, right = category_counts(trusted, batch)
    if left.sum() == 0 or right.sum() == 0:
        return BatchCheck(check, column, test, math.nan, threshold, math.nan, False, f"{column}: no values to compare")
    statistic = population_stability_index(left, right) if test == "psi" else jensen_shannon_distance(left, right)
    significance = _chi_square(left, right)
    failed = bool(statistic > threshold and significance < p_value)
    # The categories whose share moved most are the evidence a reader wants.
    moved = np.argsort(-np.abs(left / left.sum() - right / right.sum()))[:3]
    detail = ", ".join(
        f"{_short(categories[i])!r} {left[i] / left.sum():.0%} → {right[i] / right.sum():.0%}" for i in moved
    )
    name = "PSI" if test == "psi" else "Jensen-Shannon distance"
    verdict = "exceeds" if statistic > threshold else "within"
    reason = (
        f"{column}: {name} {statistic:.3f} {verdict} the threshold {threshold:g} "
        f"(chi-square p = {significance:.2g}); trusted → batch shares: {detail}"
    )
    return BatchCheck(check, column, test, statistic, threshold, significance, failed, reason)


def _chi_square(left: np.ndarray, right: np.ndarray) -> float:
    table = np.vstack([left, right])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def numeric_drift(
    trusted,
    batch,
    *,
    column: str,
    test: str = "ks",
    threshold: float = 0.3,
    p_value: float = 0.001,
    max_values: Optional[int] = DRIFT_SAMPLE_VALUES,
    random_state: int = 0,
) -> BatchCheck:
    """Has the distribution of one numeric column shifted?

    Parameters
    ----------
    trusted, batch : array-like of float, shape (n_trusted,) and (n_batch,)
        Missing values are left out (expectations judge them).
    column : str
    test : {"ks", "wasserstein"}
        ``"ks"``: the two-sample Kolmogorov-Smirnov statistic D (the largest
        gap between the two cumulative distributions, in [0, 1]).
        ``"wasserstein"``: the earth mover's distance divided by the trusted
        standard deviation.
    threshold : float
    p_value : float
        The two-sample KS test must also be below this.
    max_values : int or None
        Compare a seeded sample of this many of the batch's numbers, and of
        the trusted rows', where there are more (``DRIFT_SAMPLE_VALUES``;
        None: all); the reason says so.
    random_state : int
        Seeds the sample.

    Returns
    -------
    BatchCheck
    """
    if test not in NUMERIC_TESTS:
        raise ValueError(f"numeric test {test!r}: expected one of {', '.join(NUMERIC_TESTS)}")
    left = _finite(trusted)
    right = _finite(batch)
    sampled = ""
    if max_values is not None:
        # A trusted reference costs no more than a batch: it is sampled the same way.
        for side, values in (("trusted rows'", left), ("batch's", right)):
            if values.size > max_values:
                sampled += f"; the {side} numbers from a seeded sample of {max_values:,} of their {values.size:,}"
        rng = np.random.default_rng(random_state)
        left, right = (
            rng.choice(values, size=max_values, replace=False) if values.size > max_values else values
            for values in (left, right)
        )
    if left.size < 2 or right.size < 2:
        return BatchCheck("batch.drift", column, test, math.nan, threshold, math.nan, False,
                          f"{column}: too few numbers to compare ({left.size} trusted, {right.size} in the batch)")
    ks = stats.ks_2samp(left, right)
    if test == "ks":
        statistic, name = float(ks.statistic), "KS statistic"
    else:
        scale = float(np.std(left)) or float(np.mean(np.abs(left))) or 1.0
        statistic, name = float(stats.wasserstein_distance(left, right)) / scale, "Wasserstein distance (trusted SDs)"
    significance = float(ks.pvalue)
    failed = bool(statistic > threshold and significance < p_value)
    verdict = "exceeds" if statistic > threshold else "within"
    reason = (
        f"{column}: {name} {statistic:.3f} {verdict} the threshold {threshold:g} (KS p = {significance:.2g}); "
        f"median {np.median(left):.4g} trusted vs {np.median(right):.4g} in the batch, "
        f"IQR {_iqr(left):.4g} vs {_iqr(right):.4g}{sampled}"
    )
    return BatchCheck("batch.drift", column, test, statistic, threshold, significance, failed, reason)


def _finite(values) -> np.ndarray:
    series = pd.Series(values)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        # Already numbers: a pass through Python objects costs a second per million.
        array = series.to_numpy(dtype=float, na_value=np.nan)
    else:
        array = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
    return array[np.isfinite(array)]


def _iqr(values: np.ndarray) -> float:
    low, high = np.percentile(values, [25, 75])
    return float(high - low)


def column_drift(
    trusted: pd.DataFrame,
    batch: pd.DataFrame,
    kinds: dict[str, str],
    *,
    numeric_test: str = "ks",
    numeric_threshold: float = 0.3,
    categorical_test: str = "psi",
    categorical_threshold: float = 0.25,
    p_value: float = 0.001,
) -> list[BatchCheck]:
    """:func:`numeric_drift` or :func:`categorical_drift` for each column of ``kinds``.

    Parameters
    ----------
    trusted, batch : pandas.DataFrame
        Typed frames holding every column of ``kinds``.
    kinds : dict of str to {"numeric", "categorical"}

    Returns
    -------
    list of BatchCheck, one per column, in ``kinds`` order.
    """
    def one_column(column: str) -> BatchCheck:
        if kinds[column] == "numeric":
            return numeric_drift(trusted[column], batch[column], column=column, test=numeric_test,
                                 threshold=numeric_threshold, p_value=p_value)
        return categorical_drift(trusted[column], batch[column], column=column, test=categorical_test,
                                 threshold=categorical_threshold, p_value=p_value)

    columns = [column for column in kinds if column in trusted.columns and column in batch.columns]
    # Columns at once (detectors._threads): a million-row column's test is mostly sorting.
    return map_in_threads(one_column, columns)


# --------------------------------------------------------------------------- model impact


def make_classifier(model: str, random_state: int = 0):
    """A fresh scikit-learn classifier of kind ``model`` (see ``IMPACT_MODELS``)."""
    if model == "logistic":
        return logistic_regression(max_iter=2000)
    if model == "gradient_boosting":
        return HistGradientBoostingClassifier(random_state=random_state)
    if model == "random_forest":
        return RandomForestClassifier(n_estimators=100, random_state=random_state, n_jobs=1)
    raise ValueError(f"impact model {model!r}: expected one of {', '.join(IMPACT_MODELS)}")


def model_impact(
    trusted_X,
    trusted_y,
    batch_X,
    batch_y,
    *,
    model: str = "logistic",
    n_folds: int = 5,
    max_drop: float = 0.02,
    p_value: float = 0.01,
    random_state: int = 0,
    max_batch_rows: Optional[int] = 20_000,
    batch_rows_used: Optional[np.ndarray] = None,
    max_trusted_rows: Optional[int] = 20_000,
) -> BatchCheck:
    """Does training on trusted + batch rows predict held-out trusted rows worse?

    The trusted rows are split into ``n_folds`` stratified folds. For each
    fold, one model is fitted on the other trusted folds and another on the
    other folds plus the whole batch; both predict the held-out fold. Every
    trusted row is thus predicted once by each model, which gives paired
    outcomes: the accuracy drop is the share of rows the batch-trained model
    gets wrong minus the share the trusted-only model gets wrong, and an
    exact one-sided McNemar test (a binomial test on the rows where the two
    models disagree) gives its significance.

    Accuracy alone is not evidence of harm: a model that fits the data
    poorly can lose accuracy from more clean rows (on a 14 % label, 400
    trusted rows gave a logistic model that predicted the minority label for
    4 % of rows; 3,400 clean batch rows moved that to 6 % and cost 2.2
    accuracy points, McNemar p = 0.006, and a clean batch was rejected). So
    the check also compares the held-out log-loss, a proper scoring rule and
    the score the model is fitted by, which more rows from the trusted
    distribution do not make worse in expectation: it fails only when the batch costs both,
    each significantly (log-loss: a one-sided Wilcoxon signed-rank test on
    the rows' paired losses).

    Parameters
    ----------
    trusted_X : array-like, shape (n_trusted, n_features)
    trusted_y : array-like, shape (n_trusted,)
    batch_X : array-like, shape (n_batch, n_features)
    batch_y : array-like, shape (n_batch,)
        Labels as text; empty labels are left out.
    model : {"logistic", "gradient_boosting", "random_forest"}
    n_folds : int
        At most the size of the smallest trusted class.
    max_drop : float
        Accuracy points (0.02 = 2 %) the batch may cost before it fails.
    p_value : float
        The McNemar test must also be below this.
    random_state : int
    max_batch_rows : int or None
        Train on a seeded random sample of this many batch rows when the
        batch has more (None: all). The sample keeps the batch's share of
        poison, which is what moves the accuracy, at a bounded cost: five
        fits on a million rows took minutes; the reason names the sample.
    batch_rows_used : numpy.ndarray of bool, shape (n_batch,), optional
        Train only on these batch rows (e.g. the ones a decision keeps),
        without copying the others out first; None: every row.
    max_trusted_rows : int or None
        Hold out and train on a seeded sample of this many trusted rows,
        each label in proportion, when there are more (None: all). Ten fits
        on 33,678 trusted rows of real flights (plus 20,000 batch rows)
        took 14 s of a 70 s run; the reason names the sample.

    Returns
    -------
    BatchCheck
        ``statistic`` is the accuracy drop (negative: the batch helped).
    """
    X_trusted, y_trusted = _labelled(trusted_X, trusted_y)
    trusted_rows = len(y_trusted)
    if max_trusted_rows is not None and trusted_rows > max_trusted_rows:
        sampled = population_mask(trusted_rows, random_state, y_trusted, max_rows=max_trusted_rows)
        X_trusted, y_trusted = X_trusted[sampled], y_trusted[sampled]
    # Positions of the usable batch rows, then the sample of them: rows are
    # copied once, and only the sampled ones.
    batch_labels = _label_texts(batch_y)
    usable = batch_labels != ""
    if batch_rows_used is not None:
        usable &= np.asarray(batch_rows_used, dtype=bool)
    positions = np.flatnonzero(usable)
    batch_rows = len(positions)
    if max_batch_rows is not None and batch_rows > max_batch_rows:
        positions = positions[np.sort(np.random.default_rng(random_state).choice(batch_rows, max_batch_rows, replace=False))]
    X_batch = np.asarray(batch_X, dtype=float)[positions]
    y_batch = batch_labels[positions].astype(str)
    name = "batch.model_impact"
    counts = pd.Series(y_trusted).value_counts()
    folds = min(n_folds, int(counts.min()) if len(counts) else 0)
    if len(counts) < 2 or folds < 2 or len(y_batch) == 0:
        return BatchCheck(name, "", "accuracy drop", math.nan, max_drop, math.nan, False,
                          "not measured: it needs at least two trusted classes with two rows each, and labelled batch rows")
    correct_without = np.zeros(len(y_trusted), dtype=bool)
    correct_with = np.zeros(len(y_trusted), dtype=bool)
    loss_without = np.zeros(len(y_trusted))
    loss_with = np.zeros(len(y_trusted))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for train, held_out in splitter.split(X_trusted, y_trusted):
        with one_blas_thread():
            without = make_classifier(model, random_state).fit(X_trusted[train], y_trusted[train])
        correct_without[held_out], loss_without[held_out] = _held_out(without, X_trusted[held_out], y_trusted[held_out])
        X_train = np.vstack([X_trusted[train], X_batch])
        y_train = np.concatenate([y_trusted[train], y_batch])
        with one_blas_thread():
            with_batch = make_classifier(model, random_state).fit(X_train, y_train)
        correct_with[held_out], loss_with[held_out] = _held_out(with_batch, X_trusted[held_out], y_trusted[held_out])
    accuracy_without, accuracy_with = correct_without.mean(), correct_with.mean()
    drop = float(accuracy_without - accuracy_with)
    worse = int((correct_without & ~correct_with).sum())
    better = int((~correct_without & correct_with).sum())
    significance = (
        float(stats.binomtest(worse, worse + better, 0.5, alternative="greater").pvalue) if worse + better else 1.0
    )
    loss_change = loss_with - loss_without
    loss_significance = (
        float(stats.wilcoxon(loss_change, alternative="greater").pvalue) if np.any(loss_change != 0) else 1.0
    )
    accuracy_harm = drop > max_drop and significance < p_value
    loss_harm = loss_change.mean() > 0 and loss_significance < p_value
    failed = bool(accuracy_harm and loss_harm)
    verdict = "more than" if drop > max_drop else "within"
    trained_on = (
        f"the batch's {batch_rows} rows" if len(y_batch) == batch_rows
        else f"a random sample of {len(y_batch)} of the batch's {batch_rows} rows"
    )
    held_out_rows = (
        f"{len(y_trusted)} trusted rows" if len(y_trusted) == trusted_rows
        else f"a seeded sample of {len(y_trusted)} of the {trusted_rows} trusted rows"
    )
    reason = (
        f"a {model} model trained with {trained_on} predicts held-out trusted rows with accuracy "
        f"{accuracy_with:.3f} instead of {accuracy_without:.3f} (drop {drop:+.3f}, {verdict} the allowed {max_drop:g}); "
        f"it gets {worse} rows wrong that the trusted-only model got right and {better} the other way round "
        f"(McNemar p = {significance:.2g}, {held_out_rows}, {folds} folds); its held-out log-loss is "
        f"{loss_with.mean():.3f} instead of {loss_without.mean():.3f} (Wilcoxon p = {loss_significance:.2g})"
    )
    if accuracy_harm and not loss_harm:
        reason += (
            ": not significantly worse, so the lost accuracy is read as more rows moving a model that fits "
            "poorly, not as harm"
        )
    return BatchCheck(name, "", "accuracy drop", drop, max_drop, significance, failed, reason)


# Probabilities are floored here before the log: a confident wrong answer costs
# about 35 nats, not infinity.
MIN_PROBABILITY = 1e-15


def _held_out(classifier, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether ``classifier`` predicts each row's label, and its log-loss on the row."""
    probabilities = classifier.predict_proba(X)
    classes = list(classifier.classes_)
    correct = classifier.classes_[probabilities.argmax(axis=1)] == y
    given = np.array([probabilities[row, classes.index(label)] if label in classes else 0.0
                      for row, label in enumerate(y)])
    return correct, -np.log(np.maximum(given, MIN_PROBABILITY))


def _labelled(X, y) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.asarray(X, dtype=float)
    labels = _label_texts(y)
    keep = labels != ""
    return matrix[keep], labels[keep].astype(str)


def _label_texts(y) -> np.ndarray:
    """Labels as text, ``""`` where missing (an object array)."""
    return np.asarray(pd.Series(y, dtype=object).map(lambda v: "" if _missing(v) else str(v)), dtype=object)


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _short(category, width: int = 60) -> str:
    """A category named in a reason, cut when long (a 5 MB level must not make a 5 MB report)."""
    text = str(category)
    return text if len(text) <= width else text[: width - 20] + f"…(+{len(text) - width + 20} characters)"
