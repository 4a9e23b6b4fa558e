"""The quarantine store: the only code of poisonguard that speaks SQL (SQLAlchemy)."""
from poisonguard.pipelines.store.engine import check_url, require_existing
from poisonguard.pipelines.store.entries import EntryFilter, entry_score
from poisonguard.pipelines.store.quarantine_store import QuarantineStore
from poisonguard.pipelines.store.schema import DECISION_STATUSES, ENTRY_STATUSES, utc_now

__all__ = [
    "DECISION_STATUSES",
    "ENTRY_STATUSES",
    "EntryFilter",
    "QuarantineStore",
    "check_url",
    "entry_score",
    "require_existing",
    "utc_now",
]
