"""Log-likelihood, posterior predictive and prior draws of a fitted model, over all draws at once.

PyMC computes each of these one posterior draw at a time, through a function compiled by
PyTensor's C back end: on the first fit of a model on a machine compiling the three took
25-30 s of the 47-patient progression fit. Here each graph is evaluated at every draw at
once (:mod:`magbayes.over_draws`: NumPy through PyTensor's Python linker, nothing compiled):

- :func:`log_likelihood`: the pointwise log-density of the observed variables, as
  ``pymc.compute_log_likelihood`` gives it (same graph, the model without its transforms);
- :func:`posterior_predictive`: each observed random variable's parameters at every draw,
  then the variable's own random-number function once per draw (the models' ``random``
  functions draw one parameter set at a time). Observed variables are drawn in the order
  of their dependencies, each one's parameters reading the draws of those before it, as
  ``pymc.sample_posterior_predictive`` does; a variable that is not a plain random
  variable, or whose parameters need another unobserved random draw, is drawn by PyMC;
- :func:`prior_draws`: the chosen variables' prior, by ancestral sampling over all draws
  at once (each free variable's parameters at every draw, then its random-number function).

The draws follow the same distributions as PyMC's; the random numbers differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from magbayes.over_draws import OverDraws, inline_graph_ops, over_posterior, vectorised_mode

SAMPLE_DIMS = ("chain", "draw")


def _dataset(
    values: dict[str, np.ndarray], model: Any, sample_dims: Sequence[str] = SAMPLE_DIMS
) -> xr.Dataset:
    """Arrays with their sample axes in front, labelled with the model's dims and coords."""
    from pymc.backends.arviz import coords_and_dims_for_inferencedata

    coords, dims = coords_and_dims_for_inferencedata(model)
    variables = {}
    for name, value in values.items():
        # as ArviZ labels them: the variable's first dims (a log-likelihood summed over the
        # last ones has fewer), then default names for any without one
        ndim = value.ndim - len(sample_dims)
        core = list(dims.get(name, []))[:ndim]
        core += [f"{name}_dim_{k}" for k in range(len(core), ndim)]
        names = [*sample_dims, *core]
        labels = {
            d: coords[d] if d in coords else np.arange(size)
            for d, size in zip(names, value.shape, strict=True)
        }
        variables[name] = xr.DataArray(value, dims=names, coords=labels)
    return xr.Dataset(variables)


def _untransformed_draws(model: Any, posterior: xr.Dataset) -> dict[Any, np.ndarray]:
    """Value variable of each free variable (no transform) -> its draws."""
    return {
        model.rvs_to_values[rv]: posterior[rv.name].values.astype(model.rvs_to_values[rv].dtype)
        for rv in model.free_RVs
    }


def log_likelihood(posterior: xr.Dataset, model: Any, var_names: Sequence[str]) -> xr.Dataset:
    """Pointwise log-likelihood of the observed variables ``var_names`` at every draw.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws of every free variable (constrained), dims ``(chain, draw, ...)``.
    model : pymc.Model
        The fitted model.
    var_names : sequence of str
        Observed variables.

    Returns
    -------
    xarray.Dataset
        The ``log_likelihood`` group (nats), one variable per observed variable.
    """
    return _log_densities(posterior, model, list(var_names))


def log_prior(posterior: xr.Dataset, model: Any) -> xr.Dataset:
    """Each free variable's prior log-density at every draw (untransformed), elementwise.

    As ``pymc.stats.compute_log_prior`` gives it (the ``log_prior`` group of prior
    sensitivity analyses).
    """
    return _log_densities(posterior, model, [rv.name for rv in model.free_RVs])


def _log_densities(posterior: xr.Dataset, model: Any, names: list[str]) -> xr.Dataset:
    """Elementwise log-density of the variables ``names`` at every draw (no transforms)."""
    from pymc.model.transform.conditioning import remove_value_transforms

    plain = remove_value_transforms(model)
    outputs = plain.logp(vars=[plain[name] for name in names], sum=False)
    shape = tuple(posterior.sizes[d] for d in SAMPLE_DIMS)
    values = over_posterior(outputs, _untransformed_draws(plain, posterior), shape)
    return _dataset(dict(zip(names, values, strict=True)), plain)


def add_log_likelihood(
    tree: xr.DataTree, model: Any, var_names: Sequence[str] | None = None
) -> xr.DataTree:
    """Add the ``log_likelihood`` group to ``tree``, in place, and return the tree.

    Of ``var_names`` (default: every observed variable), as ``pymc.compute_log_likelihood``
    with ``extend_inferencedata=True`` does.
    """
    names = list(var_names) if var_names is not None else [v.name for v in model.observed_RVs]
    posterior = tree["posterior"].to_dataset()
    tree["log_likelihood"] = xr.DataTree(log_likelihood(posterior, model, names))
    return tree


