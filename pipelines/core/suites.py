"""Making suite files from a reference: the body of ``poisonguard expectations infer``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from poisonguard.expectations import infer_suite, save_suite
from poisonguard.pipelines.core.tables import (
    TIME,
    coerce_types,
    infer_kinds,
    load_table,
    read_file,
    refuse_comma_numbers,
    refuse_unparsable_reference,
)
from poisonguard.pipelines.core.config import load_config
from poisonguard.pipelines.core.errors import ConfigError

SUITES_FOLDER = Path("expectations") / "suites"


def infer_suite_file(
    reference: Path,
    *,
    label: str,
    name: str,
    id_column: Optional[str] = None,
    config_path: Optional[Path] = None,
    force: bool = False,
    folder: Path = SUITES_FOLDER,
) -> tuple[Path, int]:
    """Infer a suite from ``reference`` and write ``folder/NAME.json``.

    Returns
    -------
    (path, number of expectations)

    Raises
    ------
    ConfigError
        Bad name, or the suite exists and ``force`` is False.
    InputError
        The reference cannot be read or lacks the label column.
    """
    if not name or any(ch in name for ch in "/\\\0") or name in {".", ".."}:
        raise ConfigError(f"suite name {name!r} must be a plain name usable as a file name")
    path = folder / f"{name}.json"
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it (it may hold hand edits)")
    dataset = load_config(config_path).dataset
    table = load_table([reference], label=label, id_column=id_column, role="reference", **dataset.csv_format)
    excluded = {label, table.id_column, *dataset.ignore}
    columns = [c for c in table.raw.columns if c not in excluded]
    kinds = infer_kinds(table.raw, columns, numeric=dataset.numeric, categorical=dataset.categorical)
    refuse_comma_numbers(table, kinds, named=dataset.categorical or (), source=str(reference))
    typed = coerce_types(table.raw, {**kinds, label: "categorical"}, id_column=table.id_column, source=str(reference))
    refuse_unparsable_reference(typed, str(reference), named=dataset.numeric or ())
    frame = typed.typed if id_column else typed.typed.drop(columns=[table.id_column])
    suite = infer_suite(
        frame,
        as_read=read_file(Path(reference), native=True, **dataset.csv_format),
        name=name,
        label=label,
        id_column=id_column,
        numeric=[c for c in columns if kinds[c] == "numeric"],
        categorical=[c for c in columns if kinds[c] == "categorical"],
        ignore=list(dataset.ignore) + [c for c in columns if kinds[c] == TIME],
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_suite(suite, path)
    return path, len(suite.expectations)
