"""The trace's constrained parameters and deterministics, computed after sampling.

nutpie keeps what a C "expand" callback makes of each draw. Compiling that callback for each
model structure (the constrained parameters and every deterministic, in numba) took about
a fifth of the first fit of a model on a machine. magbayes's expand callback only copies the
draw (:mod:`magbayes.compile_cache`), and :class:`TracedValues` computes the rest afterwards,
from every draw at once (:mod:`magbayes.over_draws`: NumPy, nothing compiled). The trace
holds the same variables, with the same names, dimensions and order, as nutpie's own
compiled model gives.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from magbayes.over_draws import OverDraws

#: The trace's groups of draws that hold parameters (nutpie's names).
DRAW_GROUPS = ("posterior", "warmup_posterior")


class TracedValues:
    """What the trace keeps of a model besides the sampled parameters, and how to compute it.

    Parameters
    ----------
    model : pymc.Model
        The model.
    remaining : sequence of pytensor variables
        The traced variables that are not sampled as they are (constrained parameters of
        transformed ones, deterministics), in the trace's order.
    inputs : sequence of shared variables
        The compiled model's data inputs; their values are given at each call, so a compiled
        model swapped onto other data (``with_data``) gets this data's values.
    dims : dict
        Dimension names of each traced variable (nutpie's ``dims``).
    coords : dict
        Coordinates of those dimensions.
    """

    def __init__(
        self,
        model: Any,
        remaining: Sequence[Any],
        inputs: Sequence[Any],
        dims: dict[str, Any],
        coords: dict[str, Any],
    ) -> None:
        from pytensor.graph import clone_replace

        self.values = [model.rvs_to_values[rv] for rv in model.free_RVs]
        #: value variables dropped from the trace: the unconstrained form of a transformed one
        self.transformed = [
            model.rvs_to_values[rv].name
            for rv in model.free_RVs
            if model.rvs_to_transforms.get(rv) is not None
        ]
        self.names = [var.name for var in remaining]
        self.dims = {name: list(dims.get(name, [])) for name in self.names}
        self.coords = coords
        self._symbolic = [var.type(name=var.name) for var in inputs]
        self._outputs = clone_replace(
            list(remaining), dict(zip(inputs, self._symbolic, strict=True))
        )
        self._function: OverDraws | None = None

    def function(self) -> OverDraws:
        """The vectorised graph (built at its first use, then kept)."""
        if self._function is None:
            self._function = OverDraws(self._outputs, self.values, self._symbolic)
        return self._function

    def complete(self, tree: xr.DataTree, inputs: Sequence[np.ndarray]) -> float:
        """Replace the draws of unconstrained parameters by what the trace keeps (in place).

        Parameters
        ----------
        tree : xarray.DataTree
            ``nutpie.sample``'s result from a model whose expand callback copies the draw:
            its ``posterior`` (and ``warmup_posterior``) hold the sampled value variables.
        inputs : sequence of numpy.ndarray
            The data inputs' values, in the order of ``inputs`` at construction.

        Returns
        -------
        float
            Seconds spent.
        """
        started = time.perf_counter()
        for group in DRAW_GROUPS:
            if group in tree.children:
                tree[group] = xr.DataTree(self._completed(tree[group].to_dataset(), inputs))
        return time.perf_counter() - started

    def _completed(self, draws: xr.Dataset, inputs: Sequence[np.ndarray]) -> xr.Dataset:
        sample_dims = ("chain", "draw")
        shape = tuple(draws.sizes[d] for d in sample_dims)
        n = int(np.prod(shape, dtype=np.int64))
        flat = [
            draws[value.name].values.reshape((n, *draws[value.name].shape[2:]))
            for value in self.values
        ]
        computed = self.function()(flat, list(inputs))
        out = draws.drop_vars([name for name in self.transformed if name in draws])
        for name, value in zip(self.names, computed, strict=True):
            value = np.asarray(value, dtype="float64").reshape((*shape, *value.shape[1:]))
            dims = [*sample_dims, *self.dims[name]]
            if len(dims) != value.ndim:  # no dimension names: nutpie's default names
                dims = [*sample_dims, *(f"{name}_dim_{k}" for k in range(value.ndim - 2))]
            coords = {
                d: self.coords[d] if d in self.coords else np.arange(size)
                for d, size in zip(dims[2:], value.shape[2:], strict=True)
            }
            out[name] = xr.DataArray(value, dims=dims, coords=coords)
        return out
