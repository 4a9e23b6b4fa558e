"""Tests of detectors.cellwise (``outlier.cellwise``) on small seeded data."""
import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri
from scipy.stats import norm

from poisonguard.detectors.cellwise import CellwiseOutlierDetector, cell_residuals, fit_copula, normal_scores
from poisonguard.detectors.errors import NotEnoughData
from poisonguard.detectors.outliers import ECODOutlierDetector, _CrossFittedOutlierDetector, rank_counts

COLUMNS = ["price", "loan", "age"]
CORRUPTED = 10


def loans(n_rows: int, seed: int) -> pd.DataFrame:
    """A loan follows its purchase's price (skewed, as money is); age is independent of both."""
    rng = np.random.default_rng(seed)
    price = np.exp(rng.normal(7.0, 0.5, n_rows))
    loan = price * np.exp(rng.normal(-0.3, 0.1, n_rows))
    age = rng.normal(40.0, 10.0, n_rows)
    return pd.DataFrame({"price": price, "loan": loan, "age": age})


@pytest.fixture(scope="module")
def trusted():
    return loans(600, seed=0)


@pytest.fixture(scope="module")
def batch(trusted):
    """400 clean rows, then 10 whose loan is swapped for another row's: each value in range, the pair not."""
    frame = loans(400 + CORRUPTED, seed=1)
    rows = np.arange(400, 400 + CORRUPTED)
    cheap, dear = np.quantile(trusted["loan"], [0.1, 0.9])
    # A dear purchase with a cheap loan, or the other way round.
    frame.loc[rows, "loan"] = np.where(frame.loc[rows, "price"] > trusted["price"].median(), cheap, dear)
    frame.index = [f"row-{index}" for index in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def fitted(trusted):
    return CellwiseOutlierDetector(alpha=0.01).fit(trusted)


def test_finds_in_range_cells_that_break_their_relation_and_only_them(fitted, batch):
    findings = fitted.findings(batch)
    flagged = set(findings.loc[findings["flagged"], "row_id"])
    corrupted = {f"row-{row}" for row in range(400, 400 + CORRUPTED)}
    # The ten swapped loans, each within the trusted range, are all found;
    # and 5 of the 400 clean rows, where alpha = 0.01 expects 4.
    assert flagged - corrupted == {"row-40", "row-200", "row-223", "row-360", "row-363"}
    assert flagged >= corrupted


def test_each_swapped_loan_is_ordinary_alone(trusted, batch):
    # What the detector adds: column by column, ECOD sees none of them.
    findings = ECODOutlierDetector(alpha=0.01).fit(trusted).findings(batch)
    corrupted = findings["row_id"].isin([f"row-{row}" for row in range(400, 400 + CORRUPTED)])
    assert not findings.loc[corrupted, "flagged"].any()


def test_reason_names_the_cell_and_what_predicts_it(fitted, batch):
    findings = fitted.findings(batch)
    reason = findings.loc[findings["row_id"] == "row-400", "reason"].item()
    assert reason.startswith("a value its other values do not predict, against trusted rows (p")
    # The two cells of the broken pair, each with the column that predicts it and
    # not the unrelated age, with where it sits and where its partner puts it.
    cells = reason.split(": ", 1)[1].split("; ")
    assert cells == [
        "price at percentile 8, where loan puts it near percentile 88 (7.2 standard deviations below)",
        "loan at percentile 90, where price puts it near percentile 9 (7.2 standard deviations above)",
    ]


def test_residual_is_the_conditional_normal_residual():
    # Two normal scores of correlation rho: z2 given z1 is N(rho z1, 1 - rho^2).
    rng = np.random.default_rng(3)
    rho = 0.8
    first = rng.normal(size=20_000)
    second = rho * first + np.sqrt(1 - rho ** 2) * rng.normal(size=20_000)
    model = fit_copula(np.column_stack([first, second]))
    at_most, below = rank_counts(model.sorted_columns, np.array([[0.0, 0.0], [2.0, -2.0]]))
    scores = normal_scores(at_most, below, len(model.sorted_columns))
    residuals = cell_residuals(model, scores, np.array([False, True]))[:, 0]
    fitted_rho = (1 - 0.05) * np.corrcoef(first, second)[0, 1]  # the shrinkage
    expected = (scores[:, 1] - fitted_rho * scores[:, 0]) / np.sqrt(1 - fitted_rho ** 2)
    np.testing.assert_allclose(residuals, expected, rtol=0.02, atol=0.01)
    assert residuals[1] < -4.0


def test_normal_scores_are_mid_ranks():
    # Among 3 values, a value equal to the middle one has 1 below and 2 at most: (2 + 1 + 1) / 8.
    at_most, below = rank_counts(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [9.0]]))
    np.testing.assert_allclose(normal_scores(at_most, below, 3)[:, 0], [0.0, ndtri(7 / 8)])
    assert norm.cdf(ndtri(7 / 8)) == pytest.approx(7 / 8)


