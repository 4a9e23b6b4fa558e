"""Notes that a trusted reference is too small for the promised rates, with the size that would do."""
import pandas as pd

from poisonguard.pipelines.core.adequacy import reference_notes
from poisonguard.pipelines.core.config import RunConfig


def test_a_large_reference_with_common_categories_gets_no_note():
    reference = pd.DataFrame({"colour": ["red", "blue"] * 100, "y": ["a", "b"] * 100})
    assert reference_notes(reference, {"colour": "categorical"}, "y", RunConfig()) == []


def test_a_small_reference_is_named_with_the_size_that_would_do():
    reference = pd.DataFrame({"colour": ["red", "blue"] * 30, "y": ["a", "b"] * 30})
    [note] = reference_notes(reference, {"colour": "categorical"}, "y", RunConfig())
    # Eight detectors share 0.05: 0.05 / 8 each, counted from 1 / alpha - 1 = 159 rows.
    assert note.startswith("The trusted reference has 60 rows, fewer than the 159 ")


def test_categories_seen_once_are_counted_as_good_turing_unseen_mass():
    # 200 rows; 'shade' has 10 categories seen once: about 5% of new rows carry an unseen one.
    shades = ["light"] * 190 + [f"rare-{i}" for i in range(10)]
    reference = pd.DataFrame({"shade": shades, "y": ["a", "b"] * 100})
    [note] = reference_notes(reference, {"shade": "categorical"}, "y", RunConfig())
    assert "got no value set and their new categories go unchecked" in note
    assert "('shade' 5.0%)" in note and "about 1000 reference rows" in note


def test_labels_seen_once_are_named_as_always_quarantined():
    reference = pd.DataFrame({"colour": ["red", "blue"] * 100, "y": ["a", "b"] * 97 + [f"z{i}" for i in range(6)]})
    [note] = reference_notes(reference, {"colour": "categorical"}, "y", RunConfig())
    assert "about 3.0% of clean rows will carry a label it never saw" in note and "about 600 reference rows" in note


def test_columns_without_a_value_set_are_not_counted():
    # Every value distinct (an id, free text): the suite gives it no value set, so nothing to break.
    reference = pd.DataFrame({"note": [f"text {i}" for i in range(200)], "y": ["a", "b"] * 100})
    assert reference_notes(reference, {"note": "categorical"}, "y", RunConfig()) == []
