"""Detection algorithms for poisoned tabular rows.

Nothing in this package imports Prefect: every detector is usable alone with
numpy and pandas. Importing the package registers the built-in detectors.
"""
from detectors.base import (
    FINDING_COLUMNS,
    Detector,
    DetectorError,
    empty_findings,
    get_detector,
    make_findings,
    register,
    registered_detectors,
)

# Importing the modules registers their detectors.
from detectors import outliers as _outliers  # noqa: F401,E402
from detectors import label_flips as _label_flips  # noqa: F401,E402

__all__ = [
    "FINDING_COLUMNS",
    "Detector",
    "DetectorError",
    "empty_findings",
    "get_detector",
    "make_findings",
    "register",
    "registered_detectors",
]
