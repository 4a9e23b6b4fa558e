"""Expectation suites: inferred from a trusted reference, kept as JSON, applied row by row.

``infer_suite`` writes a Great Expectations 1.x suite from a reference frame,
``save_suite``/``load_suite`` keep it as a reviewable file under
``expectations/suites/<dataset>.json``, and ``validate_frame`` turns failing
rows into findings (``poisonguard.detectors.base`` table) and table-level
failures into batch-failure sentences. Nothing here imports
``poisonguard.pipelines``: problems are raised as ``errors.ExpectationError``.

The names below load on first use, so importing ``errors`` alone stays light.
"""
from poisonguard.detectors._lazy import lazy_attributes

_PUBLIC = {
    "ExpectationError": "errors",
    "FrameError": "errors",
    "SuiteError": "errors",
    "column_kinds": "infer",
    "infer_suite": "infer",
    "load_suite": "infer",
    "save_suite": "infer",
    "suite_json": "infer",
    "ValidationOutcome": "validate",
    "check_name": "validate",
    "validate_frame": "validate",
}

__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
