"""The registry: check names to detector classes, so configs choose detectors by name.

Detector modules register their classes with the ``@register`` decorator when
they are imported. The built-in ones (``BUILTIN_MODULES``) are imported on the
first call that needs the registry, not when this module is imported: they
import PyOD and cleanlab, which take seconds, and a command that only prints
``--help`` or an error should not pay for them. That is also why nothing this
module (or ``detectors.base``) imports may import a detector module.
"""
from __future__ import annotations

import importlib

from poisonguard.detectors.base import Detector, DetectorTags
from poisonguard.detectors.errors import DetectorError

BUILTIN_MODULES = (
    "poisonguard.detectors.outliers",
    "poisonguard.detectors.cellwise",
    "poisonguard.detectors.class_conditional",
    "poisonguard.detectors.label_flips",
    "poisonguard.detectors.label_knn",
    "poisonguard.detectors.duplicates",
    "poisonguard.detectors.backdoor",
)

_REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make a detector available by its ``name``.

    The class must set ``name`` and declare its ``tags``.
    """
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no 'name' to register under")
    if not isinstance(cls.tags, DetectorTags):
        raise TypeError(f"{cls.__name__} ({cls.name}) declares no DetectorTags in 'tags'")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    # Deferred, by module name, for speed: see the module docstring.
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def registered_detectors() -> dict[str, type[Detector]]:
    """Return a copy of the name -> class registry."""
    _load_builtins()
    return dict(_REGISTRY)


def _detector_class(name: str) -> type[Detector]:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise DetectorError(f"unknown detector {name!r}; known detectors: {known}") from None


def detector_parameters(name: str) -> dict[str, object]:
    """Parameters of the detector registered as ``name``, with their defaults.

    Parameters
    ----------
    name : str
        A registered check name, e.g. ``"outlier.ecod"``.

    Returns
    -------
    dict of parameter name -> default value (``get_params`` of a default
    instance).

    Raises
    ------
    DetectorError
        For an unknown name; the message lists the known detectors.
    """
    return _detector_class(name)().get_params(deep=False)


def get_detector(name: str, **params) -> Detector:
    """Instantiate the detector registered as ``name`` with ``params``.

    Raises
    ------
    DetectorError
        For an unknown name or parameter; the message lists the known ones.
    """
    cls = _detector_class(name)
    known = detector_parameters(name)
    unknown = [key for key in params if key not in known]
    if unknown:
        raise DetectorError(
            f"detector {name!r} has no parameter {unknown[0]!r}; its parameters: {', '.join(known)}"
        )
    return cls(**params)
