"""Scikit-learn's estimator checks on every registered detector, where they apply.

Every detector in ``registered_detectors()`` is a ``sklearn.base.BaseEstimator``
and follows its conventions (``detectors.base.Detector``: ``__init__`` stores
parameters, ``fit(X, y)`` validates and returns ``self``, fitted state ends in
``_``). The tests are parametrized over the registry, so a new detector is
checked as soon as it is registered. Every detector is given labels ``y``
(some need them; the others ignore them).

The full ``sklearn.utils.estimator_checks.check_estimator`` does not apply:

* ``score(X, y)`` returns one suspicion score per row (an array), not
  scikit-learn's scalar score, and there is no ``predict``, ``transform`` or
  ``decision_function``. Checks that only look at those methods (unfitted
  errors, pickling, idempotent fit, unchanged ``__dict__``, subset and row
  order invariance) would pass without testing anything, so this file has
  its own version of each for ``score``; each says which check it mirrors.
* Bad input raises ``detectors.base.DetectorError`` (a ``ValueError``) with
  the project's own message (DESIGN.md, "Errors"), and a DataFrame is
  matched to the fitted columns by name (reordered, not rejected). Checks
  that require scikit-learn's exact wording or behaviour there (empty data,
  wrong feature count, ``y=None``, non-numeric cells, column names) are
  mirrored with the project's messages.
* Not applicable at all: ``check_param_validation`` (parameters are
  validated in ``fit``, there are no ``_parameter_constraints``), the
  sample-weight checks (``fit`` takes no ``sample_weight``), the
  classifier/regressor/outlier/transformer/cluster checks (a detector is
  none of these), partial-fit and array-API checks (not supported).
"""
from __future__ import annotations

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as sk

from poisonguard.detectors.base import DetectorError
from poisonguard.detectors.registry import registered_detectors

DETECTORS = registered_detectors()

# scikit-learn's data sets in these checks are tiny; a detector says it
# cannot flag anything at alpha=0.01 with so few trusted rows, as it should.
pytestmark = pytest.mark.filterwarnings("ignore:.*calibration rows cannot give a p-value")

# Small seeded data every detector can fit: three string labels on 20 trusted
# rows each (stratified folds need several rows per label), shifted apart so
# the label detectors have something to learn; a batch of 10 rows per label.
LABELS = np.array(["cat", "dog", "eel"], dtype=object)


