"""Emit a new signed clean dataset from reviewed runs: kept rows plus released ones.

After review, the clean data of a run is out of date: some quarantined rows
were false alarms (released), some are poison (rejected). ``emit`` builds a new
signed folder with the same layout as a run's output:

- ``clean.parquet``: the chosen runs' clean rows plus their released rows
  (values from the store, cast to the clean file's column types), each id once,
  never a rejected or still pending row;
- ``quarantine.parquet``: the rows still pending or rejected, with their status
  and findings;
- ``provenance.json``: the runs and the signed outputs this one supersedes
  (with digests), every decision it includes, counts, tool version, times;
- ``report.html`` and ``signature.sig``.

It only builds on outputs whose signature verifies, and it reads each file's
bytes once and checks them against the verified manifest, so a file swapped
after verification is caught too. A released row must also match the row in
the run's signed ``quarantine.parquet``: the store is not signed, so a row
added or edited there cannot slip into a signed dataset.
"""
from __future__ import annotations

import decimal
import hashlib
import io
import json
import math
import platform
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from poisonguard.pipelines.core.version import __version__
from poisonguard.pipelines.core.errors import InputError, SigningError, VerificationError
from poisonguard.pipelines.outputs.publish import library_versions
from poisonguard.pipelines.outputs.report import TEMPLATES
from poisonguard.pipelines.outputs.signed_folder import (
    CLEAN_FILE, PROVENANCE_FILE, QUARANTINE_FILE, REPORT_FILE, SIGNATURE_FILE,
    read_verified_files, require_new_output, write_parquet, write_signed_folder,
)
from poisonguard.pipelines.core.written_columns import (
    ENTRY_COLUMN, FINDING_LIST_COLUMNS, ORIGINAL_COLUMN, RUN_COLUMN, STATUS_COLUMN,
)
from poisonguard.pipelines.core.jsonable import cut_cell, to_jsonable
from poisonguard.pipelines.core.state import default_public_key, state_dir
from poisonguard.pipelines.core.text import shorten
from poisonguard.pipelines.outputs.signing import ensure_state_key, public_key_for
from poisonguard.pipelines.store import EntryFilter, QuarantineStore, utc_now

WITHHELD = ("pending", "rejected")
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class EmitSummary:
    """What ``emit`` wrote, for the CLI."""

    out: Path
    run_ids: list[str]
    chosen_by: str
    dataset: str
    kept: int  # clean rows taken from the runs' clean files
    released: int  # released rows added
    clean: int
    pending: int
    rejected: int
    decisions: int
    key_path: Path
    key_created: bool


@dataclass(frozen=True)
class _Source:
    """One run's verified output, read into memory."""

    run: dict
    folder: Path
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    id_column: str
    digests: dict[str, str]  # sha256 of provenance.json and signature.sig


def choose_runs(store: QuarantineStore, run_ids: Sequence[str] = (), dataset: Optional[str] = None) -> tuple[list[dict], str]:
    """The runs to build on, and a sentence saying how they were chosen.

    ``run_ids`` (ids or unique prefixes) if given; else the latest succeeded run
    of ``dataset``; else the latest succeeded run.

    Raises
    ------
    InputError
        Unknown or ambiguous ids, a run without a signed output, runs of
        different datasets, or no succeeded run at all.
    """
    if run_ids:
        chosen = [store.get_run(i) for i in dict.fromkeys(store.resolve_run_id(text) for text in run_ids)]
        for run in chosen:
            if run["status"] != "succeeded" or not run.get("output_dir"):
                raise InputError(f"run {run['id']} is {run['status']}: it has no signed output to build on")
        datasets = sorted({run["dataset"] for run in chosen})
        if len(datasets) > 1:
            raise InputError(f"the runs are of different datasets ({', '.join(datasets)}); emit one dataset at a time")
        return chosen, "chosen with --run"
    latest = store.latest_published_run(dataset)
    of = f" of dataset {dataset!r}" if dataset is not None else ""
    if latest is None:
        raise InputError(f"no succeeded run{of} in the quarantine store {store.describe()}: run `poisonguard run` first")
    return [store.get_run(latest)], f"the latest succeeded run{of}"