def test_fold_models_scored_from_one_search_match_scoring_each(fitted, batch):
    matrix = batch.to_numpy(dtype=float)
    fast = fitted._scores_and_fold_scores(matrix)
    slow = _CrossFittedOutlierDetector._scores_and_fold_scores(fitted, matrix)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-10)
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-10)


def test_scores_do_not_depend_on_the_rows_scored_with(fitted, batch):
    whole = fitted.score(batch)
    parts = np.concatenate([fitted.score(batch.iloc[:7]), fitted.score(batch.iloc[7:])])
    np.testing.assert_allclose(whole, parts, rtol=1e-12)


def test_without_a_reference_the_batch_judges_itself(trusted, batch):
    frame = pd.concat([trusted, batch], ignore_index=True)
    frame.index = [f"row-{index}" for index in range(len(frame))]
    findings = CellwiseOutlierDetector(alpha=0.01).self_findings(frame)
    flagged = set(findings.loc[findings["flagged"], "row_id"])
    corrupted = {f"row-{600 + row}" for row in range(400, 400 + CORRUPTED)}
    assert flagged >= corrupted
    # Clean rows flagged: at most about alpha of them.
    assert len(flagged - corrupted) <= 0.01 * (len(frame) - CORRUPTED) + 5
    assert "against the rest of the batch" in findings.loc[findings["row_id"] == "row-1000", "reason"].item()


@pytest.mark.parametrize("matrix", [
    np.random.default_rng(0).normal(size=(50, 1)),  # one feature: nothing to predict it from
    np.random.default_rng(0).integers(0, 2, size=(50, 3)).astype(float),  # 0/1 columns only
])
def test_needs_two_features_one_of_them_graded(matrix):
    with pytest.raises(NotEnoughData, match="outlier.cellwise: needs two features"):
        CellwiseOutlierDetector().fit(matrix)


def test_a_constant_column_predicts_nothing_and_breaks_nothing(trusted, batch):
    with_constant = trusted.assign(country=1.0)
    detector = CellwiseOutlierDetector(alpha=0.01).fit(with_constant)
    scores = detector.score(batch.assign(country=1.0))
    np.testing.assert_allclose(scores, CellwiseOutlierDetector(alpha=0.01).fit(trusted).score(batch), rtol=1e-9)


def panel_of_children() -> pd.DataFrame:
    """Four waves a child, ids handed out by smoking status: a step the copula cannot draw, an age of four values."""
    rng = np.random.default_rng(0)
    child = np.repeat(np.arange(500), 4)
    smoke = (child < 175).astype(float)
    return pd.DataFrame({
        "child": child.astype(float),
        "age": np.tile([7.0, 8.0, 9.0, 10.0], 500),
        "smoke": smoke,
        "wheeze": (rng.random(2000) < 0.15 + 0.05 * smoke).astype(float),
    })


def test_without_a_reference_the_batch_tail_holds_the_rate_on_a_lumpy_clean_batch():
    # Shaped like geepack's ohio, where the tail drawn from the batch's bulk
    # alone flagged a fifth of the rows (see the module docstring).
    panel = panel_of_children()
    assert CellwiseOutlierDetector(alpha=0.01).self_findings(panel)["flagged"].sum() == 4  # alpha allows about 20
    unguarded = CellwiseOutlierDetector(alpha=0.01)
    unguarded._guard_self_tail = False
    assert unguarded.self_findings(panel)["flagged"].sum() == 383


def test_it_can_be_kept_to_trusted_rows(batch):
    with pytest.raises(NotEnoughData, match="outlier.cellwise: set to judge a batch against trusted rows only"):
        CellwiseOutlierDetector(without_reference=False).self_findings(batch)
