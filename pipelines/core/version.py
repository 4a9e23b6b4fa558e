"""The installed version of poisonguard, recorded in every output and run."""
from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("poisonguard")
except metadata.PackageNotFoundError:  # a checkout used without installing it
    __version__ = "0+unknown"
