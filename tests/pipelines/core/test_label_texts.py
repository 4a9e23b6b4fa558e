"""``core.checks.label_texts``: labels as text, one string object per distinct label."""
import hashlib

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from poisonguard.pipelines.core.checks import LABEL_WIDTH, label_texts


def expected_text(value) -> str:
    """What each label reads as, stated apart from the implementation."""
    if value is None or value != value:  # None or NaN: missing
        return ""
    if len(value) <= LABEL_WIDTH:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return value[:LABEL_WIDTH] + "…" + digest


labels = st.one_of(st.none(), st.just(float("nan")), st.text(max_size=LABEL_WIDTH + 3), st.sampled_from(["a", "b"]))


@given(st.lists(labels, max_size=40))
def test_each_label_reads_as_its_text_or_empty_when_missing(values):
    series = pd.Series(values, dtype=object)
    assert label_texts(series).tolist() == [expected_text(v) for v in values]


def test_equal_labels_share_one_object_and_missing_is_empty():
    texts = label_texts(pd.Series(["cat", None, "cat", "x" * (LABEL_WIDTH + 1), np.nan], dtype=object))
    assert texts[0] is texts[2] and texts[1] == texts[4] == ""
    assert texts[3].startswith("x" * LABEL_WIDTH + "…") and texts.dtype == object


def test_unhashable_labels_are_read_cell_by_cell():
    assert label_texts(pd.Series([["a"], "b"], dtype=object)).tolist() == ["['a']", "b"]


def test_labels_equal_only_under_hashing_keep_their_own_text():
    # 1, True and 1.0 hash alike; as labels they are three different texts.
    assert label_texts(pd.Series([1, True, 1.0, "a", None], dtype=object)).tolist() == ["1", "True", "1.0", "a", ""]
