"""The models: one :class:`~magbayes.models.base.ModelDefinition` each.

A shipped model is a module (or package) under ``magbayes/models/`` whose ``DEFINITION``
is its model definition, listed in :data:`SHIPPED`; :func:`register_model` adds one more
(a model of your own, defined in code). Everything else (the pipeline, the report, the
analyses) finds a model by name through :func:`get_model`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magbayes.models.base import ModelDefinition

#: Shipped model name -> the module whose ``DEFINITION`` it is.
SHIPPED: dict[str, str] = {
    "progression": "magbayes.models.progression",
    "worsening": "magbayes.models.worsening",
    "response": "magbayes.models.response",
    "joint": "magbayes.models.joint.definition",
}

#: The model ``mb.fit`` and ``magbayes fit`` fit when none is named.
DEFAULT_MODEL = "progression"

_REGISTERED: dict[str, ModelDefinition] = {}


def register_model(definition: ModelDefinition) -> ModelDefinition:
    """Make a model defined in code known by its name (to specs, fits and saved results).

    Parameters
    ----------
    definition : ModelDefinition
        The model; its ``name`` must not be a shipped model's.

    Returns
    -------
    ModelDefinition
        The same definition (so it can be used as ``MINE = register_model(...)``).
    """
    from magbayes.errors import SpecError

    if definition.name in SHIPPED:
        raise SpecError(f"{definition.name!r} is a shipped model; give yours another name")
    _REGISTERED[definition.name] = definition
    return definition


def model_names() -> list[str]:
    """Names of the shipped and registered models."""
    return [*SHIPPED, *(n for n in _REGISTERED if n not in SHIPPED)]


def is_registered(name: str) -> bool:
    """True for a model registered in code (:func:`register_model`), not shipped."""
    return name in _REGISTERED


def get_model(name: str) -> ModelDefinition:
    """The definition of model ``name``.

    Raises
    ------
    magbayes.errors.SpecError
        When no model of that name exists.
    """
    from magbayes.errors import SpecError

    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in SHIPPED:
        raise SpecError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    return importlib.import_module(SHIPPED[name]).DEFINITION
