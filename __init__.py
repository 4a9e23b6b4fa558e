"""poisonguard: catch poisoned rows in a tabular training batch before they reach training.

The library entry points, for training code and notebooks::

    import poisonguard

    summary = poisonguard.run(["batch.csv"], out="runs/first", label="species", reference="reference.csv")
    poisonguard.verify("runs/first", public_key="keys/public.pem")           # raises if anything changed
    frame = poisonguard.load_dataset(".poisonguard/datasets/penguins", public_key="keys/public.pem")

This file is the package root: the repository folder installs as the import
package ``poisonguard`` (see ``[tool.setuptools]`` in ``pyproject.toml``), with
``poisonguard.pipelines``, ``poisonguard.detectors`` and
``poisonguard.expectations`` below it. The names here are loaded on first
use, so ``import poisonguard.detectors`` stays as light as that package.
"""
from __future__ import annotations

import importlib

from poisonguard.pipelines.core.version import __version__

# public name -> (module, attribute)
_PUBLIC = {
    "run": ("poisonguard.pipelines.runner", "run"),
    "verify": ("poisonguard.pipelines.outputs.signing", "verify_folder"),
    "verify_chain": ("poisonguard.pipelines.outputs.datasets", "verify_chain"),
    "load_dataset": ("poisonguard.pipelines.outputs.datasets", "load_dataset"),
    "RunSummary": ("poisonguard.pipelines.outputs.publish", "RunSummary"),
    "PoisonguardError": ("poisonguard.pipelines.core.errors", "PoisonguardError"),
    "InputError": ("poisonguard.pipelines.core.errors", "InputError"),
    "ConfigError": ("poisonguard.pipelines.core.errors", "ConfigError"),
    "BatchRejected": ("poisonguard.pipelines.core.errors", "BatchRejected"),
    "VerificationError": ("poisonguard.pipelines.core.errors", "VerificationError"),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'poisonguard' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
