"""Dataset versions: ``ROOT/NAME/vNNNN`` folders, their chain of trust, and the loader.

``poisonguard watch`` publishes each accepted batch as the next version of a
dataset. A version is a signed output folder like ``poisonguard run``'s
(``clean.parquet``, ``quarantine.parquet``, ``provenance.json``,
``report.html``, ``signature.sig``) plus ``trusted_sample.parquet``, and it
holds **only its own batch's rows**: the dataset's full contents are the
clean files of the version and all its ancestors. Nothing is copied from
version to version, so publishing costs the size of the batch, whatever the
size of the dataset.

The versions form a chain. ``provenance.json`` of ``vNNNN`` has a ``chain``
section naming its parent by the sha256 of the parent's ``signature.sig``
(which itself lists the sha256 of every parent file), and listing the clean
file of every ancestor by digest::

    "chain": {"dataset": "penguins", "version": "v0003", "number": 3,
              "parent": {"version": "v0002", "signature_sha256": "…", "provenance_sha256": "…"},
              "parts": [{"version": "v0001", "clean_sha256": "…", "rows": 120}, …, {"version": "v0003", …}],
              "rows_total": 345, "batch": {"digest": "…", "name": "…", "source": "…"},
              "trusted": {…}, "trusted_sample": {"rows": 345, "rows_behind": 345}}

So verifying the newest version's signature vouches for the whole chain, and
:func:`verify_chain` checks every link. :func:`load_dataset` is what a
training job calls: it verifies every version of the chain and returns the
concatenated clean rows.

``trusted_sample.parquet`` is a uniform sample (at most
``watch.reference_rows`` rows) of the clean rows of the whole chain, signed
with the version: it is the trusted data the next batch is checked against,
so a watcher on a fresh machine continues the chain from the signed head
alone.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from poisonguard.pipelines.core.errors import InputError, VerificationError
from poisonguard.pipelines.core.tables import file_digest
from poisonguard.pipelines.outputs.signed_folder import (
    CLEAN_FILE,
    PROVENANCE_FILE,
    SIGNATURE_FILE,
    read_verified_files,
    write_parquet,
)

TRUSTED_SAMPLE_FILE = "trusted_sample.parquet"
VERSION_PATTERN = re.compile(r"^v(\d{4,})$")


# --------------------------------------------------------------------------- layout


def version_name(number: int) -> str:
    """``3 -> "v0003"``."""
    return f"v{number:04d}"


def version_number(name: str) -> int:
    """``"v0003" -> 3``; ValueError for anything else."""
    match = VERSION_PATTERN.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a version name like v0001")
    return int(match.group(1))


def list_versions(dataset_dir: Path) -> list[Path]:
    """The published versions of a dataset, oldest first.

    Only complete folders count: a version appears by an atomic rename after
    signing, so a hidden ``.vNNNN.partial-…`` staging folder never does.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        return []
    found = [p for p in dataset_dir.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: version_number(p.name))


def current_version(dataset_dir: Path) -> Optional[Path]:
    """The newest published version, or None."""
    versions = list_versions(dataset_dir)
    return versions[-1] if versions else None


