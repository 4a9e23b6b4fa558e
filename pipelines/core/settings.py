"""Resolving a run's settings: config file, command-line overrides, defaults.

The result is one serialisable pydantic model, so the Prefect flow can take it
as its only parameter and the provenance can record it as it was.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from poisonguard.detectors.errors import DetectorError
from poisonguard.detectors.registry import detector_parameters
from poisonguard.pipelines.core.config import DatasetConfig, RunConfig, load_config
from poisonguard.pipelines.core.errors import ConfigError, InputError
from poisonguard.pipelines.core.state import default_store_url, state_dir
from poisonguard.pipelines.core.tables import expand_batches


class RunSettings(BaseModel):
    """Everything one run needs, resolved and absolute."""

    model_config = ConfigDict(frozen=True)

    batches: list[Path]
    out: Path
    config: RunConfig
    config_path: Optional[Path] = None
    key: Optional[Path] = None
    store_url: str
    state_dir: Path
    # Set by ``poisonguard watch``: the dataset version being published and its
    # parent (recorded in provenance.json; see poisonguard.pipelines.outputs.datasets).
    chain: Optional[dict] = None

    @property
    def label(self) -> str:
        # make_settings guarantees a label.
        return self.config.dataset.label  # type: ignore[return-value]


def make_settings(
    batches: Sequence[Path | str],
    *,
    out: Path | str,
    label: Optional[str] = None,
    id_column: Optional[str] = None,
    reference: Optional[Path | str] = None,
    config_path: Optional[Path | str] = None,
    key: Optional[Path | str] = None,
    separator: Optional[str] = None,
    decimal: Optional[str] = None,
) -> RunSettings:
    """Merge the config file with command-line options (options win).

    A folder among ``batches`` stands for the batch files directly in it.
    Without a dataset name in the config, the run is named after its first
    batch file.

    Raises
    ------
    ConfigError
        Unparseable config, a bad separator or decimal mark, or no label column given anywhere.
    InputError
        The output folder exists already, or a folder holds no batch file.
    """
    config = load_config(config_path)
    batches = expand_batches(batches)
    dataset_updates = {}
    if label is not None:
        dataset_updates["label"] = label
    if id_column is not None:
        dataset_updates["id"] = id_column
    if reference is not None:
        dataset_updates["reference"] = Path(reference).resolve()
    if separator is not None:
        dataset_updates["separator"] = separator
    if decimal is not None:
        dataset_updates["decimal"] = decimal
    if "name" not in config.dataset.model_fields_set and batches:
        dataset_updates["name"] = _name_from(Path(batches[0]))
    if dataset_updates:
        try:
            dataset = DatasetConfig.model_validate({**config.dataset.model_dump(), **dataset_updates})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
            raise ConfigError(f"dataset options: {problems}") from None
        config = config.model_copy(update={"dataset": dataset})
    if not config.dataset.label:
        where = f" or set dataset.label in {config_path}" if config_path else " (or set dataset.label in a --config file)"
        raise ConfigError(f"no label column given: pass --label COLUMN{where}")
    check_detection(config, source=str(config_path) if config_path else "the default config")
    if not config.detection.detectors and config.dataset.reference is None and config.dataset.suite is None:
        # Otherwise every row would be kept and signed as clean without a single check.
        raise ConfigError(
            f"{config_path or 'the config'}: detection.detectors is empty and there is no reference or suite, so "
            "nothing would check the batch's rows; list detectors, or give --reference or dataset.suite"
        )
    out = Path(out).resolve()
    if out.exists():
        raise InputError(f"{out}: output folder already exists; choose a new one (a signed output is never overwritten)")
    signing_key = Path(key).resolve() if key is not None else config.signing.key
    return RunSettings(
        batches=[Path(batch).resolve() for batch in batches],
        out=out,
        config=config,
        config_path=Path(config_path).resolve() if config_path else None,
        key=signing_key,
        store_url=config.store.url or default_store_url(),
        state_dir=state_dir(),
    )


def check_detection(config: RunConfig, *, source: str) -> None:
    """Refuse unknown detector names and parameters now, before any work starts.

    Raises
    ------
    ConfigError
        Names the file, the key and what is known instead.
    """
    detection = config.detection
    for name in detection.detectors:
        try:
            detector_parameters(name)
        except DetectorError as error:
            raise ConfigError(f"{source}: detection.detectors: {error}") from None
    for name, params in detection.params.items():
        try:
            known = detector_parameters(name)
        except DetectorError as error:
            raise ConfigError(f"{source}: detection.params.{name}: {error}") from None
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: detection.params.{name}: no parameter {', '.join(map(repr, unknown))}; "
                f"{name} takes {', '.join(sorted(known))}"
            )


def _name_from(batch: Path) -> str:
    """A dataset name from a batch file's name: ``penguins-2026.csv.gz`` -> ``penguins-2026``."""
    stem = batch.name
    for suffix in reversed(batch.suffixes):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip(".-") or "dataset"
