"""Tests of the HTML run report (poisonguard.pipelines.outputs.report)."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from poisonguard.pipelines.outputs.report import histogram_geometry, render_report, score_arrays

SCRIPT = "<script>alert(1)</script>"
# Elements HTML never closes.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TagBalance(HTMLParser):
    """Collects tags, svg elements and text, and records mismatched closes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.svg_titles: list[str] = []
        self.text: list[str] = []
        self._in_svg_title = False

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "title" and "svg" in self.stack[:-1]:
            self._in_svg_title = True

    def handle_startendtag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        self._in_svg_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_svg_title and data.strip():
            self.svg_titles.append(data.strip())


def _parse(page: str) -> _TagBalance:
    parser = _TagBalance()
    parser.feed(page)
    parser.close()
    return parser


def _per_check(rows) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=["check", "kind", "rows_checked", "flagged", "flagged_percent", "alpha", "threshold_note"],
    )


def _detector_findings(check: str, row_ids, rng, n_far: int) -> pd.DataFrame:
    scores = rng.normal(size=len(row_ids))
    scores[:n_far] += 10.0
    ranks = scores.argsort().argsort()  # 0 = least suspicious
    p_values = (len(row_ids) - ranks) / (len(row_ids) + 1.0)
    flagged = p_values <= 0.02
    return pd.DataFrame(
        {
            "row_id": row_ids,
            "check": check,
            "score": scores,
            "p_value": p_values,
            "flagged": flagged,
            "reason": np.where(flagged, f"{check} score far above trusted rows", "typical"),
        }
    )


@pytest.fixture
def run():
    rng = np.random.default_rng(7)
    row_ids = [f"row-{i:03d}" for i in range(120)]
    findings = pd.concat(
        [
            _detector_findings("outlier.ecod", row_ids, rng, n_far=3),
            _detector_findings("label.trusted_model", row_ids, rng, n_far=2),
            pd.DataFrame(
                {
                    "row_id": ["row-005", "row-006"],
                    "check": "expect.column_type",
                    "score": [1.0, 1.0],
                    "p_value": [np.nan, np.nan],
                    "flagged": [True, True],
                    "reason": [f"bill_length_mm is {SCRIPT!r}, not a number", "bill_length_mm is 'n/a?', not a number"],
                }
            ),
        ],
        ignore_index=True,
    )
    flagged_ids = list(dict.fromkeys(findings.loc[findings["flagged"], "row_id"]))
    quarantined = pd.DataFrame(
        {
            "row_id": flagged_ids,
            "species": ["Adelie"] * len(flagged_ids),
            "bill_length_mm": ["39.1"] * len(flagged_ids),
            "sex": [np.nan] + ["female"] * (len(flagged_ids) - 1),
        }
    )
    quarantined.loc[quarantined["row_id"] == "row-005", "bill_length_mm"] = SCRIPT
    counts = findings[findings["flagged"]].groupby("check").size()
    per_check = _per_check(
        [
            ["expect.column_type", "expectation", 120, int(counts["expect.column_type"]), 1.67, np.nan, ""],
            ["outlier.ecod", "detector", 120, int(counts["outlier.ecod"]), 2.5, 0.01, "p <= 0.01"],
            ["label.trusted_model", "detector", 120, int(counts["label.trusted_model"]), 1.67, 0.01, "p <= 0.01"],
        ]
    )
    return {
        "title": "poisonguard run: penguins",
        "summary": {
            "dataset": "penguins",
            "batch files": ["batch.csv"],
            "rows in": 120,
            "kept": 120 - len(flagged_ids),
            "quarantined": len(flagged_ids),
            "reference": "reference.csv",
            "alpha": 0.01,
        },
        "per_check": per_check,
        "findings": findings,
        "quarantined": quarantined,
        "row_id_column": "row_id",
        "notes": ["Detectors were calibrated on 40 trusted rows."],
        "batch_failures": [],
    }


def test_page_names_every_check_and_count(run):
    page = render_report(**run)
    text = " ".join(_parse(page).text)
    for record in run["per_check"].to_dict("records"):
        assert record["check"] in page
        assert re.search(rf"<td class=\"num flagged\">{record['flagged']}</td>", page)
    for key, value in run["summary"].items():
        assert key in text
    assert str(run["summary"]["quarantined"]) in text
    assert "Detectors were calibrated on 40 trusted rows." in text


def test_every_value_is_escaped(run):
    run["title"] = SCRIPT
    run["summary"] = {SCRIPT: SCRIPT}
    run["notes"] = [SCRIPT]
    run["batch_failures"] = [SCRIPT]
    page = render_report(**run)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = _parse(page)
    assert "script" not in parsed.counts
    assert SCRIPT in "".join(parsed.text)  # shown to the reader as text


def test_page_is_self_contained_and_well_formed(run):
    page = render_report(**run)
    parsed = _parse(page)
    assert parsed.errors == []
    assert parsed.stack == []
    for tag in ("html", "head", "body", "main", "table", "svg"):
        assert parsed.counts.get(tag, 0) >= 1, tag
    assert not re.search(r"(https?:|//[a-z])", page, re.IGNORECASE)
    assert "<script" not in page.lower()
    assert not re.search(r"<[^>]+\son[a-z]+=", page)


def test_one_histogram_per_detector(run):
    page = render_report(**run)
    parsed = _parse(page)
    assert parsed.counts["svg"] == 2
    titles = [title for title in parsed.svg_titles if title.startswith("Histogram of")]
    assert titles == ["Histogram of outlier.ecod scores", "Histogram of label.trusted_model scores"]
    assert "score (higher = more suspicious)" in page
    assert 'fill="#c0392b"' in page  # flagged bars in their own colour
    assert 'stroke-dasharray' in page  # the threshold line


