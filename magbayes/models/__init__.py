"""Model modules: one per model, plus shared building blocks (``blocks``)."""

from __future__ import annotations

import importlib
from types import ModuleType

#: Model name -> module path. Each module follows :mod:`magbayes.models.base`.
MODEL_MODULES: dict[str, str] = {
    "progression": "magbayes.models.progression",
    "worsening": "magbayes.models.worsening",
    "response": "magbayes.models.response",
}


def get_model_module(name: str) -> ModuleType:
    """Import the module that implements model ``name``.

    Raises
    ------
    magbayes.errors.SpecError
        When no model of that name exists.
    """
    from magbayes.errors import SpecError

    if name not in MODEL_MODULES:
        raise SpecError(f"unknown model {name!r}; known models: {', '.join(MODEL_MODULES)}")
    return importlib.import_module(MODEL_MODULES[name])
