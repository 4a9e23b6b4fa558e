"""Detection algorithms for poisoned tabular rows.

Nothing in this package imports Prefect: every detector is usable alone with
numpy and pandas. Built-in detectors register themselves when
``detectors.base.get_detector`` or ``registered_detectors`` first needs them,
so importing the package stays cheap.
"""
from detectors.base import (
    FINDING_COLUMNS,
    Detector,
    DetectorError,
    conformal_p_values,
    empty_findings,
    get_detector,
    make_findings,
    register,
    registered_detectors,
)

__all__ = [
    "FINDING_COLUMNS",
    "Detector",
    "DetectorError",
    "conformal_p_values",
    "empty_findings",
    "get_detector",
    "make_findings",
    "register",
    "registered_detectors",
]
