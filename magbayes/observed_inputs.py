"""A model's observed data as inputs of its compiled log density, not constants in it.

A PyMC model keeps the data of an observed variable as a constant (``observed=array``) or
computes it from its ``pm.Data`` (a cast, an index). Compiled as they are, either form
gives a log density whose structure differs from the same model's with the data swapped
for inputs, as SBC's refits need them. :func:`observed_as_shared` swaps every observed
variable's data for a shared variable, so that a fit and an SBC run of the same model and
cohort design compile one log density (:func:`magbayes.compile_cache.compile_for_nutpie`
applies it to every model it compiles), and so that a model whose outcome is a constant
does not compile again for another outcome of the same design.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.tensor.shape import SpecifyShape
from pytensor.tensor.variable import TensorConstant

from magbayes.over_draws import vectorised_mode

#: Prefix of the shared variables that hold a model's observed data.
SHARED_PREFIX = "observed_"


def _shared_of(value: Any) -> SharedVariable | None:
    """The shared variable an observed value is, or None.

    :func:`pymc.observe` wraps the shared variable in ``SpecifyShape`` where the observed
    variable's shape is fixed; that wrapping is looked through.
    """
    if value.owner is not None and isinstance(value.owner.op, SpecifyShape):
        value = value.owner.inputs[0]
    return value if isinstance(value, SharedVariable) else None


def observed_as_shared(model: pm.Model) -> tuple[pm.Model, dict[str, str]]:
    """A copy of ``model`` whose observed data are shared variables.

    Parameters
    ----------
    model : pymc.Model
        A model with observed variables.

    Returns
    -------
    model : pymc.Model
        The same graph, built by :func:`pymc.observe`, each observed variable's data now a
        shared variable initialised to the original data; its free variables and
        deterministics in ``model``'s order. An observed variable whose data
        already is a shared variable keeps it, so applying this twice changes nothing more;
        ``model`` itself is returned when there is nothing to swap.
    shared_names : dict[str, str]
        Observed variable name -> shared variable name (``observed_<name>``, or the name
        of the shared variable it already had), the keys for
        ``CompiledPyMCModel.with_data``.
    """
    replacements: dict[str, SharedVariable] = {}
    names: dict[str, str] = {}
    for rv in model.observed_RVs:
        value = model.rvs_to_values[rv]
        shared = _shared_of(value)
        if shared is not None:
            names[rv.name] = shared.name
            continue
        if isinstance(value, TensorConstant):
            data = np.asarray(value.data)
        else:
            data = np.asarray(value.eval(mode=vectorised_mode()))
        shared = pytensor.shared(np.array(data), name=f"{SHARED_PREFIX}{rv.name}")
        replacements[rv.name] = shared
        names[rv.name] = shared.name
    if not replacements:
        return model, names
    copy = pm.observe(model, replacements)
    # pm.observe registers the variables in graph order; keep the model's order, which is
    # the order of the sampler's parameter vector and of the trace
    for listed, original in (
        (copy.free_RVs, model.free_RVs),
        (copy.deterministics, model.deterministics),
    ):
        position = {var.name: k for k, var in enumerate(original)}
        listed.sort(key=lambda var: position[var.name])
    return copy, names
