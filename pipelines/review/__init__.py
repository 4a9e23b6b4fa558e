"""People's decisions on quarantined rows: the rules every review front end shares."""
from poisonguard.pipelines.core.errors import ReviewConflict, UnknownEntry
from poisonguard.pipelines.review.decisions import DECISIONS, STATUSES, bulk_selection, decide, entry_summary
from poisonguard.pipelines.review.reviewers import checked_note, reviewer_name

__all__ = [
    "DECISIONS",
    "STATUSES",
    "ReviewConflict",
    "UnknownEntry",
    "bulk_selection",
    "checked_note",
    "decide",
    "entry_summary",
    "reviewer_name",
]