def emit(
    store: QuarantineStore,
    out: Path,
    *,
    run_ids: Sequence[str] = (),
    dataset: Optional[str] = None,
    key_path: Optional[Path] = None,
    public_key: Optional[Path] = None,
) -> EmitSummary:
    """Write a signed clean dataset of the chosen runs' kept and released rows.

    Parameters
    ----------
    store : QuarantineStore
    out : Path
        New output folder; must not exist.
    run_ids : sequence of str
        Runs (ids or unique prefixes); see :func:`choose_runs` for the default.
    dataset : str, optional
        Without ``run_ids``: take the latest succeeded run of this dataset.
    key_path : Path, optional
        Private key PEM; the state folder's key (made on first use) otherwise.
    public_key : Path, optional
        Public key the runs' outputs must verify against; otherwise the
        public half of ``key_path`` when given (the usual case: one key signs
        the runs and the emitted dataset), else the state folder's
        ``keys/public.pem``.

    Raises
    ------
    InputError
        ``out`` exists, bad run choice, runs with different columns, or a
        released value that cannot take its column's type.
    VerificationError
        A run's output, or a released row, does not match what was signed.
    """
    started = utc_now()
    out = require_new_output(out)
    chosen, chosen_by = choose_runs(store, run_ids, dataset)
    with _verifying_key(public_key, key_path) as (public_key, verified_with):
        sources = [_read_verified(run, public_key) for run in chosen]
    _require_same_shape(sources)
    entries, history = _reviewed_entries(store, [source.run["id"] for source in sources])
    clean, kept, released = _clean_rows(sources, entries)
    held = _quarantine_rows(sources, entries)
    if key_path is None:
        key_path, key_created = ensure_state_key(state_dir())
    else:
        key_path, key_created = Path(key_path), False
    counts = {
        "kept_from_runs": kept,
        "released": released,
        "clean": int(len(clean)),
        "pending": int((held[STATUS_COLUMN] == "pending").sum()) if len(held) else 0,
        "rejected": int((held[STATUS_COLUMN] == "rejected").sum()) if len(held) else 0,
        "decisions": len(history),
    }
    dataset_name = chosen[0]["dataset"]

    def write_files(folder: Path) -> None:
        write_parquet(clean, folder / CLEAN_FILE)
        write_parquet(held, folder / QUARANTINE_FILE)
        provenance = {
            "kind": "poisonguard emit",
            "tool": {"name": "poisonguard", "version": __version__, "python": platform.python_version()},
            "libraries": library_versions(),
            "dataset": dataset_name,
            "started_at": started.isoformat(),
            "finished_at": utc_now().isoformat(),
            "command": sys.argv,
            "store": store.describe(),
            "chosen_by": chosen_by,
            "row_id_column": sources[0].id_column,
            "runs": [_run_record(source.run) for source in sources],
            "supersedes": [
                {"run_id": s.run["id"], "folder": str(s.folder), "verified_with": verified_with, **s.digests}
                for s in sources
            ],
            "decisions": history,
            "counts": counts,
        }
        report = TEMPLATES.get_template("emit.html").render(
            provenance=provenance, held=_held_for_report(held, sources[0].id_column)
        )
        (folder / REPORT_FILE).write_text(report, encoding="utf-8")
        provenance["outputs"] = {name: {"sha256": _sha256((folder / name).read_bytes())}
                                 for name in (CLEAN_FILE, QUARANTINE_FILE, REPORT_FILE)}
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    write_signed_folder(out, key_path, write_files)
    return EmitSummary(
        out=out, run_ids=[s.run["id"] for s in sources], chosen_by=chosen_by, dataset=dataset_name,
        kept=kept, released=released, clean=counts["clean"], pending=counts["pending"],
        rejected=counts["rejected"], decisions=len(history), key_path=key_path, key_created=key_created,
    )


