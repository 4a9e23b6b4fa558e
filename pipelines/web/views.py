"""What the review pages and API show: parsed filters, entry summaries, plots.

Pure functions over the entry dicts the quarantine store returns, so the
routes stay short and these are testable without a server. Nothing here
builds HTML: the templates do, with autoescaping, from plain data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional
from urllib.parse import urlencode

from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.jsonable import to_jsonable
from poisonguard.pipelines.review import STATUSES, entry_summary, reviewer_name
from poisonguard.pipelines.review.reviewers import MAX_NOTE
from poisonguard.pipelines.store import EntryFilter

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200
# Far beyond any real queue; keeps SQL offsets inside 64-bit integers.
MAX_PAGE = 1_000_000
MAX_ENTRY_ID = 2**63 - 1
MAX_FILTER_TEXT = 200


@dataclass(frozen=True)
class QueueQuery:
    """A parsed queue request: the filter plus paging."""

    queue: EntryFilter
    page: int
    per_page: int
    status_choice: str  # what the status menu shows: a status or "any"

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def params(self, **changes: Any) -> dict[str, str]:
        """Query parameters that reproduce this request (with ``changes``)."""
        values = {
            "status": self.status_choice,
            "run": self.queue.run_id or "",
            "check": self.queue.check or "",
            "max_score": "" if self.queue.below_score is None else repr(self.queue.below_score),
            "page": str(self.page),
            "per_page": str(self.per_page),
        }
        values.update({key: str(value) for key, value in changes.items()})
        return {key: value for key, value in values.items() if value != ""}

    def url(self, path: str = "/", **changes: Any) -> str:
        return f"{path}?{urlencode(self.params(**changes))}"


def parse_queue_query(params: Mapping[str, str], *, default_status: Optional[str]) -> QueueQuery:
    """Read ``status, run, check, max_score, page, per_page`` from a query string.

    Empty values mean "any". ``status=any`` asks for every status;
    without ``status`` the ``default_status`` applies.

    Raises
    ------
    InputError
        A value of the wrong kind or out of range (the app answers 422).
    """
    status = _text(params, "status")
    if status is None:
        status = default_status
    elif status == "any":
        status = None
    elif status not in STATUSES:
        raise InputError(f"status {status!r} is not one of any, {', '.join(STATUSES)}")
    max_score = _text(params, "max_score")
    below_score = None
    if max_score is not None:
        try:
            below_score = float(max_score)
        except ValueError:
            raise InputError(f"max_score must be a number, not {max_score!r}") from None
        if not math.isfinite(below_score):
            raise InputError(f"max_score must be a finite number, not {max_score!r}")
    page = _whole(params, "page", default=1, low=1, high=MAX_PAGE)
    per_page = _whole(params, "per_page", default=DEFAULT_PER_PAGE, low=1, high=MAX_PER_PAGE)
    queue = EntryFilter(status=status, run_id=_text(params, "run"), check=_text(params, "check"), below_score=below_score)
    return QueueQuery(queue=queue, page=page, per_page=per_page, status_choice=status or "any")


def _text(params: Mapping[str, str], name: str) -> Optional[str]:
    value = params.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > MAX_FILTER_TEXT:
        raise InputError(f"{name} is longer than {MAX_FILTER_TEXT} characters")
    return value.strip()


def _whole(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    value = _text(params, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"{name} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise InputError(f"{name} must be between {low} and {high}, not {number}")
    return number


def parse_entry_id(value: str) -> int:
    """An entry id from a URL or form field; ``InputError`` if it is not one."""
    text = str(value).strip()
    if not text.isdigit() or not text.isascii():
        raise InputError(f"an entry id is a whole number, not {value!r}")
    number = int(text)
    if not 1 <= number <= MAX_ENTRY_ID:
        raise InputError(f"entry id {number} is out of range")
    return number


def check_decision_text(note: Optional[str], reviewer: Optional[str]) -> tuple[str, str]:
    """A decision's note (length-bounded, may still be empty) and reviewer name (``"web"`` by default).

    The empty-note rule is ``review.decide``'s, so a page can still render a
    form with an empty note; this only bounds what anybody may send.
    """
    note = note or ""
    if len(note) > MAX_NOTE:
        raise InputError(f"the note is longer than {MAX_NOTE} characters")
    return note, reviewer_name(reviewer, fallback="web")


def summary(entry: dict) -> dict:
    """The API's and the queue's view of one entry (no evidence): the shared
    listing fields plus the row's values and findings.

    ``row`` and ``findings`` come from the store's strict JSON, so they are
    plain already.
    """
    return {**entry_summary(entry), "row": entry["row"], "findings": entry["findings"]}


def detail(entry: dict) -> dict:
    """The API's view of one entry with evidence and history."""
    data = summary(entry)
    data["evidence"] = to_jsonable(entry.get("evidence") or {})
    data["history"] = to_jsonable(entry.get("history") or [])
    return data


