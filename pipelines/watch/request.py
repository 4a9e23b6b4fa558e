"""What a watch pass is asked to do: the command-line options, resolved and checked up front."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict

from poisonguard.pipelines.core.config import DatasetConfig, load_config
from poisonguard.pipelines.core.errors import ConfigError, InputError
from poisonguard.pipelines.core.settings import check_detection



class WatchRequest(BaseModel):
    """What one watch pass needs: the CLI options, resolved (paths absolute)."""

    model_config = ConfigDict(frozen=True)

    inbox: str
    dataset: str
    config: Optional[Path] = None
    label: Optional[str] = None
    id_column: Optional[str] = None
    reference: Optional[Path] = None
    key: Optional[Path] = None
    out: Optional[Path] = None


def make_request(
    inbox: str, *, dataset: str, config=None, label=None, id_column=None, reference=None, key=None, out=None
) -> WatchRequest:
    """Resolve and check the options before anything starts.

    Raises
    ------
    ConfigError
        Unreadable config, a bad dataset name, or no label column anywhere.
    InputError
        A local inbox folder that does not exist.
    """
    loaded = load_config(config)
    check_detection(loaded, source=str(config) if config else "the default config")
    try:
        DatasetConfig(name=dataset)
    except Exception:
        raise ConfigError(f"--dataset {dataset!r}: must be a plain name usable as a folder name") from None
    if not (label or loaded.dataset.label):
        raise ConfigError("no label column given: pass --label COLUMN or set dataset.label in --config")
    configured = reference or loaded.dataset.reference
    if configured is not None and not Path(configured).is_file():
        raise InputError(f"{configured}: reference file not found")
    if not _is_url(inbox):
        folder = Path(inbox).expanduser().resolve()
        if not folder.is_dir():
            raise InputError(f"{inbox}: inbox folder not found")
        inbox = str(folder)
    absolute = lambda p: Path(p).expanduser().resolve() if p is not None else None  # noqa: E731
    return WatchRequest(
        inbox=inbox, dataset=dataset, config=absolute(config), label=label, id_column=id_column,
        reference=absolute(reference), key=absolute(key), out=absolute(out),
    )


def _is_url(text: str) -> bool:
    return "://" in text