# ----------------------------------------------------------------- reading


@contextmanager
def _verifying_key(public_key: Optional[Path], key_path: Optional[Path]) -> Iterator[tuple[Path, str]]:
    """The public key file to verify the runs with, and how to name it in provenance.

    A private key holds its public key: derived into a temporary file when
    only ``key_path`` is given, so ``emit --key`` alone works.
    """
    if public_key is not None:
        yield Path(public_key), str(public_key)
        return
    if key_path is not None:
        with tempfile.TemporaryDirectory(prefix="poisonguard-emit-") as folder:
            derived = Path(folder) / "public.pem"
            derived.write_bytes(public_key_for(Path(key_path)))
            yield derived, f"the public key of {key_path}"
        return
    public_key = default_public_key()
    if not public_key.exists():
        raise SigningError(
            f"no public key to verify the runs' outputs with: {public_key} does not exist; "
            "pass --public-key (the pair of the key that signed the runs), or --key"
        )
    yield public_key, str(public_key)


def _read_verified(run: dict, public_key: Path) -> _Source:
    folder = Path(run["output_dir"])
    try:
        contents = read_verified_files(folder, public_key, (CLEAN_FILE, QUARANTINE_FILE, PROVENANCE_FILE, SIGNATURE_FILE))
    except VerificationError as error:
        raise VerificationError(
            f"run {run['id'][:8]}'s output {folder} does not verify, so emit will not build on it: {error}"
        ) from None
    provenance = json.loads(contents[PROVENANCE_FILE])
    return _Source(
        run=run,
        folder=folder,
        clean=pd.read_parquet(io.BytesIO(contents[CLEAN_FILE])),
        quarantine=pd.read_parquet(io.BytesIO(contents[QUARANTINE_FILE])),
        id_column=provenance["inputs"]["row_id_column"],
        digests={
            "provenance_sha256": _sha256(contents[PROVENANCE_FILE]),
            "signature_sha256": _sha256(contents[SIGNATURE_FILE]),
        },
    )


def _require_same_shape(sources: list[_Source]) -> None:
    first = sources[0]
    for other in sources[1:]:
        if other.id_column != first.id_column or list(other.clean.columns) != list(first.clean.columns):
            raise InputError(
                f"runs {first.run['id'][:8]} and {other.run['id'][:8]} have different columns or id columns "
                f"({list(first.clean.columns)} vs {list(other.clean.columns)}); emit them separately"
            )


# ----------------------------------------------------------------- building


def _clean_rows(sources: list[_Source], entries: dict[str, list[dict]]) -> tuple[pd.DataFrame, int, int]:
    """Kept rows plus released rows, each id once; rows held anywhere are left out.

    Returns
    -------
    (clean, kept, released) : the frame and how many of its rows came from the
    runs' clean files and from released entries.
    """
    id_column = sources[0].id_column
    template = sources[0].clean
    # A row still pending or rejected in any chosen run stays out of the clean data.
    held_ids = {e["row_id"] for run_entries in entries.values() for e in run_entries if e["status"] in WITHHELD}
    kept = pd.concat([s.clean[~s.clean[id_column].astype(str).isin(held_ids)] for s in sources], ignore_index=True)
    kept = kept[~kept[id_column].astype(str).duplicated(keep="first")]
    seen = set(kept[id_column].astype(str))
    dtypes = template.dtypes.to_dict()
    released_rows = []
    for source in sources:
        signed = _signed_rows(source)
        for entry in entries[source.run["id"]]:
            if entry["status"] != "released" or entry["row_id"] in held_ids or entry["row_id"] in seen:
                continue
            values = _require_signed_match(entry, signed, source)
            released_rows.append(_cast_row(entry, values, dtypes, source))
            seen.add(entry["row_id"])
    frames = [kept]
    if released_rows:
        frames.append(pd.DataFrame(released_rows, columns=template.columns))
    clean = _restore_types(pd.concat(frames, ignore_index=True), template)
    return clean, int(len(kept)), len(released_rows)


