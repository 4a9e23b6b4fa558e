"""The human-readable run report: one self-contained ``report.html``.

The page is what a reviewer opens first: what ran, on what, with which
reference; what was flagged by which check and how that compares with the
false-positive rate the detectors were calibrated for; where the flagged rows
sit in each detector's score distribution; and the most suspicious
quarantined rows with their original values and reasons.

It is built for reading offline and for archiving next to a signed dataset:
inline CSS, inline SVG charts, no JavaScript and no external URLs. Jinja2
renders it with autoescaping on and the charts are drawn by the template from
plain numbers computed here, so no value from the data ever reaches the page
unescaped.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence

import jinja2
import numpy as np
import pandas as pd
from scipy import stats

from poisonguard.pipelines.core.histograms import histogram_edges
from poisonguard.pipelines.core.text import shorten

# Characters of one cell shown in the report (the whole value is in quarantine.parquet).
REPORT_CELL_WIDTH = 200
PER_CHECK_COLUMNS = [
    "check",
    "kind",
    "rows_checked",
    "flagged",
    "flagged_percent",
    "alpha",
    "threshold_note",
]
_FINDING_COLUMNS = ["row_id", "check", "score", "p_value", "flagged", "reason"]

HISTOGRAM_BINS = 30
# Geometry of one histogram, in SVG user units (the chart scales to the page).
_WIDTH, _HEIGHT = 640, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 26, 24, 46
# A bar holding at least one row is drawn at least this tall, so a single
# flagged row in the tail stays visible next to a bin of thousands.
_MIN_BAR = 2.0

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("poisonguard.pipelines.outputs", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_report(
    *,
    title: str,
    summary: Mapping[str, object],
    per_check: pd.DataFrame,
    findings: pd.DataFrame | Sequence[pd.DataFrame],
    quarantined: pd.DataFrame,
    row_id_column: str,
    notes: Sequence[str],
    batch_failures: Sequence[str],
    top_n: int = 50,
    batch_checks: Sequence[Mapping[str, object]] = (),
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> str:
    """Render the run report as one self-contained HTML page.

    Parameters
    ----------
    title : str
        Page title and heading.
    summary : mapping of str to object
        Run facts shown in the header in the given order (dataset, batch
        files, rows in, kept, quarantined, reference, alpha, times, tool
        version...). Lists are shown comma-separated.
    per_check : pandas.DataFrame, shape (n_checks, 7)
        Columns ``check, kind, rows_checked, flagged, flagged_percent, alpha,
        threshold_note``; ``kind`` is ``"expectation"`` or ``"detector"``,
        ``flagged_percent`` is in percent (0-100), ``alpha`` is NaN for
        expectations.
    findings : pandas.DataFrame or sequence of them, each shape (n_findings, 6)
        The findings tables (``row_id, check, score, p_value, flagged,
        reason``), e.g. one per check: a million-row batch has millions of
        findings, which are read table by table and never stacked. Checks
        with any non-NaN ``p_value`` are detectors and get a score
        histogram; rows with an empty ``row_id`` are batch-level and are not
        attached to rows.
    quarantined : pandas.DataFrame, shape (n_quarantined, n_columns)
        The original values of the quarantined rows, with the row id either
        in column ``row_id_column`` or as the index.
    row_id_column : str
        Name of the id column.
    notes : sequence of str
        Things the reader must know (e.g. no trusted reference was used).
    batch_failures : sequence of str
        Batch-level check failures, each one sentence with its evidence.
    top_n : int, default 50
        How many quarantined rows to show, most suspicious first: most
        flagging checks, then smallest p-value (rows flagged only by hard
        rules, which have no p-value, come after those with one).
    batch_checks : sequence of mapping, optional
        The drift table: one mapping per batch-level test with ``check,
        column, test, statistic, threshold, p_value, failed, reason``
        (``detectors.drift.BatchCheck.as_dict``).
    scores : mapping of check name to (scores, flagged) arrays, optional
        Every row's score and flag per check, for the histograms, when
        ``findings`` holds only the flagged rows (:func:`score_arrays` of the
        full tables); None reads them from ``findings``.

    Returns
    -------
    str
        The HTML page.

    Raises
    ------
    ValueError
        ``per_check`` or ``findings`` lacks a required column, or ``top_n``
        is negative.
    """
    _require_columns(per_check, PER_CHECK_COLUMNS, "per_check")
    tables = [findings] if isinstance(findings, pd.DataFrame) else list(findings)
    for table in tables:
        _require_columns(table, _FINDING_COLUMNS, "findings")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")

    values = _values_by_row_id(quarantined, row_id_column)
    rows, n_quarantined = _top_rows(_flagged_findings(tables), values, row_id_column, top_n)
    context = {
        "title": title,
        "summary": [(str(key), _format_value(value)) for key, value in summary.items()],
        "notes": [str(note) for note in notes],
        "batch_failures": [str(failure) for failure in batch_failures],
        "batch_checks": [_batch_check_row(row) for row in batch_checks],
        "checks": _check_rows(per_check),
        "histograms": _histograms(tables, per_check, scores),
        "rows": rows,
        "n_quarantined": n_quarantined,
        "top_n": top_n,
        "row_id_column": row_id_column,
    }
    return TEMPLATES.get_template("report.html").render(**context)


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}"
        )


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _format_value(value: object) -> str | None:
    """Text for one cell; ``None`` means missing (the template says so)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(item) or "missing" for item in value)
    if isinstance(value, np.generic):
        value = value.item()
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, _dt.datetime) else value.isoformat()
    return shorten(str(value), REPORT_CELL_WIDTH)


