"""The columns poisonguard adds to the rows it writes, named once for the writers and the reader.

``quarantine.parquet`` carries each row's findings and the text of its
broken cells beside the batch's own columns; ``poisonguard emit`` adds each
held row's status, entry and run. A batch holding a column of one of these
names would lose it there, so reading refuses it (``tables.load_table``).
"""
from __future__ import annotations

# Per-row lists of the findings that quarantined a row (quarantine.parquet).
FINDING_LIST_COLUMNS = ("poisonguard_checks", "poisonguard_scores", "poisonguard_p_values", "poisonguard_reasons")
# quarantine.parquet: the text of cells that did not parse as their column's type (JSON object, or null).
ORIGINAL_COLUMN = "poisonguard_original"
# An emitted quarantine.parquet: each held row's review status, store entry and run.
STATUS_COLUMN = "poisonguard_status"
ENTRY_COLUMN = "poisonguard_entry_id"
RUN_COLUMN = "poisonguard_run_id"

WRITTEN_COLUMNS = (*FINDING_LIST_COLUMNS, ORIGINAL_COLUMN, STATUS_COLUMN, ENTRY_COLUMN, RUN_COLUMN)