def _quarantine_rows(sources: list[_Source], entries: dict[str, list[dict]]) -> pd.DataFrame:
    """The signed quarantined rows that are still pending or rejected, with their status."""
    frames = []
    for source in sources:
        by_row = {e["row_id"]: e for e in entries[source.run["id"]]}
        frame = source.quarantine
        ids = frame[source.id_column].astype(str)
        # A signed row the store lost is unreviewed: pending.
        status = ids.map(lambda i: by_row[i]["status"] if i in by_row else "pending")
        keep = status.isin(WITHHELD).to_numpy()
        frame = frame[keep].copy()
        frame[STATUS_COLUMN] = status[keep].to_numpy()
        frame[ENTRY_COLUMN] = [by_row[i]["id"] if i in by_row else None for i in ids[keep]]
        frame[RUN_COLUMN] = source.run["id"]
        frames.append(frame)
    held = pd.concat(frames, ignore_index=True)
    held = held[~held[sources[0].id_column].astype(str).duplicated(keep="first")].reset_index(drop=True)
    held[ENTRY_COLUMN] = held[ENTRY_COLUMN].astype("Int64")
    return held


def _signed_rows(source: _Source) -> dict[str, dict]:
    """The signed quarantined rows by row id, as they came in: broken cells with their text again."""
    extra = [c for c in (*FINDING_LIST_COLUMNS, ORIGINAL_COLUMN) if c in source.quarantine.columns]
    originals = source.quarantine[ORIGINAL_COLUMN] if ORIGINAL_COLUMN in source.quarantine.columns else None
    rows = {}
    for position, row in enumerate(source.quarantine.drop(columns=extra).to_dict(orient="records")):
        if originals is not None and isinstance(originals.iloc[position], str):
            row.update(json.loads(originals.iloc[position]))
        rows[str(row[source.id_column])] = row
    return rows


def _require_signed_match(entry: dict, signed: dict[str, dict], source: _Source) -> dict:
    """The row the run signed for a released entry; the store's copy must agree with it.

    The values released into the clean data are the signed ones: the store
    is not signed, and it keeps long cells cut (``core.jsonable.capped_cells``). A
    cut cell is compared by what the store kept of it.
    """
    row = signed.get(entry["row_id"])
    where = f"{source.folder / QUARANTINE_FILE}"
    if row is None:
        raise VerificationError(
            f"entry {entry['id']}: row {entry['row_id']!r} is not among the quarantined rows signed in {where}; "
            "the quarantine store may have been altered"
        )
    for column, signed_value in row.items():
        stored, expected = _comparable(entry["row"].get(column)), _comparable(signed_value)
        cut = cut_cell(stored)
        if cut is not None and expected is not None and len(expected) == cut[1] and expected.startswith(cut[0]):
            continue
        if stored != expected:
            raise VerificationError(
                f"entry {entry['id']}: the store's {shorten(column)} = {shorten(str(stored), 60)!r} for row "
                f"{entry['row_id']!r} differs from the signed {shorten(str(expected), 60)!r} in {where}; "
                "the quarantine store may have been altered"
            )
    return row