def staging_folders(dataset_dir: Path) -> list[Path]:
    """Leftover staging folders of interrupted publications."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        return []
    return sorted(p for p in dataset_dir.iterdir() if p.is_dir() and p.name.startswith(".v") and ".partial-" in p.name)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Version:
    """One verified version of a dataset.

    Attributes
    ----------
    folder : Path
    name : str
        ``"v0003"``.
    chain : dict
        The ``chain`` section of its provenance.
    provenance : dict
    signature_sha256, provenance_sha256, clean_sha256 : str
    contents : dict of str to bytes
        The verified bytes of the files that were asked for.
    """

    folder: Path
    name: str
    chain: dict
    provenance: dict
    signature_sha256: str
    provenance_sha256: str
    clean_sha256: str
    contents: dict

    def frame(self, name: str = CLEAN_FILE) -> pd.DataFrame:
        """A verified Parquet file of this version as a frame."""
        return pd.read_parquet(io.BytesIO(self.contents[name]))


def read_version(folder: Path, public_key: Path, files: tuple[str, ...] = ()) -> Version:
    """Verify one version folder and read its provenance (and ``files``).

    Raises
    ------
    VerificationError
        The folder does not verify, or it is not a dataset version.
    """
    folder = Path(folder)
    names = tuple(dict.fromkeys((PROVENANCE_FILE, SIGNATURE_FILE, *files)))
    contents = read_verified_files(folder, public_key, names)
    provenance = json.loads(contents[PROVENANCE_FILE])
    chain = provenance.get("chain")
    if not isinstance(chain, dict) or "version" not in chain:
        raise VerificationError(f"{folder}: not a dataset version (its provenance.json has no chain section)")
    if chain["version"] != folder.name:
        raise VerificationError(
            f"{folder}: its signed provenance says it is version {chain['version']}, not {folder.name}; "
            "the folder was renamed or copied into the wrong place"
        )
    clean = provenance.get("outputs", {}).get(CLEAN_FILE, {}).get("sha256", "")
    return Version(
        folder=folder,
        name=folder.name,
        chain=chain,
        provenance=provenance,
        signature_sha256=_sha256(contents[SIGNATURE_FILE]),
        provenance_sha256=_sha256(contents[PROVENANCE_FILE]),
        clean_sha256=clean,
        contents=contents,
    )


def resolve_version(path: Path) -> Path:
    """A version folder, or the newest version of a dataset folder.

    Raises
    ------
    InputError
        ``path`` is neither, or the dataset has no version yet.
    """
    path = Path(path)
    if VERSION_PATTERN.match(path.name) and path.is_dir():
        return path
    head = current_version(path)
    if head is None:
        raise InputError(f"{path}: neither a dataset version (vNNNN) nor a dataset folder with versions")
    return head


def verify_chain(path: Path, public_key: Path, files: tuple[str, ...] = ()) -> list[Version]:
    """Verify a version and every ancestor, and each link between them.

    Parameters
    ----------
    path : Path
        A version folder ``ROOT/NAME/vNNNN``, or ``ROOT/NAME`` for its newest.
    public_key : Path
        The public key every version must verify against.
    files : tuple of str
        Files to read (verified) from every version, e.g. ``("clean.parquet",)``.

    Returns
    -------
    list of Version, oldest first.

    Raises
    ------
    VerificationError
        A version does not verify, a parent is missing or is not the one its
        child signed (by signature digest), or the child's list of parts does
        not match the chain found; the message names the version.
    """
    head = read_version(resolve_version(path), public_key, files)
    chain = [head]
    child = head
    while child.chain.get("parent"):
        link = child.chain["parent"]
        folder = child.folder.parent / link["version"]
        if not folder.is_dir():
            raise VerificationError(f"{child.folder}: its parent {link['version']} is missing from {folder.parent}")
        parent = read_version(folder, public_key, files)
        if parent.signature_sha256 != link["signature_sha256"] or parent.provenance_sha256 != link.get(
            "provenance_sha256", parent.provenance_sha256
        ):
            raise VerificationError(
                f"{child.folder}: names its parent {link['version']} by signature sha256 "
                f"{link['signature_sha256'][:16]}…, but {folder} has {parent.signature_sha256[:16]}…: "
                "the parent was replaced (re-signed) after its child was published"
            )
        if parent.chain.get("dataset") != child.chain.get("dataset") or not (
            version_number(parent.name) < version_number(child.name)
        ):
            raise VerificationError(f"{child.folder}: its parent {folder} belongs to another dataset or comes later")
        chain.append(parent)
        child = parent
    chain.reverse()
    _check_parts(head, chain)
    return chain


def _check_parts(head: Version, chain: list[Version]) -> None:
    listed = [(part["version"], part["clean_sha256"]) for part in head.chain.get("parts", [])]
    found = [(version.name, version.clean_sha256) for version in chain]
    if listed != found:
        raise VerificationError(
            f"{head.folder}: its provenance lists the parts {[v for v, _ in listed]} but the chain holds "
            f"{[v for v, _ in found]} (or a clean file digest differs)"
        )


def load_dataset(path: Path, *, public_key: Path) -> pd.DataFrame:
    """The full clean contents of a dataset version, verified.

    What a training job calls before it trusts a byte::

        import poisonguard
        frame = poisonguard.load_dataset(".poisonguard/datasets/penguins", public_key="keys/public.pem")

    Parameters
    ----------
    path : Path
        ``ROOT/NAME`` (the newest version) or ``ROOT/NAME/vNNNN``.
    public_key : Path
        Public key PEM of the key that signed the versions.

    Returns
    -------
    pandas.DataFrame, shape (rows_total, n_columns)
        The clean rows of every version of the chain, oldest version first,
        each with its original columns and ids.

    Raises
    ------
    VerificationError
        Any version or link of the chain does not verify.
    InputError
        ``path`` is not a dataset or version folder.
    """
    chain = verify_chain(Path(path), Path(public_key), files=(CLEAN_FILE,))
    frames = [version.frame(CLEAN_FILE) for version in chain]
    non_empty = [frame for frame in frames if len(frame)] or frames[-1:]
    return pd.concat(non_empty, ignore_index=True)


# --------------------------------------------------------------------------- writing


def chain_record(
    *,
    dataset: str,
    number: int,
    parent: Optional[Version],
    batch: dict,
    trusted: dict,
    sample_rows: int,
) -> dict:
    """The ``chain`` section of a new version, before its clean rows are known.

    :func:`finish_chain` completes it while the version is written.

    Parameters
    ----------
    dataset : str
    number : int
        The new version's number (parent's + 1).
    parent : Version or None
        The verified current version (read with ``TRUSTED_SAMPLE_FILE``).
    batch : dict
        ``{"digest", "name", "source"}`` of the inbox file.
    trusted : dict
        What the batch was checked against (for the provenance and report).
    sample_rows : int
        Size of the trusted sample to keep (``watch.reference_rows``).
    """
    record = {
        "dataset": dataset,
        "version": version_name(number),
        "number": number,
        "parent": None,
        "parts": [],
        "rows_total_before": 0,
        "batch": batch,
        "trusted": trusted,
        "sample_rows": int(sample_rows),
        "parent_sample": None,
    }
    if parent is not None:
        record["parent"] = {
            "version": parent.name,
            "signature_sha256": parent.signature_sha256,
            "provenance_sha256": parent.provenance_sha256,
        }
        record["parts"] = list(parent.chain.get("parts", []))
        record["rows_total_before"] = int(parent.chain.get("rows_total", 0))
        sample = parent.chain.get("trusted_sample") or {}
        record["parent_sample"] = {
            "folder": str(parent.folder),
            "sha256": parent.provenance.get("outputs", {}).get(TRUSTED_SAMPLE_FILE, {}).get("sha256"),
            "rows_behind": int(sample.get("rows_behind", 0)),
        }
    return record


def finish_chain(record: dict, clean: pd.DataFrame, folder: Path, *, random_state: int = 0) -> dict:
    """Write ``trusted_sample.parquet`` into ``folder`` and complete the chain record.

    Called by :func:`poisonguard.pipelines.outputs.publish.publish` inside the staging folder,
    before signing.

    Returns
    -------
    dict
        The final ``chain`` section for ``provenance.json``.
    """
    previous, behind = None, 0
    if record.get("parent_sample"):
        info = record["parent_sample"]
        path = Path(info["folder"]) / TRUSTED_SAMPLE_FILE
        data = path.read_bytes()
        # The parent was verified when this batch started; make sure the
        # sample read now is still that signed file.
        if info["sha256"] and _sha256(data) != info["sha256"]:
            raise VerificationError(f"{path}: changed since the parent version was verified")
        previous, behind = pd.read_parquet(io.BytesIO(data)), info["rows_behind"]
    sample = updated_sample(previous, behind, clean, size=record["sample_rows"], seed=random_state + record["number"])
    write_parquet(sample, folder / TRUSTED_SAMPLE_FILE)
    final = {key: value for key, value in record.items() if key not in ("parent_sample", "rows_total_before", "sample_rows")}
    final["parts"] = [*record["parts"], {"version": record["version"], "clean_sha256": file_digest(folder / CLEAN_FILE),
                                         "rows": int(len(clean))}]
    final["rows"] = int(len(clean))
    final["rows_total"] = int(record["rows_total_before"] + len(clean))
    final["trusted_sample"] = {"file": TRUSTED_SAMPLE_FILE, "rows": int(len(sample)), "rows_behind": behind + len(clean)}
    return final


def updated_sample(
    previous: Optional[pd.DataFrame], behind: int, new_rows: pd.DataFrame, *, size: int, seed: int
) -> pd.DataFrame:
    """A uniform sample of at most ``size`` rows of all clean rows so far.

    Parameters
    ----------
    previous : DataFrame or None
        The parent's sample, standing for ``behind`` rows.
    behind : int
        How many clean rows ``previous`` was drawn from.
    new_rows : DataFrame
        This version's clean rows.
    size : int
    seed : int

    Returns
    -------
    DataFrame with at most ``size`` rows; each earlier row kept with its share
    of the whole (a sampled row stands for ``behind / len(previous)`` rows).
    """
    frames = [f for f in (previous, new_rows) if f is not None and len(f)]
    if not frames:
        return new_rows.iloc[0:0]
    pool = pd.concat(frames, ignore_index=True)
    if len(pool) <= size:
        return pool
    old = len(previous) if previous is not None else 0
    weights = np.concatenate([np.full(old, behind / max(old, 1)), np.ones(len(new_rows))])
    return pool.sample(n=size, weights=weights, random_state=seed).sort_index().reset_index(drop=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
