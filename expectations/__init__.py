"""Expectation suites: inferred from a trusted reference, kept as JSON, applied row by row.

``infer_suite`` writes a Great Expectations 1.x suite from a reference frame,
``save_suite``/``load_suite`` keep it as a reviewable file under
``expectations/suites/<dataset>.json``, and ``validate_frame`` turns failing
rows into findings (``detectors.base`` table) and table-level failures into
batch-failure sentences.
"""
from expectations.infer import column_kinds, infer_suite, load_suite, save_suite, suite_json
from expectations.validate import ValidationOutcome, check_name, validate_frame

__all__ = [
    "ValidationOutcome",
    "check_name",
    "column_kinds",
    "infer_suite",
    "load_suite",
    "save_suite",
    "suite_json",
    "validate_frame",
]