def _format_number(value: object, spec: str) -> str:
    """A float with ``spec``, or an em dash where there is none (NaN)."""
    if _is_missing(value):
        return "\u2014"
    return format(float(value), spec)


def _batch_check_row(row: Mapping[str, object]) -> dict:
    """One line of the drift table, numbers formatted."""
    return {
        "check": str(row.get("check", "")),
        "column": str(row.get("column") or ""),
        "test": str(row.get("test", "")),
        "statistic": _format_number(row.get("statistic"), ".4g"),
        "threshold": _format_number(row.get("threshold"), "g"),
        "p_value": _format_number(row.get("p_value"), ".2g"),
        "failed": bool(row.get("failed")),
        "reason": str(row.get("reason", "")),
    }


def _check_rows(per_check: pd.DataFrame) -> list[dict]:
    """One dict per check for the per-check table."""
    rows = []
    for record in per_check[PER_CHECK_COLUMNS].to_dict("records"):
        alpha = record["alpha"]
        checked = record["rows_checked"]
        expected = None
        flagged = 0 if _is_missing(record["flagged"]) else int(record["flagged"])
        # A rule (expectation, batch check) flags nothing on clean data; a
        # calibrated detector about alpha of clean rows.
        unusual = flagged > 0
        if not _is_missing(alpha) and not _is_missing(checked):
            expected = f"\u2248 {float(alpha) * float(checked):.3g}"
            # Highlighted only when more than clean data would give, 99 times in 100.
            unusual = flagged > stats.binom.ppf(0.99, int(checked), float(alpha))
        rows.append(
            {
                "check": str(record["check"]),
                "kind": str(record["kind"]),
                "rows_checked": _format_value(checked) or "\u2014",
                "flagged": flagged,
                "unusual": bool(unusual),
                "flagged_percent": _format_number(record["flagged_percent"], ".2f"),
                "alpha": _format_number(alpha, "g"),
                "expected": expected or "\u2014",
                "threshold_note": _format_value(record["threshold_note"]) or "",
            }
        )
    return rows


