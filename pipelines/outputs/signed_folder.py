"""Signed output folders: written, signed and revealed together or not at all.

Both ``poisonguard run`` and ``poisonguard emit`` publish a folder with the
same layout (clean and quarantine Parquet files, provenance, report, and a
``model_signing`` signature). This module holds that layout and the one way to
publish it: write everything into a hidden sibling folder, sign it there, let
the caller commit whatever must accompany the folder (the run commits its
quarantined rows to the store), and only then rename the folder to its final
name. An interrupted or failed publication leaves nothing that looks finished.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.pipelines.core.errors import InputError, VerificationError
from poisonguard.pipelines.core.written_columns import FINDING_LIST_COLUMNS
from poisonguard.pipelines.outputs.signing import sign_folder, verify_folder

CLEAN_FILE = "clean.parquet"
QUARANTINE_FILE = "quarantine.parquet"
PROVENANCE_FILE = "provenance.json"
REPORT_FILE = "report.html"
SIGNATURE_FILE = "signature.sig"
# Schema levels, the root included, that pyarrow's Parquet reader opens by default.
PARQUET_SCHEMA_DEPTH = 100
# Rows of a batch ``write_parquet`` cuts and writes at a time (one row group
# each): about 25 MB of twenty numeric columns.
WRITE_BLOCK_ROWS = 131_072


def require_new_output(out: os.PathLike | str) -> Path:
    """Return ``out`` as an absolute path, refusing one that exists.

    Raises
    ------
    InputError
        ``out`` exists already: a signed output is never overwritten.
    """
    out = Path(out).resolve()
    if out.exists():
        raise InputError(f"{out}: output folder already exists; choose a new one (a signed output is never overwritten)")
    return out


def write_signed_folder(
    out: Path,
    key_path: Path,
    write_files: Callable[[Path], None],
    *,
    before_reveal: Optional[Callable[[Path], None]] = None,
    staging_tag: Optional[str] = None,
    sign: Optional[Callable[..., Path]] = None,
) -> Path:
    """Write, sign and reveal the folder ``out`` as one step.

    Parameters
    ----------
    out : Path
        The final folder; must not exist. Its parent is created if missing.
    key_path : Path
        ECDSA P-256 private key PEM (outside ``out``).
    write_files : callable ``(folder) -> None``
        Writes the folder's files into ``folder`` (the staging folder).
    before_reveal : callable ``(folder) -> None``, optional
        Runs after signing and before the rename; if it raises, nothing is
        revealed. ``run`` commits its quarantined rows to the store here, so
        the store and the folder appear together.
    staging_tag : str, optional
        Suffix of the staging folder ``.NAME.partial-TAG``; random by default.
    sign : callable, optional
        ``sign(folder, key_path, signature_name=...)``; defaults to
        :func:`poisonguard.pipelines.outputs.signing.sign_folder` (tests substitute a failing one).

    Returns
    -------
    Path
        ``out``, now holding the signed files and ``signature.sig``.

    Raises
    ------
    InputError
        ``out`` appeared while the folder was being written (nothing of
        this output is kept).
    Anything ``write_files``, ``sign`` or ``before_reveal`` raises; the staging
    folder is removed first.
    """
    sign = sign_folder if sign is None else sign
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out, staging_tag or secrets.token_hex(4))
    staging.mkdir()
    try:
        write_files(staging)
        sign(staging, key_path, signature_name=SIGNATURE_FILE)
        if before_reveal is not None:
            before_reveal(staging)
        # rename() would silently replace an empty folder that appeared meanwhile.
        if out.exists():
            raise InputError(f"{out}: appeared while this output was being written; nothing of this run was kept")
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def staging_folder(out: Path, tag: str) -> Path:
    """The hidden sibling folder ``.NAME.partial-TAG`` where ``out`` is written before it is revealed."""
    out = Path(out)
    return out.parent / f".{out.name}.partial-{tag}"


@contextmanager
def claimed_output(out: Path, owner: str) -> Iterator[Path]:
    """Hold ``out`` for one run while it works, so two runs never race for one output folder.

    The claim is an exclusive lock (``flock``) on a file ``.NAME.claim``
    beside ``out``, holding ``owner`` ("host:pid") for messages. The
    operating system releases the lock when its process ends, however it
    ends, so a claim left by a killed run never blocks the next one.

    Raises
    ------
    InputError
        ``out`` exists already, or another run holds the claim.
    """
    out = Path(out)
    claim = out.parent / f".{out.name}.claim"
    while True:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(claim, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as error:
            raise InputError(f"{out.parent}: cannot write the output there ({error.strerror or error})") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise InputError(
                f"{out}: another run ({_read_claim(claim) or 'starting'}) is writing this output folder; "
                "wait for it or choose another --out"
            ) from None
        # The holder before us may have removed the file between our open and
        # our lock: then we hold a lock nobody else can see. Start again.
        try:
            same = os.stat(claim).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, owner.encode("utf-8"))
        if out.exists():
            raise InputError(f"{out}: output folder already exists; choose a new one (a signed output is never overwritten)")
        yield claim
    finally:
        claim.unlink(missing_ok=True)
        os.close(descriptor)


def _read_claim(claim: Path) -> str:
    try:
        return claim.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def write_parquet(
    frame: pd.DataFrame, path: Path, *, rows: Optional[np.ndarray] = None,
    after_block: Optional[Callable[[], None]] = None,
) -> None:
    """Write ``frame`` (no index), or only its ``rows``, to ``path``, keeping every value, so that it reads back.

    ``rows`` (a mask of shape (n_rows,)) are written ``WRITE_BLOCK_ROWS`` at
    a time, each block a row group: cutting the kept rows out of a batch
    first copied them twice (a frame, then its Arrow table), most of the
    batch each time. The whole frame's Arrow table shares its numbers'
    memory, and the schema is the whole frame's, so every block writes
    under one schema. ``after_block`` is called once the frame is read
    into Arrow and after each block is written (a spilled batch gives its
    pages back there, ``core.spill``).

    JSON Lines can mix numbers and text in one column, which Arrow refuses;
    such columns are written as text rather than losing rows. So is a column
    nested deeper than a Parquet reader accepts (``PARQUET_SCHEMA_DEPTH``):
    a list of lists 50 deep wrote, and the file then failed to open ("schema
    too deeply nested") wherever no shallower value of the column (which
    makes it mixed) was written with it.
    """
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        frame = frame.copy()
        for column in frame.columns:
            if frame[column].dtype == object and column not in FINDING_LIST_COLUMNS and not _arrow_reads(frame[column]):
                frame[column] = frame[column].map(_as_text)
        table = pa.Table.from_pandas(frame, preserve_index=False)
    too_deep = [position for position, field in enumerate(table.schema)
                if 1 + _parquet_depth(field.type) > PARQUET_SCHEMA_DEPTH]
    if too_deep:
        frame = frame.copy()
        for position in too_deep:
            frame[frame.columns[position]] = frame.iloc[:, position].map(_as_text)
        table = pa.Table.from_pandas(frame, preserve_index=False)
    after_block = after_block or (lambda: None)
    after_block()
    if rows is None:
        pq.write_table(table, path)
        after_block()
        return
    with pq.ParquetWriter(path, table.schema) as writer:
        for start in range(0, len(table), WRITE_BLOCK_ROWS):
            block = table.slice(start, WRITE_BLOCK_ROWS).filter(pa.array(rows[start:start + WRITE_BLOCK_ROWS]))
            if block.num_rows:
                writer.write_table(block)
            del block
            after_block()


def _as_text(value):
    return None if value is None or value is pd.NA else str(value)


def _parquet_depth(arrow_type: pa.DataType) -> int:
    """Levels of Parquet schema a column of ``arrow_type`` takes (a list two, a struct one, a value one)."""
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return 2 + _parquet_depth(arrow_type.value_type)
    if pa.types.is_map(arrow_type):
        return 2 + max(_parquet_depth(arrow_type.key_type), _parquet_depth(arrow_type.item_type))
    if pa.types.is_struct(arrow_type):
        return 1 + max((_parquet_depth(arrow_type.field(i).type) for i in range(arrow_type.num_fields)), default=0)
    return 1


def _arrow_reads(column: pd.Series) -> bool:
    """Arrow can store ``column`` as one type: only the mixed columns are written as text."""
    try:
        pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def read_verified_files(folder: Path, public_key: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Verify ``folder``'s signature and return the bytes of the files ``names``.

    The bytes returned are checked against the verified manifest, so a file
    replaced between verification and reading is caught too. ``names`` may
    include ``signature.sig`` (returned as it is).

    Raises
    ------
    VerificationError
        The folder does not verify, or a file is unreadable, unsigned or
        changed since verification; the message names the folder or file.
    SigningError
        The public key cannot be read.
    """
    folder = Path(folder)
    verified = verify_folder(folder, public_key, signature_name=SIGNATURE_FILE)
    contents = {}
    for name in names:
        try:
            data = (folder / name).read_bytes()
        except OSError as error:
            raise VerificationError(f"{folder / name}: cannot read it: {error.strerror or error}") from None
        # The signature is not in its own manifest; verify_folder checked it.
        if name != SIGNATURE_FILE and verified.files.get(name) != hashlib.sha256(data).hexdigest():
            raise VerificationError(f"{folder / name}: not the signed file (changed during reading, or never signed)")
        contents[name] = data
    return contents