def _labelled_rows(rng, rows_per_label: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(LABELS, rows_per_label)
    features = rng.normal(size=(len(labels), 4)) + np.repeat(np.arange(len(LABELS)), rows_per_label)[:, None]
    order = rng.permutation(len(labels))
    return features[order], labels[order]


_RNG = np.random.default_rng(0)
REFERENCE, REFERENCE_LABELS = _labelled_rows(_RNG, 20)
BATCH, BATCH_LABELS = _labelled_rows(_RNG, 10)

# A detector whose score of a row depends on the other rows scored with it
# (by design) cannot be checked for subset invariance.
BATCH_DEPENDENT = {
    "duplicates.flood": "scores the density of the batch itself",
    "backdoor.trigger": "counts values shared with other rows of the batch",
    "label.confident_learning": "cross-fits on the trusted and batch rows pooled",
}
# Pooled cross-fitting assigns rows to folds by position, so permuting the
# batch changes which model scores a row (and so the scores, slightly).
ORDER_DEPENDENT = {
    "label.confident_learning": "pooled cross-fitting assigns folds by row position",
}

# scikit-learn checks that apply as they are. These look at the class and
# its parameters, on a default-constructed detector.
SKLEARN_PARAMETER_CHECKS = [
    sk.check_estimator_cloneable,
    sk.check_estimator_repr,
    sk.check_parameters_default_constructible,
    sk.check_no_attributes_set_in_init,
    sk.check_get_params_invariance,
    sk.check_set_params,
    sk.check_do_not_raise_errors_in_init_or_set_params,
    sk.check_mixin_order,
    sk.check_valid_tag_types,
    sk.check_estimator_tags_renamed,
]
# These fit (and check_fit_score_takes_y and check_pipeline_consistency also
# call score), on a detector made by ``make_detector``.
SKLEARN_FIT_CHECKS = [
    sk.check_estimators_fit_returns_self,
    sk.check_estimators_overwrite_params,
    sk.check_dont_overwrite_parameters,
    sk.check_fit_check_is_fitted,
    sk.check_n_features_in,
    sk.check_fit_score_takes_y,
    sk.check_pipeline_consistency,
    # input validation
    sk.check_fit1d,
    sk.check_fit2d_1feature,
    sk.check_estimators_dtypes,
    sk.check_estimators_nan_inf,
    sk.check_complex_data,
    sk.check_estimator_sparse_tag,
    sk.check_estimator_sparse_array,
    sk.check_estimator_sparse_matrix,
    sk.check_readonly_memmap_input,
    sk.check_f_contiguous_array_estimator,
]

# Like scikit-learn's own suite (which shrinks n_estimators and max_iter for
# its checks), fit checks use the fewest folds: the API is the same, and an
# isolation forest is fitted 3 times per fit instead of 6.
FAST_PARAMS = {"n_folds": 2}


def make_detector(name: str):
    """An unfitted detector ``name`` with ``FAST_PARAMS`` where it has them."""
    detector = DETECTORS[name]()
    params = detector.get_params()
    return detector.set_params(**{key: value for key, value in FAST_PARAMS.items() if key in params})


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def fitted(name):
    """The detector fitted once on the reference; tests must not change it."""
    return make_detector(name).fit(REFERENCE, REFERENCE_LABELS)


@pytest.fixture(scope="module")
def batch_scores(fitted) -> np.ndarray:
    return fitted.score(BATCH, BATCH_LABELS)


@pytest.mark.parametrize("check", SKLEARN_PARAMETER_CHECKS, ids=lambda check: check.__name__)
def test_sklearn_parameter_check(name, check):
    check(DETECTORS[name].__name__, DETECTORS[name]())


@pytest.mark.parametrize("check", SKLEARN_FIT_CHECKS, ids=lambda check: check.__name__)
def test_sklearn_fit_check(name, check):
    check(DETECTORS[name].__name__, make_detector(name))


def test_score_returns_one_float_per_row(batch_scores):
    assert isinstance(batch_scores, np.ndarray)
    assert batch_scores.shape == (len(BATCH),)
    assert np.issubdtype(batch_scores.dtype, np.floating)


def test_unfitted_detector_raises_not_fitted_error(name, fitted):
    # Mirrors check_estimators_unfitted, which only calls predict,
    # predict_proba and decision_function. A clone of a fitted detector is
    # unfitted too.
    for detector in (make_detector(name), clone(fitted)):
        with pytest.raises(NotFittedError):
            detector.score(BATCH, BATCH_LABELS)
        with pytest.raises(NotFittedError):
            detector.findings(BATCH, BATCH_LABELS)
    assert clone(fitted).get_params() == fitted.get_params()


def test_fit_is_idempotent_and_leaves_inputs_unchanged(name, batch_scores):
    # Mirrors check_fit_idempotent (which compares predict/transform only):
    # fitting twice on the same data, with the same random_state, gives the
    # same scores as fitting once. scikit-learn checks that inputs are left
    # alone only for sample weights (check_sample_weights_not_overwritten);
    # features and labels must not be changed either.
    reference, labels = REFERENCE.copy(), REFERENCE_LABELS.copy()
    batch, batch_labels = BATCH.copy(), BATCH_LABELS.copy()
    detector = make_detector(name).fit(reference, labels)
    detector.fit(reference, labels)
    np.testing.assert_allclose(detector.score(batch, batch_labels), batch_scores, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(reference, REFERENCE)
    np.testing.assert_array_equal(labels, REFERENCE_LABELS)
    np.testing.assert_array_equal(batch, BATCH)
    np.testing.assert_array_equal(batch_labels, BATCH_LABELS)


def test_pickle_round_trip_gives_same_scores(fitted, batch_scores):
    # Mirrors check_estimators_pickle (which compares predict/transform only).
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.score(BATCH, BATCH_LABELS), batch_scores)


def test_score_does_not_change_fitted_state(fitted):
    # Mirrors check_dict_unchanged (which calls predict/transform only);
    # hashing also catches arrays changed in place.
    before = joblib.hash(vars(fitted))
    fitted.score(BATCH, BATCH_LABELS)
    assert joblib.hash(vars(fitted)) == before


def test_wrong_feature_count_at_score_raises_clear_error(fitted):
    # Mirrors check_n_features_in_after_fitting and check_fit2d_predict1d,
    # which require scikit-learn's own message ("X has 1 features, but ...").
    assert fitted.n_features_in_ == REFERENCE.shape[1]
    with pytest.raises(DetectorError, match="got 1 feature columns, the detector was fitted on 4"):
        fitted.score(BATCH[:, :1], BATCH_LABELS)
    with pytest.raises(DetectorError, match="features must be a 2-D table"):
        fitted.score(BATCH[0], BATCH_LABELS[:1])


def test_object_dtype_and_list_input_give_same_scores(name, batch_scores):
    # Mirrors check_dtype_object and check_estimators_data_not_an_array. A
    # non-numeric cell raises the project's DetectorError (scikit-learn's
    # check wants a TypeError from np.asarray).
    as_objects = make_detector(name).fit(REFERENCE.astype(object), REFERENCE_LABELS)
    np.testing.assert_allclose(as_objects.score(BATCH.astype(object), BATCH_LABELS), batch_scores)
    as_lists = make_detector(name).fit(REFERENCE.tolist(), REFERENCE_LABELS.tolist())
    np.testing.assert_allclose(as_lists.score(BATCH.tolist(), BATCH_LABELS.tolist()), batch_scores)
    not_numeric = REFERENCE.astype(object)
    not_numeric[0, 0] = {"foo": "bar"}
    with pytest.raises(DetectorError, match="features must be numeric"):
        make_detector(name).fit(not_numeric, REFERENCE_LABELS)


def test_dataframe_columns_are_matched_by_name(name, batch_scores):
    # Mirrors check_dataframe_column_names_consistency. By design a frame is
    # reordered to the fitted columns (scikit-learn rejects a new order), a
    # missing column is named, and an array of the right width is accepted.
    columns = [f"feature_{index}" for index in range(REFERENCE.shape[1])]
    frame, batch_frame = pd.DataFrame(REFERENCE, columns=columns), pd.DataFrame(BATCH, columns=columns)
    detector = make_detector(name).fit(frame, REFERENCE_LABELS)
    assert isinstance(detector.feature_names_in_, np.ndarray)
    assert detector.feature_names_in_.dtype == object
    np.testing.assert_array_equal(detector.feature_names_in_, columns)
    np.testing.assert_allclose(detector.score(batch_frame, BATCH_LABELS), batch_scores)
    np.testing.assert_allclose(detector.score(batch_frame[columns[::-1]], BATCH_LABELS), batch_scores)
    np.testing.assert_allclose(detector.score(BATCH, BATCH_LABELS), batch_scores)
    renamed = batch_frame.rename(columns={"feature_2": "other"})
    with pytest.raises(DetectorError, match="feature column 'feature_2' is missing"):
        detector.score(renamed, BATCH_LABELS)


def test_dataframe_with_default_column_labels_scores_like_an_array(name, batch_scores):
    # Mirrors check_estimators_data_not_an_array with pandas.DataFrame(X):
    # integer column labels, kept as text in feature_names_in_.
    detector = make_detector(name).fit(pd.DataFrame(REFERENCE), pd.Series(REFERENCE_LABELS))
    np.testing.assert_allclose(detector.score(pd.DataFrame(BATCH), pd.Series(BATCH_LABELS)), batch_scores)


def test_integer_labels_give_same_scores_as_string_labels(name, batch_scores):
    # scikit-learn's checks fit on integer labels (check_fit_score_takes_y,
    # check_estimators_dtypes, ...) but never compare the result with string
    # labels. The mapping keeps the labels' sort order, so codes and folds match.
    as_integers = {label: code for code, label in enumerate(LABELS)}
    to_integers = np.vectorize(as_integers.get, otypes=[int])
    detector = make_detector(name).fit(REFERENCE, to_integers(REFERENCE_LABELS))
    np.testing.assert_allclose(detector.score(BATCH, to_integers(BATCH_LABELS)), batch_scores)


def test_too_little_reference_data_raises_clear_error(name):
    # Mirrors check_estimators_empty_data_messages and check_fit2d_1sample,
    # which require scikit-learn's wording. No rows or no columns must fail
    # in fit; a single row either fits or raises DetectorError, never an
    # arbitrary exception.
    detector = make_detector(name)
    with pytest.raises(DetectorError):
        detector.fit(np.empty((0, 4)), np.empty(0, dtype=object))
    with pytest.raises(DetectorError, match="no columns"):
        detector.fit(np.empty((len(REFERENCE), 0)), REFERENCE_LABELS)
    try:
        detector.fit(REFERENCE[:1], REFERENCE_LABELS[:1])
    except DetectorError:
        pass


def test_fit_without_labels_works_or_asks_for_them(name):
    # Mirrors check_requires_y_none, which requires scikit-learn's wording.
    # The declared tags say which (see also test_contract).
    detector = make_detector(name)
    if detector.tags.needs_labels:
        with pytest.raises(DetectorError, match=r"needs the labels \(y\), got None"):
            detector.fit(REFERENCE, None)
    else:
        assert detector.fit(REFERENCE, None).n_features_in_ == REFERENCE.shape[1]


def test_scores_follow_row_order(name, fitted, batch_scores):
    # Mirrors check_methods_sample_order_invariance (predict/transform only).
    if name in ORDER_DEPENDENT:
        pytest.skip(f"{name} depends on the batch's row order: {ORDER_DEPENDENT[name]}")
    order = np.random.default_rng(1).permutation(len(BATCH))
    np.testing.assert_allclose(fitted.score(BATCH[order], BATCH_LABELS[order]), batch_scores[order])


def test_scores_of_a_subset_match(name, fitted, batch_scores):
    # Mirrors check_methods_subset_invariance (predict/transform only).
    if name in BATCH_DEPENDENT:
        pytest.skip(f"{name} scores rows against the batch by design: {BATCH_DEPENDENT[name]}")
    for part in np.array_split(np.arange(len(BATCH)), 3):
        np.testing.assert_allclose(fitted.score(BATCH[part], BATCH_LABELS[part]), batch_scores[part])