def _flagged_findings(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The flagged findings of every table, stacked: a few percent of a batch's findings."""
    flagged = [table[table["flagged"].to_numpy(dtype=bool)] for table in tables]
    return pd.concat(flagged, ignore_index=True) if flagged else pd.DataFrame(columns=_FINDING_COLUMNS)


def score_arrays(tables: Sequence[pd.DataFrame]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per check with any p-value (a detector): the scores and flags of its row-level findings."""
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for table in tables:
        # Compared as the objects they are: ``astype(str)`` copied a million
        # ids and names into new text per check.
        checks = table["check"].to_numpy(dtype=object)
        row_level = table["row_id"].to_numpy(dtype=object) != ""
        calibrated = table["p_value"].notna().to_numpy()
        scores = table["score"].to_numpy(dtype=float)
        flagged = table["flagged"].to_numpy(dtype=bool)
        for check in pd.unique(checks[calibrated]):
            rows = (checks == check) & row_level
            parts.setdefault(str(check), []).append((scores[rows], flagged[rows]))
    return {
        check: (np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces]))
        for check, pieces in parts.items()
    }


def _histograms(
    tables: Sequence[pd.DataFrame], per_check: pd.DataFrame, scores: Mapping[str, tuple] | None
) -> list[dict]:
    notes = dict(zip(per_check["check"].astype(str), per_check["threshold_note"]))
    by_check = score_arrays(tables) if scores is None else scores
    # Detectors in per-check order, then any other in findings order.
    ordered = [check for check in per_check["check"].astype(str) if check in by_check]
    ordered += [check for check in by_check if check not in ordered]
    charts = []
    for check in ordered:
        chart = histogram_geometry(*by_check[check])
        chart["check"] = check
        chart["threshold_note"] = _format_value(notes.get(check)) or ""
        charts.append(chart)
    return charts


def histogram_geometry(scores: np.ndarray, flagged: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict:
    """Lay out a score histogram as SVG coordinates for the template.

    Parameters
    ----------
    scores : numpy.ndarray of float, shape (n_rows,)
        Detector scores (higher = more suspicious); non-finite ones are
        counted but not drawn.
    flagged : numpy.ndarray of bool, shape (n_rows,)
    bins : int, default 30

    Returns
    -------
    dict
        ``bars`` (per bin: x, width, clean and flagged rectangles, counts and
        edges), ``x_ticks``, ``y_ticks``, ``threshold`` (x position and label
        of the smallest flagged score, or None), counts, and the plot box.
    """
    finite = np.isfinite(scores)
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    chart = {
        "width": _WIDTH,
        "height": _HEIGHT,
        "left": _LEFT,
        "top": _TOP,
        "right": _WIDTH - _RIGHT,
        "bottom": _HEIGHT - _BOTTOM,
        "n_rows": int(scores.size),
        "n_flagged": int(flagged.sum()),
        "n_nonfinite": int((~finite).sum()),
        "bars": [],
        "x_ticks": [],
        "y_ticks": [],
        "threshold": None,
    }
    values, marks = scores[finite], flagged[finite]
    if values.size == 0:
        return chart
    edges = histogram_edges(float(values.min()), float(values.max()), bins)
    low, high = float(edges[0]), float(edges[-1])
    clean_counts, _ = np.histogram(values[~marks], bins=edges)
    flagged_counts, _ = np.histogram(values[marks], bins=edges)
    top_count = max(int((clean_counts + flagged_counts).max()), 1)

    def x_of(score: float) -> float:
        return round(_LEFT + (score - low) / (high - low) * plot_w, 2)

    def height_of(count: int) -> float:
        return 0.0 if count == 0 else max(count / top_count * plot_h, _MIN_BAR)

    bottom = _TOP + plot_h
    bar_w = plot_w / bins
    for index in range(bins):
        clean, hit = int(clean_counts[index]), int(flagged_counts[index])
        if clean + hit == 0:
            continue
        clean_h, hit_h = height_of(clean), height_of(hit)
        chart["bars"].append(
            {
                "x": round(_LEFT + index * bar_w + 0.5, 2),
                "width": round(max(bar_w - 1.0, 0.5), 2),
                "clean_y": round(bottom - clean_h, 2),
                "clean_h": round(clean_h, 2),
                "flagged_y": round(bottom - clean_h - hit_h, 2),
                "flagged_h": round(hit_h, 2),
                "clean": clean,
                "flagged": hit,
                "low": f"{edges[index]:.4g}",
                "high": f"{edges[index + 1]:.4g}",
            }
        )
    for score in np.linspace(low, high, 5):
        chart["x_ticks"].append({"x": x_of(score), "label": f"{score:.3g}"})
    for count in sorted({0, top_count // 2, top_count}):
        chart["y_ticks"].append(
            {"y": round(bottom - count / top_count * plot_h, 2), "label": str(count)}
        )
    flagged_values = values[marks]
    if flagged_values.size:
        smallest = float(flagged_values.min())
        x = x_of(smallest)
        # Put the line's label on whichever side of it has room.
        chart["threshold"] = {
            "x": x,
            "label": f"{smallest:.4g}",
            "text_x": round(x + 4 if x < _LEFT + plot_w * 0.6 else x - 4, 2),
            "anchor": "start" if x < _LEFT + plot_w * 0.6 else "end",
        }
    return chart


def _values_by_row_id(quarantined: pd.DataFrame, row_id_column: str) -> pd.DataFrame:
    """The quarantined rows indexed by their id as text."""
    frame = quarantined
    if row_id_column in frame.columns:
        frame = frame.set_index(row_id_column)
    frame = frame.copy()
    frame.index = frame.index.map(str)
    return frame[~frame.index.duplicated(keep="first")]


def _top_rows(
    flagged: pd.DataFrame, values: pd.DataFrame, row_id_column: str, top_n: int
) -> tuple[list[dict], int]:
    """The ``top_n`` most suspicious quarantined rows, ready for the template."""
    row_ids = list(values.index)
    if not row_ids:
        return [], 0
    hits = flagged.copy()
    hits["row_id"] = hits["row_id"].astype(str)
    hits = hits[hits["row_id"].isin(set(row_ids)).to_numpy()]
    order = pd.DataFrame({"row_id": row_ids, "position": range(len(row_ids))})
    stats = hits.groupby("row_id").agg(n_checks=("check", "size"), min_p=("p_value", "min"))
    order = order.join(stats, on="row_id")
    order["n_checks"] = order["n_checks"].fillna(0).astype(int)
    order = order.sort_values(
        ["n_checks", "min_p", "position"], ascending=[False, True, True], na_position="last"
    ).head(top_n)

    shown = hits[hits["row_id"].isin(set(order["row_id"])).to_numpy()]
    by_row = {row_id: group for row_id, group in shown.groupby("row_id", sort=False)}
    rows = []
    for row_id, n_checks in zip(order["row_id"], order["n_checks"]):
        record = values.loc[row_id]
        checks = by_row.get(row_id)
        check_rows = []
        if checks is not None:
            # Hard-rule failures (no p-value) first, then detectors by p-value.
            checks = checks.assign(_rule=checks["p_value"].notna()).sort_values(
                ["_rule", "p_value", "check"], na_position="first", kind="mergesort"
            )
            for finding in checks.to_dict("records"):
                check_rows.append(
                    {
                        "check": str(finding["check"]),
                        "score": _format_number(finding["score"], ".4g"),
                        "p_value": _format_number(finding["p_value"], ".3g"),
                        "reason": str(finding["reason"]),
                    }
                )
        rows.append(
            {
                "row_id": row_id,
                "n_checks": int(n_checks),
                "values": [(str(column), _format_value(record[column])) for column in values.columns],
                "checks": check_rows,
            }
        )
    return rows, len(row_ids)
