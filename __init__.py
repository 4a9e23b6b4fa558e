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

from poisonguard.detectors._lazy import lazy_attributes
from poisonguard.pipelines.core.version import __version__

# public name -> (module, attribute): loaded on first use (see detectors._lazy)
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
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
