"""Rank of a true value among posterior draws (Talts et al. 2018).

If the model is fitted correctly to data simulated from its own prior, the rank of the true
value among ``L`` posterior draws is uniform on ``0, 1, ..., L``. Posterior draws are
autocorrelated, which makes rank histograms look non-uniform (too many extreme ranks) even
for a correct sampler, so draws are *thinned* first: every ``thin``-th draw of each chain
is kept (Talts et al. thin to roughly the effective sample size). Ties (a parameter drawn
exactly equal to the truth) are broken at random.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from magbayes.sbc.prior_draws import ParameterElement


def thin_draws(values: np.ndarray, thin: int) -> np.ndarray:
    """Every ``thin``-th draw of each chain, chains concatenated.

    Parameters
    ----------
    values : numpy.ndarray
        Shape (chain, draw).
    thin : int
        Keep draws 0, thin, 2 * thin, ... of each chain (1 keeps all).

    Returns
    -------
    numpy.ndarray
        One-dimensional.
    """
    if thin < 1:
        raise ValueError(f"thin must be at least 1, not {thin}")
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError("values must have shape (chain, draw)")
    return values[:, ::thin].ravel()


def rank_of_truth(draws: np.ndarray, truth: float, rng: np.random.Generator | None = None) -> int:
    """Number of posterior draws below the true value.

    Parameters
    ----------
    draws : numpy.ndarray
        Posterior draws (any shape; flattened), ``L`` of them.
    truth : float
        The true value.
    rng : numpy.random.Generator, optional
        Breaks ties (draws equal to the truth) at random; without one, ties count half
        (rounded down).

    Returns
    -------
    int
        The rank, between 0 (truth below every draw) and ``L`` (above every draw).

    Examples
    --------
    >>> rank_of_truth(np.array([0.1, 0.5, 0.9]), 0.6)
    2
    """
    draws = np.asarray(draws, dtype=float).ravel()
    below = int(np.sum(draws < truth))
    ties = int(np.sum(draws == truth))
    if ties:
        below += int(rng.integers(0, ties + 1)) if rng is not None else ties // 2
    return below


def fit_ranks(
    posterior: xr.Dataset,
    truth: dict[str, float],
    elements: list[ParameterElement],
    *,
    thin: int = 1,
    rng: np.random.Generator | None = None,
) -> dict[str, tuple[int, int]]:
    """Rank of every true value among the thinned posterior draws of one fit.

    Parameters
    ----------
    posterior : xarray.Dataset
        Posterior draws with ``chain`` and ``draw`` dimensions first.
    truth : dict[str, float]
        Parameter label -> true value.
    elements : list of ParameterElement
        The scalars to rank.
    thin : int
        Thinning factor (see :func:`thin_draws`).
    rng : numpy.random.Generator, optional
        Tie-breaking.

    Returns
    -------
    dict[str, tuple[int, int]]
        Label -> (rank, number of draws ``L``).
    """
    out = {}
    for element in elements:
        da = posterior[element.variable].transpose("chain", "draw", ...)
        values = np.asarray(da.values)[(slice(None), slice(None), *element.index)]
        kept = thin_draws(values, thin)
        out[element.label] = (rank_of_truth(kept, truth[element.label], rng), int(kept.size))
    return out
