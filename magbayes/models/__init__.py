"""Model modules: one per model, plus shared building blocks (``blocks``)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

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


def population_parameters(model: Any, module: ModuleType | None = None) -> list[str]:
    """Population-level parameters of a built model: its module's ``SUMMARY_VARS`` present.

    Without a module (or ``SUMMARY_VARS``), every free random variable with at most one
    dimension.

    Parameters
    ----------
    model : pymc.Model
        A built model.
    module : module, optional
        Its model module (:func:`get_model_module`).
    """
    present = {v.name for v in model.free_RVs + model.deterministics}
    wanted = getattr(module, "SUMMARY_VARS", None)
    if wanted:
        return [v for v in wanted if v in present]
    return [v.name for v in model.free_RVs if v.ndim <= 1]
