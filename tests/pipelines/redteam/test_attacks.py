"""Tests of poisonguard.pipelines.redteam.attacks: exact poison counts, correct truth, seeded and pure."""
import numpy as np
import pandas as pd
import pytest

from poisonguard.pipelines.redteam.attacks import (
    ATTACKS,
    BROKEN_TEXT,
    TRUTH_COLUMNS,
    UNKNOWN_CATEGORY,
    AttackError,
    backdoor,
    inject,
    poison_count,
    trigger_test_rows,
)

ADDED = {"far_rows", "duplicate_flood"}


def clean_table(n_rows=200, seed=0):
    """Three labelled Gaussian blobs with two numeric features, a category and ids."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n_rows)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    values = centres[codes] + rng.normal(size=(n_rows, 2))
    return pd.DataFrame(
        {
            "id": [f"r{index:04d}" for index in range(n_rows)],
            "x": np.round(values[:, 0], 2),
            "y": np.round(values[:, 1], 2),
            "z": np.round(rng.normal(size=n_rows) * 3 + 10, 1),
            "shade": rng.choice(["light", "dark"], n_rows),
            "label": np.array(["red", "green", "blue"])[codes],
        }
    )


@pytest.fixture(scope="module")
def clean():
    return clean_table()


def poison(attack, frame, **options):
    return inject(attack, frame, label="label", id_column="id", rate=0.05, seed=3, **options)


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_poisons_exactly_the_requested_rows(clean, attack):
    result = poison(attack, clean)
    assert list(result.truth.columns) == TRUTH_COLUMNS
    assert len(result.truth) == poison_count(len(clean), 0.05) == 10
    assert result.truth["row_id"].is_unique
    assert (result.truth["attack"] == attack).all()
    added = len(result.frame) - len(clean)
    assert added == (10 if attack in ADDED else 0)
    assert result.frame["id"].is_unique
    assert set(result.truth["row_id"]) <= set(result.frame["id"])


@pytest.mark.parametrize("attack", ATTACKS)
def test_only_the_truth_rows_differ(clean, attack):
    result = poison(attack, clean)
    before = clean.set_index("id").astype(str)
    after = result.frame.set_index("id").astype(str)
    kept = after.loc[after.index.isin(before.index)]
    changed = kept.index[(kept != before.loc[kept.index]).any(axis=1)]
    new = after.index[~after.index.isin(before.index)]
    assert set(changed) | set(new) == set(result.truth["row_id"])


@pytest.mark.parametrize("attack", ATTACKS)
def test_seeded_and_pure(clean, attack):
    copy = clean.copy()
    first, second = poison(attack, clean), poison(attack, clean)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    pd.testing.assert_frame_equal(first.truth, second.truth)
    pd.testing.assert_frame_equal(clean, copy)
    other = inject(attack, clean, label="label", id_column="id", rate=0.05, seed=4)
    if attack != "boundary_flips":  # the least sure rows do not depend on the seed
        assert not other.frame.equals(first.frame)


def test_label_flips_change_only_labels(clean):
    for attack in ("random_flips", "targeted_flips", "boundary_flips"):
        result = poison(attack, clean)
        rows = result.frame.set_index("id").loc[result.truth["row_id"]]
        original = clean.set_index("id").loc[result.truth["row_id"]]
        assert (rows["label"] != original["label"]).all()
        pd.testing.assert_frame_equal(rows[["x", "y", "z", "shade"]], original[["x", "y", "z", "shade"]])


def test_targeted_flips_go_from_one_label_to_another(clean):
    result = poison("targeted_flips", clean)
    original = clean.set_index("id").loc[result.truth["row_id"], "label"]
    flipped = result.frame.set_index("id").loc[result.truth["row_id"], "label"]
    assert original.nunique() == 1 and flipped.nunique() == 1


def test_far_rows_are_outside_the_clean_range(clean):
    result = poison("far_rows", clean)
    rows = result.frame.set_index("id").loc[result.truth["row_id"]]
    for column in ("x", "y", "z"):
        span = clean[column].max() - clean[column].min()
        outside = (rows[column] > clean[column].max() + 0.4 * span) | (rows[column] < clean[column].min() - 0.4 * span)
        assert outside.all()


def test_backdoor_stamps_the_trigger_and_the_target(clean):
    result = backdoor(clean, label="label", id_column="id", rate=0.05, seed=3)
    trigger = result.trigger
    assert len(trigger.features) == 3 and set(trigger.features) == {"x", "y", "z"}
    rows = result.frame.set_index("id").loc[result.truth["row_id"]]
    assert (rows["label"] == trigger.target).all()
    originals = clean.set_index("id").loc[result.truth["row_id"], "label"]
    assert (originals != trigger.target).all()
    for feature, value in zip(trigger.features, trigger.values):
        assert (rows[feature] == value).all()
        assert clean[feature].min() <= value <= clean[feature].max()  # unusual but in range
        assert (clean[feature] == value).mean() <= 0.05
    test_rows = trigger_test_rows(clean, trigger, label="label")
    assert (test_rows["label"] != trigger.target).all() and len(test_rows) == (clean["label"] != trigger.target).sum()
    assert (test_rows[list(trigger.features)] == list(trigger.values)).all().all()


def test_duplicate_flood_copies_a_few_rows_with_one_label(clean):
    result = poison("duplicate_flood", clean)
    rows = result.frame.set_index("id").loc[result.truth["row_id"]]
    assert rows["label"].nunique() == 1
    parents = result.truth["detail"].str.extract(r"near-copy of row (\w+)")[0]
    assert parents.nunique() == 3
    source = clean.set_index("id").loc[parents]
    assert (np.abs(rows["x"].to_numpy() - source["x"].to_numpy()) < 0.2).all()
    assert (source["label"].to_numpy() != rows["label"].to_numpy()).all()


def test_schema_broken_rows_break_the_schema(clean):
    result = poison("schema_broken", clean)
    rows = result.frame.set_index("id").loc[result.truth["row_id"]]
    broken_text = rows[["x", "y", "z"]].eq(BROKEN_TEXT).any(axis=1)
    unknown = rows["shade"].eq(UNKNOWN_CATEGORY)
    empty = rows["label"].isna()
    assert (broken_text | unknown | empty).all()
    assert broken_text.sum() and unknown.sum() and empty.sum()


def test_feature_corruption_changes_a_few_numeric_cells(clean):
    result = poison("feature_corruption", clean)
    rows = result.frame.set_index("id").loc[result.truth["row_id"], ["x", "y", "z"]].astype(float)
    original = clean.set_index("id").loc[result.truth["row_id"], ["x", "y", "z"]]
    assert ((rows != original).sum(axis=1) >= 1).all()


def test_errors_name_the_problem(clean):
    with pytest.raises(AttackError, match="unknown attack 'poison_ivy'"):
        inject("poison_ivy", clean, label="label", id_column="id")
    with pytest.raises(AttackError, match="rate must be between 0 and 1"):
        inject("random_flips", clean, label="label", id_column="id", rate=1.5)
    with pytest.raises(AttackError, match="no label column 'species'"):
        inject("random_flips", clean, label="species", id_column="id")
    with pytest.raises(AttackError, match="needs at least 1 numeric feature"):
        inject("far_rows", clean[["id", "shade", "label"]], label="label", id_column="id")
