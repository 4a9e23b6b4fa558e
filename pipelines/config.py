"""The run configuration: a pydantic model loaded from a TOML file.

Every option has a default that works on ``data_samples/``. Relative paths in a
config file are resolved against the folder of that file, so a config travels
with its data.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.errors import ConfigError

DEFAULT_DETECTORS = ["outlier.ecod", "label.trusted_model", "label.confident_learning"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    """What the columns of a dataset mean."""

    name: str = Field("dataset", description="Dataset name; names the expectation suite.")
    label: Optional[str] = Field(None, description="Label column.")
    id: Optional[str] = Field(None, description="Id column; a content hash when absent.")
    reference: Optional[Path] = Field(None, description="Trusted reference file.")
    suite: Optional[Path] = Field(None, description="Expectation suite JSON to apply.")
    numeric: Optional[list[str]] = Field(None, description="Numeric feature columns.")
    categorical: Optional[list[str]] = Field(None, description="Categorical feature columns.")
    ignore: list[str] = Field(default_factory=list, description="Columns kept but not checked.")

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, value: str) -> str:
        if not value or any(ch in value for ch in "/\\\0") or value in {".", ".."}:
            raise ValueError("must be a plain name usable as a file name")
        return value


class DetectionConfig(_Strict):
    """Which detectors run and at what false-positive rate."""

    alpha: float = Field(0.01, gt=0.0, lt=0.5, description="Per-detector false-positive rate.")
    detectors: list[str] = Field(default_factory=lambda: list(DEFAULT_DETECTORS))
    params: dict[str, dict] = Field(default_factory=dict, description="Per-detector parameters.")
    random_state: int = 0


class StoreConfig(_Strict):
    url: Optional[str] = Field(None, description="SQLAlchemy URL; SQLite in the state folder when absent.")


class SigningConfig(_Strict):
    key: Optional[Path] = Field(None, description="Private key PEM; the state folder's key when absent.")


class RunConfig(_Strict):
    """Everything a run needs besides its batch files and output folder."""

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)

    def resolved_against(self, folder: Path) -> "RunConfig":
        """Return a copy whose relative paths are taken from ``folder``."""
        def absolute(path: Optional[Path]) -> Optional[Path]:
            if path is None or path.is_absolute():
                return path
            return (folder / path).resolve()

        dataset = self.dataset.model_copy(
            update={"reference": absolute(self.dataset.reference), "suite": absolute(self.dataset.suite)}
        )
        signing = self.signing.model_copy(update={"key": absolute(self.signing.key)})
        return self.model_copy(update={"dataset": dataset, "signing": signing})


def load_config(path: Optional[os.PathLike | str]) -> RunConfig:
    """Load a ``RunConfig`` from a TOML file, or the defaults when ``path`` is None.

    Raises
    ------
    ConfigError
        The file is missing, is not TOML, or does not fit the model; the
        message names the file and the offending key.
    """
    if path is None:
        return RunConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    return parse_config(text, source=str(path)).resolved_against(path.resolve().parent)


def parse_config(text: str, *, source: str = "<config>") -> RunConfig:
    """Parse TOML ``text`` into a ``RunConfig``; errors name ``source`` and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML ({error})") from None
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