def _plain_rv(variable: Any) -> bool:
    from pytensor.tensor.random.op import RandomVariable

    return variable.owner is not None and isinstance(variable.owner.op, RandomVariable)


def _draw_order(targets: list[Any]) -> list[Any] | None:
    """The observed variables, each after those its parameters read; None if impossible."""
    from pytensor.graph import ancestors

    order: list[Any] = []
    pending = list(targets)
    while pending:
        ready = [
            rv for rv in pending if not set(ancestors(rv.owner.inputs[2:])) & (set(pending) - {rv})
        ]
        if not ready:
            return None
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def _size(size: Any) -> tuple[int, ...] | None:
    """A random variable's ``size`` input as ``rng_fn`` takes it (None when unset)."""
    import pytensor
    from pytensor.graph import ancestors
    from pytensor.tensor.type_other import NoneTypeT

    if isinstance(size.type, NoneTypeT):
        return None
    if any(
        var.owner is None
        and not isinstance(var, pytensor.compile.SharedVariable)
        and not isinstance(var, pytensor.graph.Constant)
        for var in ancestors([size])
    ):
        raise ValueError("size depends on a parameter")
    value = pytensor.function([], size, mode=vectorised_mode())()
    return tuple(int(k) for k in np.atleast_1d(value))


def posterior_predictive(
    posterior: xr.Dataset, model: Any, var_names: Sequence[str], seed: int
) -> xr.Dataset:
    """Draws of the observed variables ``var_names``, one per posterior draw.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws of every free variable, dims ``(chain, draw, ...)``.
    model : pymc.Model
        The fitted model.
    var_names : sequence of str
        Observed variables to draw.
    seed : int
        Seed of the random numbers.

    Returns
    -------
    xarray.Dataset
        The ``posterior_predictive`` group.
    """
    from pymc.logprob.utils import replace_rvs_by_values
    from pymc.model.transform.conditioning import remove_value_transforms
    from pymc.pytensorf import rvs_in_graph
    from pytensor.graph import ancestors

    plain = remove_value_transforms(model)
    targets = [plain[name] for name in var_names]
    order = _draw_order(targets) if all(_plain_rv(rv) for rv in targets) else None
    if order is None:
        return _pymc_posterior_predictive(posterior, model, var_names, seed)
    shape = tuple(posterior.sizes[d] for d in SAMPLE_DIMS)
    n = int(np.prod(shape, dtype=np.int64))
    free = {
        var: draws.reshape((n, *draws.shape[len(shape) :]))
        for var, draws in _untransformed_draws(plain, posterior).items()
    }
    placeholders = {rv: rv.type(name=rv.name) for rv in targets}
    rng = np.random.default_rng(seed)
    drawn: dict[Any, np.ndarray] = {}  # observed variable -> its draws, (n, ...)
    for rv in order:
        node = rv.owner
        # parameters in terms of the free variables and of the observed ones drawn before
        values_of = {**plain.rvs_to_values, **{t: placeholders[t] for t in drawn}}
        params = replace_rvs_by_values(
            list(node.op.dist_params(node)),
            rvs_to_values=values_of,
            rvs_to_transforms=plain.rvs_to_transforms,
        )
        try:
            size = _size(node.op.size_param(node))
        except ValueError:
            return _pymc_posterior_predictive(posterior, model, var_names, seed)
        if rvs_in_graph(params):  # another random draw inside: PyMC's general path
            return _pymc_posterior_predictive(posterior, model, var_names, seed)
        roots = set(ancestors(params))
        per_draw = {var: draws for var, draws in free.items() if var in roots}
        per_draw.update({placeholders[t]: d for t, d in drawn.items() if placeholders[t] in roots})
        # the parameters of one block of draws at a time (5,000 patients: a linear predictor
        # at every visit of every draw would be 1.5 GB)
        blocks = OverDraws(params, list(per_draw)).blocks(list(per_draw.values()), n_draws=n)
        out = None
        for start, stop, values in blocks:
            for i in range(stop - start):
                one = np.asarray(node.op.rng_fn(rng, *(v[i] for v in values), size), node.op.dtype)
                if out is None:
                    out = np.empty((n, *one.shape), one.dtype)
                out[start + i] = one
        drawn[rv] = out if out is not None else np.empty((0,), node.op.dtype)
    return _dataset(
        {rv.name: drawn[rv].reshape((*shape, *drawn[rv].shape[1:])) for rv in targets}, plain
    )


