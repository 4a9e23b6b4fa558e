"""Package attributes loaded on first use (PEP 562), so importing a package stays cheap.

``poisonguard``, ``poisonguard.detectors`` and ``poisonguard.expectations``
re-export names from modules that import scikit-learn, PyOD or Great
Expectations; loading those only when a name is used keeps ``import
poisonguard.detectors.errors`` (and ``poisonguard --help``) fast. It lives
in the bottom package so every layer may use it.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Union

# public name -> module (absolute, or relative to the package), or (module, attribute)
Sources = dict[str, Union[str, tuple[str, str]]]


def lazy_attributes(package: str, sources: Sources) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public names live in ``sources``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    sources : dict
        ``name -> "module"`` (the attribute of the same name) or
        ``name -> ("module", "attribute")``; a module without a dot is
        relative to ``package``.

    Returns
    -------
    (__getattr__, __dir__) to assign at the package's top level.
    """

    def __getattr__(name: str):
        try:
            source = sources[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, attribute = source if isinstance(source, tuple) else (source, name)
        value = getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), attribute)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted(sources)

    return __getattr__, __dir__
