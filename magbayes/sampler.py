"""How magbayes runs NUTS: the cores it uses and nutpie's options from a spec.

PyMC's default for ``cores`` assumes half of the CPUs are hyper-threads, so on a 2-core
machine it runs the chains one after the other. magbayes counts the cores this process
may use instead, and runs as many chains at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from magbayes.errors import SpecError

if TYPE_CHECKING:
    import pymc as pm
    import xarray as xr


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parallel_chains(settings: Mapping[str, Any], chains: int) -> int:
    """Chains run at once: the spec's ``[sampler] cores`` (0: every available core).

    Parameters
    ----------
    settings : mapping
        The spec's ``[sampler]`` table.
    chains : int
        Number of chains.

    Returns
    -------
    int
        Between 1 and ``chains``.
    """
    cores = int(settings.get("cores", 0))
    if cores < 0:
        raise SpecError("[sampler] cores must be 0 (all available cores) or a positive number")
    return max(1, min(cores or available_cores(), chains))


def nutpie_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Options of the nutpie sampler from the spec's ``[sampler]`` table.

    ``extra_doublings``: trajectory doublings after the U-turn criterion has stopped a
    NUTS tree (nutpie's option). Longer trajectories cost more gradient evaluations per
    draw but move further along posterior ridges that a diagonal mass matrix does not
    straighten (treatment effects and the population slope), so the draws are less
    autocorrelated.

    ``mass_matrix``: how nutpie adapts its mass matrix during tuning (its ``adaptation``):
    ``"diag"``, one scale per parameter, or ``"low_rank"``, the diagonal plus the few
    directions in which the draws' gradients and positions are most correlated, which follows
    a hierarchical spread together with the effects it scales (a patient sd with the patient
    effects) where a diagonal one cannot; nutpie calls it experimental.
    """
    extra = int(settings.get("extra_doublings", 0))
    if extra < 0:
        raise SpecError("[sampler] extra_doublings must be 0 or more")
    mass_matrix = str(settings.get("mass_matrix", "diag"))
    if mass_matrix not in MASS_MATRICES:
        raise SpecError(
            f"[sampler] mass_matrix must be one of {', '.join(map(repr, MASS_MATRICES))}, "
            f"not {mass_matrix!r}"
        )
    return {"extra_doublings": extra, "adaptation": mass_matrix}


#: The ``[sampler] mass_matrix`` values (nutpie's ``adaptation``).
MASS_MATRICES = ("diag", "low_rank")


def sample_options(settings: Mapping[str, Any], sampler: str = "nutpie") -> dict[str, Any]:
    """Keyword arguments of :func:`pymc.sample` for a spec's ``[sampler]`` table.

    The fit pipeline and the benchmarks both sample through this, so a benchmark measures
    what a fit does.

    Parameters
    ----------
    settings : mapping
        The spec's ``[sampler]`` table (``draws``, ``tune``, ``chains``, ``cores``,
        ``seed``, ``target_accept``, ``extra_doublings``, ``mass_matrix``).
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        NUTS implementation (PyMC's ``nuts_sampler``).

    Returns
    -------
    dict
        ``draws``, ``tune``, ``chains``, ``cores``, ``random_seed``, ``nuts_sampler``,
        ``target_accept`` and, for nutpie, its options (``nuts``).
    """
    chains = int(settings.get("chains", 4))
    options: dict[str, Any] = {
        "draws": int(settings.get("draws", 1000)),
        "tune": int(settings.get("tune", 1000)),
        "chains": chains,
        "cores": parallel_chains(settings, chains),
        "random_seed": int(settings.get("seed", 2020)),
        "nuts_sampler": sampler,
        "target_accept": float(settings.get("target_accept", 0.9)),
    }
    if sampler == "nutpie":
        options["nuts"] = nutpie_options(settings)
    return options


def nutpie_seed(seed: int, chains: int) -> int:
    """The seed ``pm.sample(random_seed=seed, nuts_sampler="nutpie")`` hands to nutpie.

    PyMC spawns one generator per chain from ``seed`` and passes the first one's draw; doing
    the same keeps magbayes's draws identical to ``pm.sample``'s for a given seed.
    """
    return int(np.random.default_rng(seed).spawn(chains)[0].integers(2**30))


def sample_posterior(
    model: pm.Model,
    settings: Mapping[str, Any],
    sampler: str = "nutpie",
    *,
    progress: bool = False,
    start: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Draw from a model's posterior with the spec's ``[sampler]`` settings.

    With nutpie the model is compiled through :func:`magbayes.compile_cache.compile_for_nutpie`
    (a model fitted before, in any process, is loaded instead of compiled), then sampled by
    ``nutpie.sample`` exactly as ``pm.sample(nuts_sampler="nutpie")`` would; other samplers
    go through ``pm.sample``.

    Parameters
    ----------
    model : pymc.Model
        The model.
    settings : mapping
        The spec's ``[sampler]`` table.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        NUTS implementation.
    progress : bool
        Show sampling progress.
    start : mapping of str to array, optional
        Starting values of some free variables, by name, on their constrained scale (the
        model module's ``starting_values``); jittered like the others.

    Returns
    -------
    xarray.DataTree
        Groups posterior, sample_stats, observed_data, constant_data. The posterior's
        attributes hold ``sampling_time`` (seconds, without compilation) and, for nutpie,
        ``compiled_from`` (``cache``, ``compiled``, ``uncached`` or ``nutpie``: see
        ``compile_for_nutpie``) and ``deterministics_time`` (seconds computing the
        constrained parameters and deterministics from the draws, ``sample_compiled``).
    """
    import pymc as pm

    options = sample_options(settings, sampler)
    if sampler != "nutpie":
        return pm.sample(
            model=model,
            **options,
            initvals=dict(start) if start else None,
            progressbar=progress,
            compute_convergence_checks=False,
        )
    from pymc.backends.arviz import patch_nutpie_idata

    from magbayes.compile_cache import compile_for_nutpie, sample_compiled

    compiled, source = compile_for_nutpie(model, start=start)
    started = time.perf_counter()
    tree = sample_compiled(
        compiled,
        draws=options["draws"],
        tune=max(1, options["tune"]),  # nuts-rs needs at least one tuning step
        chains=options["chains"],
        cores=options["cores"],
        seed=nutpie_seed(options["random_seed"], options["chains"]),
        progress_bar=progress,
        target_accept=options["target_accept"],
        **options["nuts"],
    )
    deterministics = tree["posterior"].attrs["deterministics_time"]
    elapsed = time.perf_counter() - started - deterministics
    patch_nutpie_idata(tree, model, sampling_time=elapsed)
    tree["posterior"].attrs["compiled_from"] = source
    tree["posterior"].attrs["deterministics_time"] = deterministics
    return tree