def test_rows_are_ordered_by_checks_then_p_value(run):
    page = render_report(**run, top_n=3)
    shown = re.findall(r"<code>(row-\d{3})</code>", page)
    findings = run["findings"]
    hits = findings[findings["flagged"]]
    stats = hits.groupby("row_id").agg(n=("check", "size"), p=("p_value", "min"))
    expected = stats.sort_values(["n", "p"], ascending=[False, True], na_position="last").index[:3]
    assert shown == list(expected)
    assert f"The 3 most suspicious of {len(run['quarantined'])} quarantined rows" in page


def test_quarantined_row_shows_values_and_reasons(run):
    page = render_report(**run)
    assert "row-005" in page
    assert "bill_length_mm is &#39;n/a?&#39;, not a number" in page
    assert '<span class="missing">missing</span>' in page  # the NaN sex value


def test_quarantined_can_be_indexed_by_row_id(run):
    run["quarantined"] = run["quarantined"].set_index("row_id")
    page = render_report(**run)
    assert "row-005" in page
    assert "&lt;script&gt;" in page


def test_zero_quarantined_rows(run):
    run["quarantined"] = run["quarantined"].iloc[0:0]
    run["findings"] = run["findings"].assign(flagged=False)
    page = render_report(**run)
    parsed = _parse(page)
    assert parsed.errors == [] and parsed.stack == []
    assert "No rows were quarantined." in page
    assert parsed.counts["svg"] == 2
    assert "flagged from" not in page  # no threshold line without flagged rows


def test_only_expectation_findings(run):
    findings = run["findings"]
    run["findings"] = findings[findings["p_value"].isna()].reset_index(drop=True)
    run["per_check"] = run["per_check"].iloc[:1]
    run["quarantined"] = run["quarantined"][run["quarantined"]["row_id"].isin(["row-005", "row-006"])]
    page = render_report(**run)
    parsed = _parse(page)
    assert parsed.errors == [] and parsed.stack == []
    assert "svg" not in parsed.counts
    assert "no score distributions" in page
    assert "row-006" in page


def test_empty_findings_and_checks():
    empty = pd.DataFrame(
        {
            "row_id": pd.Series([], dtype=str),
            "check": pd.Series([], dtype=str),
            "score": pd.Series([], dtype=float),
            "p_value": pd.Series([], dtype=float),
            "flagged": pd.Series([], dtype=bool),
            "reason": pd.Series([], dtype=str),
        }
    )
    page = render_report(
        title="empty",
        summary={},
        per_check=_per_check([]),
        findings=empty,
        quarantined=pd.DataFrame({"row_id": []}),
        row_id_column="row_id",
        notes=[],
        batch_failures=["label distribution shifted: 'spam' 10% -> 60%"],
    )
    parsed = _parse(page)
    assert parsed.errors == [] and parsed.stack == []
    assert "Batch-level checks failed (1)" in page
    assert "No checks ran." in page


def test_missing_column_is_named(run):
    with pytest.raises(ValueError, match="per_check lacks column"):
        render_report(**{**run, "per_check": run["per_check"].drop(columns=["alpha"])})


def test_histogram_geometry_handles_constant_and_infinite_scores():
    chart = histogram_geometry(np.array([1.0, 1.0, np.inf]), np.array([False, False, True]))
    assert chart["n_nonfinite"] == 1
    assert chart["threshold"] is None  # the only flagged score is not drawable
    assert sum(bar["clean"] for bar in chart["bars"]) == 2
    tiny = histogram_geometry(np.r_[np.zeros(1000), 5.0], np.r_[np.zeros(1000, bool), True])
    assert tiny["bars"][-1]["flagged_h"] >= 2.0  # one flagged row stays visible


def test_only_counts_beyond_what_clean_data_gives_are_red(run):
    # 120 rows at alpha 0.01: clean data flags at most 4 rows, 99 times in 100 (binomial).
    run["per_check"] = _per_check([
        ["outlier.ecod", "detector", 120, 4, 3.3, 0.01, "p <= 0.01"],
        ["label.trusted_model", "detector", 120, 5, 4.2, 0.01, "p <= 0.01"],
        ["expect.column_type", "expectation", 120, 1, 0.8, np.nan, ""],
        ["duplicates.flood", "detector", 120, 0, 0.0, 0.01, "p <= 0.01"],
    ])
    page = render_report(**run)
    red = re.findall(r'<tr class="hit">\s*<td><code>([^<]+)</code>', page)
    assert red == ["label.trusted_model", "expect.column_type"]


def test_findings_given_table_by_table_render_the_same_page(run):
    # The pipeline passes one findings table per check (never stacked, a
    # large batch has millions of findings); the page must not change.
    whole = render_report(**run)
    findings = run["findings"]
    run["findings"] = [findings[findings["check"] == check] for check in pd.unique(findings["check"])][::-1]
    assert render_report(**run) == whole


def test_flagged_findings_with_score_arrays_render_the_same_page(run):
    # After the decision the pipeline keeps only flagged findings and every
    # row's score as arrays (publish.slim_outcomes); the page must not change.
    whole = render_report(**run)
    findings = run["findings"]
    run["scores"] = score_arrays([findings])
    run["findings"] = findings[findings["flagged"] | (findings["row_id"] == "")]
    assert len(run["findings"]) < len(findings)
    assert render_report(**run) == whole
