"""Detection algorithms for poisoned tabular rows.

Nothing in this package imports Prefect or any of ``poisonguard.pipelines``:
every detector is usable alone with numpy and pandas. ``detectors.base``
holds the contract (the findings table, ``Detector``, ``DetectorTags``),
``detectors.calibration`` the p-values and ``detectors.registry`` the
detectors by name. Built-in detectors register themselves when
``get_detector``, ``registered_detectors`` or ``detector_parameters`` first
needs them, and the names below load on first use, so importing the package
(or only ``detectors.errors``) stays cheap.
"""
from poisonguard.detectors._lazy import lazy_attributes

_PUBLIC = {
    "FINDING_COLUMNS": "base",
    "Detector": "base",
    "DetectorTags": "base",
    "empty_findings": "base",
    "make_findings": "base",
    "DetectorError": "errors",
    "conformal_p_values": "calibration",
    "population_mask": "_sampling",
    "detector_parameters": "registry",
    "get_detector": "registry",
    "register": "registry",
    "registered_detectors": "registry",
}

__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
