"""The inbox of ``poisonguard watch``: list, fetch and move batch files, on any fsspec filesystem.

A local folder or any fsspec URL (``s3://bucket/inbox`` when ``s3fs`` is
installed, ``memory://`` in tests). Files are read through a local spool copy
(a hard link when the inbox is local), so the bytes processed are exactly the
bytes hashed and claimed; they are moved out of the inbox only while they
still hold those bytes, and never deleted or overwritten.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

import pandas as pd

from poisonguard.pipelines.core.tables import file_digest, file_format
from poisonguard.pipelines.core.errors import InputError


@dataclass(frozen=True)
class InboxFile:
    """A file listed in the inbox."""

    path: str  # as the filesystem names it
    name: str
    size: int
    modified: Optional[float]  # seconds since the epoch, when known


def filesystem(inbox: str):
    """``(fs, root)`` of an inbox folder or URL."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(inbox)
    except (ImportError, ValueError) as error:
        raise InputError(f"{inbox}: cannot open this inbox ({error}); install the fsspec filesystem package for it") from None


def list_inbox(inbox: str, *, settle_seconds: float = 0.0) -> list[InboxFile]:
    """Batch files directly in ``inbox``, oldest first (then by name).

    Hidden files (``.name``, ``_name``: uploads in progress, markers) and
    files of unknown type are left alone, as are files modified less than
    ``settle_seconds`` ago (possibly still being written). Sub-folders
    (``processed/``, ``rejected/``) are not entered.
    """
    fs, root = filesystem(inbox)
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        raise InputError(f"{inbox}: inbox not found") from None
    now = time.time()
    files = []
    for entry in entries:
        if entry.get("type") != "file":
            continue
        name = PurePosixPath(entry["name"]).name
        if name.startswith((".", "_")):
            continue
        try:
            file_format(Path(name))
        except InputError:
            continue
        modified = modified_time(entry)
        if settle_seconds and modified is not None and now - modified < settle_seconds:
            continue
        files.append(InboxFile(path=entry["name"], name=name, size=int(entry.get("size") or 0), modified=modified))
    return sorted(files, key=lambda f: (f.modified if f.modified is not None else 0.0, f.name))


def modified_time(entry: dict) -> Optional[float]:
    """Modification time of an fsspec listing entry (each filesystem names it differently)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created", "modified"):
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return pd.Timestamp(value).timestamp()
        except (ValueError, TypeError):
            continue
    return None


def fetch(inbox: str, entry: InboxFile, spool: Path) -> tuple[Path, str]:
    """Copy an inbox file into ``spool/DIGEST/NAME`` (a hard link when local) and hash it.

    Returns
    -------
    (path, digest) : the spool copy and the sha256 of its bytes.
    """
    fs, _ = filesystem(inbox)
    spool.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=spool))
    local = staging / entry.name
    try:
        if is_local(fs):
            try:
                os.link(entry.path, local)
            except OSError:
                shutil.copyfile(entry.path, local)
        else:
            fs.get_file(entry.path, str(local))
        digest = file_digest(local)
        final = spool / digest[:32]
        if final.exists():
            shutil.rmtree(final)
        os.rename(staging, final)
        return final / entry.name, digest
    except FileNotFoundError:
        raise InputError(f"{entry.path}: disappeared from the inbox before it was read") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def move_out(inbox: str, entry: InboxFile, digest: str, destination: str, say: Callable[[str], None]) -> Optional[str]:
    """Move a processed file to ``INBOX/<destination>/``.

    The file is moved only if it still holds the batch that was processed
    (a file replaced meanwhile is a new batch and stays). A name already
    taken in the destination is never overwritten: the new file gets the
    digest in its name.

    Returns
    -------
    str or None
        Where the file went, or None when it stayed (or was gone).
    """
    fs, root = filesystem(inbox)
    try:
        info = fs.info(entry.path)
    except FileNotFoundError:
        return None
    if int(info.get("size") or 0) != entry.size or modified_time(info) != entry.modified:
        if _digest_of(fs, entry.path) != digest:
            say(f"{entry.name} changed while it was processed; the new content stays in the inbox as a new batch")
            return None
    folder = f"{root.rstrip('/')}/{destination}"
    fs.makedirs(folder, exist_ok=True)
    target = _free_name(fs, folder, entry.name, digest)
    fs.mv(entry.path, target)
    return target


def _digest_of(fs, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _free_name(fs, folder: str, name: str, digest: str) -> str:
    candidate = f"{folder}/{name}"
    if not fs.exists(candidate):
        return candidate
    suffixes = "".join(PurePosixPath(name).suffixes)
    stem = name[: len(name) - len(suffixes)] if suffixes else name
    for attempt in range(1, 1000):
        tag = digest[:12] if attempt == 1 else f"{digest[:12]}-{attempt}"
        candidate = f"{folder}/{stem}.{tag}{suffixes}"
        if not fs.exists(candidate):
            return candidate
    raise InputError(f"{folder}: too many files named like {name}")