def _pymc_posterior_predictive(
    posterior: xr.Dataset, model: Any, var_names: Sequence[str], seed: int
) -> xr.Dataset:
    """PyMC's posterior predictive draws, one draw at a time (Python linker, no compiler)."""
    import pymc as pm

    drawn = pm.sample_posterior_predictive(
        xr.DataTree.from_dict({"posterior": posterior}),
        var_names=list(var_names),
        model=model,
        random_seed=seed,
        progressbar=False,
        compile_kwargs={"mode": vectorised_mode()},
    )
    return drawn["posterior_predictive"].to_dataset()


def prior_draws(model: Any, var_names: Sequence[str], draws: int, seed: int) -> xr.Dataset:
    """Draws of ``var_names`` (free variables or deterministics) from the prior.

    Ancestral sampling over all draws at once: each free variable above ``var_names``, in
    the model's order, has its parameters computed at every draw from the variables drawn
    before it (:class:`~magbayes.over_draws.OverDraws`), then is drawn: by its
    random-number function for every draw in one call when it is a scalar distribution (one
    parameter set per element), one draw at a time otherwise (a correlation matrix, or a
    distribution PyMC defines by a graph, such as a zero-sum normal).

    Parameters
    ----------
    model : pymc.Model
        The model.
    var_names : sequence of str
        Variables to draw.
    draws : int
        Number of draws.
    seed : int
        Seed of the random numbers.

    Returns
    -------
    xarray.Dataset
        The ``prior`` group: dims ``(chain, draw, ...)`` with one chain.
    """
    from pymc.logprob.utils import replace_rvs_by_values
    from pymc.model.transform.conditioning import remove_value_transforms
    from pymc.pytensorf import rvs_in_graph
    from pytensor.graph import ancestors

    plain = remove_value_transforms(model)
    outputs = [plain[name] for name in var_names]
    # free variables are created in the model after those their parameters read
    needed = set(ancestors(outputs))
    order = [rv for rv in plain.free_RVs if rv in needed]
    rng = np.random.default_rng(seed)
    drawn: dict[Any, np.ndarray] = {}  # value variable -> draws (draws, ...)
    for rv in order:
        node = rv.owner
        params = replace_rvs_by_values(
            list(node.op.dist_params(node)),
            rvs_to_values=plain.rvs_to_values,
            rvs_to_transforms=plain.rvs_to_transforms,
        )
        if rvs_in_graph(params):
            raise ValueError(f"the parameters of {rv.name} hold another random draw")
        roots = set(ancestors(params))
        per_draw = {value: d for value, d in drawn.items() if value in roots}
        values = OverDraws(params, list(per_draw))(list(per_draw.values()), n_draws=draws)
        if _plain_rv(rv):
            size = _size(node.op.size_param(node))
            draw = _draw(node.op, rng, values, size, draws)
        else:
            draw = _draw_one_at_a_time(rv, rng, values, draws)
        drawn[plain.rvs_to_values[rv]] = draw
    function = OverDraws(plain.replace_rvs_by_values(outputs), list(drawn))
    computed = function(list(drawn.values()), n_draws=draws)
    return _dataset({name: v[None] for name, v in zip(var_names, computed, strict=True)}, plain)


def _draw(
    op: Any, rng: np.random.Generator, params: list[np.ndarray], size: Any, n: int
) -> np.ndarray:
    """``n`` draws of a random variable, given its parameters at each draw (first axis)."""
    if op.ndim_supp == 0:
        core = size or np.broadcast_shapes(*(p.shape[1:] for p in params))
        batched = [
            p.reshape((n, *([1] * (len(core) - (p.ndim - 1))), *p.shape[1:])) for p in params
        ]
        return np.asarray(op.rng_fn(rng, *batched, (n, *core)), dtype=op.dtype)
    return np.stack(
        [np.asarray(op.rng_fn(rng, *(p[i] for p in params), size), op.dtype) for i in range(n)]
    )


def _draw_one_at_a_time(
    rv: Any, rng: np.random.Generator, params: list[np.ndarray], n: int
) -> np.ndarray:
    """``n`` draws of a variable PyMC defines by a graph, one parameter set at a time."""
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph.replace import clone_replace

    node = rv.owner
    inputs = list(node.op.dist_params(node))
    placeholders = [var.type() for var in inputs]
    [output] = inline_graph_ops([clone_replace(rv, dict(zip(inputs, placeholders, strict=True)))])
    seed = int(rng.integers(2**31))
    function = compile_pymc(placeholders, output, random_seed=seed, mode=vectorised_mode())
    return np.stack([np.asarray(function(*(p[i] for p in params))) for i in range(n)])
