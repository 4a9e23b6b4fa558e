"""Resolving a run's settings: config file, command-line overrides, defaults.

The result is one serialisable pydantic model, so the Prefect flow can take it
as its only parameter and the provenance can record it as it was.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from pydantic import BaseModel, ConfigDict

from poisonguard.pipelines.core.config import RunConfig, load_config
from poisonguard.pipelines.core.errors import ConfigError, InputError
from poisonguard.pipelines.core.state import default_store_url, state_dir


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
) -> RunSettings:
    """Merge the config file with command-line options (options win).

    Raises
    ------
    ConfigError
        Unparseable config, or no label column given anywhere.
    InputError
        The output folder exists already.
    """
    config = load_config(config_path)
    dataset_updates = {}
    if label is not None:
        dataset_updates["label"] = label
    if id_column is not None:
        dataset_updates["id"] = id_column
    if reference is not None:
        dataset_updates["reference"] = Path(reference).resolve()
    if dataset_updates:
        config = config.model_copy(update={"dataset": config.dataset.model_copy(update=dataset_updates)})
    if not config.dataset.label:
        where = f" or set dataset.label in {config_path}" if config_path else " (or set dataset.label in a --config file)"
        raise ConfigError(f"no label column given: pass --label COLUMN{where}")
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