def _comparable(value) -> Optional[str]:
    """A value as text for comparing the store's copy with the signed one.

    The store keeps cells as they came in (``"46.70"``), the signed file as
    numbers where the column is numeric (``46.7``): numbers compare by value.
    """
    value = to_jsonable(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return repr(number) if math.isfinite(number) else value
    return str(value)


def _cast_row(entry: dict, signed: dict, dtypes: dict, source: _Source) -> dict:
    """A released row's signed values as the clean data's column types (``dtypes``: column -> dtype)."""
    values = {}
    for column, dtype in dtypes.items():
        value = signed.get(column)
        # Decimals and bytes stay themselves: as JSON text they made the
        # column mixed, and the whole clean file's column was written as text.
        value = value if isinstance(value, (decimal.Decimal, bytes)) else to_jsonable(value)
        try:
            values[column] = _cast(value, dtype)
        except (TypeError, ValueError, OverflowError):
            raise InputError(
                f"entry {entry['id']} (row {entry['row_id']!r} of run {source.run['id'][:8]}) is released, but its "
                f"{column} = {value!r} cannot be stored in {column} ({dtype}) of the clean data; "
                f"reject it instead: poisonguard review reject {entry['id']} --force --note '...'"
            ) from None
    return values


def _cast(value, dtype):
    """``value`` (from JSON) as a value of ``dtype``; None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
        return None
    kind = getattr(dtype, "kind", "O")
    if kind in "iuf":
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, float):
            # Parsed already; pandas' parser below cost 1 ms a cell (45 s for 29,000 released rows of 22 columns).
            return value
        if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
            return int(value.strip())  # exact: large ids must not go through a float
        # The same parser the run used to read numbers.
        return float(pd.to_numeric(pd.Series([value], dtype=object), errors="raise").astype(float).iloc[0])
    if kind == "b":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "1"}:
            return True
        if text in {"false", "0"}:
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if kind == "M":
        stamp = pd.Timestamp(value)
        zone = getattr(dtype, "tz", None)
        if zone is not None:
            return stamp.tz_localize(zone) if stamp.tzinfo is None else stamp.tz_convert(zone)
        return stamp.tz_convert(None) if stamp.tzinfo is not None else stamp
    if kind == "m":
        return pd.Timedelta(value)
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return str(value)
    return value


def _restore_types(clean: pd.DataFrame, template: pd.DataFrame) -> pd.DataFrame:
    """Give each column the clean file's type again after concatenation.

    Numbers follow the run's rule: integers when every value is whole and
    none is missing, float64 otherwise.
    """
    clean = clean.copy()
    for column in template.columns:
        dtype = template[column].dtype
        kind = getattr(dtype, "kind", "O")
        if kind in "iu" and all(_is_whole(value) for value in clean[column]):
            clean[column] = clean[column].map(int).astype(dtype)
        elif kind in "iuf":
            clean[column] = pd.to_numeric(clean[column], errors="coerce").astype(float)
        elif kind == "b" and clean[column].isna().any():
            clean[column] = clean[column].astype("boolean")
        else:
            try:
                clean[column] = clean[column].astype(dtype)
            except (TypeError, ValueError):
                pass  # mixed values: keep them as they are rather than lose any
    return clean


def _is_whole(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def _reviewed_entries(store: QuarantineStore, run_ids: list[str], attempts: int = 3) -> tuple[dict, list[dict]]:
    """The runs' entries by run id and their decisions, read so that they agree.

    Reviewers may decide while emit reads; entries and decisions are read
    separately, so read again until every entry's status is the one its last
    decision set (pending without any).
    """
    for _ in range(attempts):
        entries = {run_id: store.list_entries(EntryFilter(run_id=run_id)) for run_id in run_ids}
        history = store.decisions_of_runs(run_ids)
        last = {decision["entry_id"]: decision["status"] for decision in history}
        if all(e["status"] == last.get(e["id"], "pending") for run_entries in entries.values() for e in run_entries):
            return entries, history
    raise InputError(f"the quarantine store {store.describe()} kept changing while emit read it; try again")


def _run_record(run: dict) -> dict:
    keys = ("id", "dataset", "started_at", "finished_at", "output_dir", "reference_digest", "tool_version")
    return {key: to_jsonable(run.get(key)) for key in keys}


def _held_for_report(held: pd.DataFrame, id_column: str) -> list[dict]:
    rows = []
    for record in held.head(200).to_dict(orient="records"):
        reasons = record.get("poisonguard_reasons")
        rows.append({
            "entry": to_jsonable(record.get(ENTRY_COLUMN)),
            "row_id": str(record[id_column]),
            "status": record[STATUS_COLUMN],
            "reason": str(list(reasons)[0]) if reasons is not None and len(reasons) else "",
        })
    return rows


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