def number(value: Any, digits: int = 3) -> str:
    """A short, readable number for tables (``-`` for missing)."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** -digits):
        return f"{value:.{digits}g}"
    # No thousands separators: these are data (a year 2007 is not "2,007").
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def fixed(value: Any, digits: int = 3) -> str:
    """``value`` with exactly ``digits`` decimals (``–`` for missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


# ---------------------------------------------------------------- the plot

PLOT_WIDTH = 360
PLOT_HEIGHT = 150
PLOT_LEFT = 4
PLOT_RIGHT = 4
PLOT_TOP = 30
PLOT_BOTTOM = 24
# Room for a marker beyond the trusted range, as a share of the drawing width.
OFF_SCALE_GAP = 0.14


def histogram_plot(column: str, histogram: Mapping[str, Any], value: Any) -> Optional[dict]:
    """Geometry for a small SVG: trusted histogram bars and the row's value.

    Parameters
    ----------
    column : str
    histogram : {"edges": list of n + 1 floats, "counts": list of n ints}
    value : float or None
        The row's value of ``column``; None when missing or not a number.

    Returns
    -------
    dict with ``bars`` (x, y, width, height, count, low, high), ``marker``
    (x, label, side: "inside" / "above" / "below", or None), axis labels and
    the SVG size in pixels; None if the histogram is unusable.
    """
    edges = [float(e) for e in histogram.get("edges") or []]
    counts = [int(c) for c in histogram.get("counts") or []]
    if len(edges) != len(counts) + 1 or not counts or not all(math.isfinite(e) for e in edges):
        return None
    low, high = edges[0], edges[-1]
    span = (high - low) or 1.0
    inner = PLOT_WIDTH - PLOT_LEFT - PLOT_RIGHT
    value = _finite(value)
    side = None if value is None else ("below" if value < low else "above" if value > high else "inside")
    # Bars take the whole width unless the value is off the trusted range; then a
    # gap on that side holds the marker instead of squashing the bars into a sliver.
    gap = inner * OFF_SCALE_GAP
    bars_left = PLOT_LEFT + (gap if side == "below" else 0.0)
    bars_width = inner - (gap if side in ("below", "above") else 0.0)
    baseline = PLOT_HEIGHT - PLOT_BOTTOM
    tallest = max(counts) or 1
    usable = baseline - PLOT_TOP

    def x_of(point: float) -> float:
        return bars_left + (point - low) / span * bars_width

    bars = []
    for count, left, right in zip(counts, edges[:-1], edges[1:]):
        height = usable * count / tallest
        bars.append({
            "x": round(x_of(left) + 0.5, 2),
            "width": round(max(x_of(right) - x_of(left) - 1.0, 0.5), 2),
            "y": round(baseline - height, 2),
            "height": round(height, 2),
            "count": count,
            "low": number(left),
            "high": number(right),
        })
    marker = None
    if side == "inside":
        marker = {"x": round(x_of(value), 2), "side": side}
    elif side == "below":
        marker = {"x": round(PLOT_LEFT + gap * 0.45, 2), "side": side}
    elif side == "above":
        marker = {"x": round(PLOT_LEFT + inner - gap * 0.45, 2), "side": side}
    if marker is not None:
        marker["label"] = f"this row: {number(value)}"
        # Keep the label inside the drawing near either edge.
        marker["anchor"] = "end" if marker["x"] > PLOT_WIDTH * 0.7 else "start" if marker["x"] < PLOT_WIDTH * 0.3 else "middle"
        marker["break_x"] = round(bars_left - gap * 0.12, 2) if side == "below" else round(bars_left + bars_width + gap * 0.12, 2)
    return {
        "column": column,
        "width": PLOT_WIDTH,
        "height": PLOT_HEIGHT,
        "top": PLOT_TOP,
        "baseline": baseline,
        "bars": bars,
        "marker": marker,
        "low_label": number(low),
        "high_label": number(high),
        "low_x": round(bars_left, 2),
        "high_x": round(bars_left + bars_width, 2),
        "total": sum(counts),
    }


def _finite(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number_value = float(value)
    except (TypeError, ValueError):
        return None
    return number_value if math.isfinite(number_value) else None


def entry_plots(entry: dict) -> list[dict]:
    """One plot per histogram in the entry's evidence, in evidence order."""
    evidence = entry.get("evidence") or {}
    facts = {fact.get("column"): fact for fact in evidence.get("features") or [] if isinstance(fact, dict)}
    plots = []
    for column, histogram in (evidence.get("histograms") or {}).items():
        if not isinstance(histogram, Mapping):
            continue
        value = facts.get(column, {}).get("value")
        if value is None:
            value = (entry.get("row") or {}).get(column)
        plot = histogram_plot(str(column), histogram, value)
        if plot is not None:
            plot["fact"] = facts.get(column)
            plots.append(plot)
    return plots


def unusual_columns(entry: dict) -> dict[str, str]:
    """Columns the evidence calls unusual, with why, to highlight in the values."""
    facts = (entry.get("evidence") or {}).get("features") or []
    unusual = {}
    for fact in facts:
        note = str(fact.get("note", "")) if isinstance(fact, dict) else ""
        if note.startswith(("outside", "never seen", "missing")):
            unusual[str(fact.get("column"))] = note
    return unusual
