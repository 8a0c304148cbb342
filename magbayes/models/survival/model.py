"""A generic Bayesian proportional-hazards model of a counting-process table.

``h_i(t) = h0(t) * exp(x_i(t)' beta + log_frailty[cluster_i])``, fitted to exact, right-
and interval-censored event times with left truncation and time-varying covariates. Its
likelihood is the one the worsening model runs: the table's outcome written as visit
intervals (:func:`~magbayes.models.survival.data.visit_intervals_of`) and read by
:func:`~magbayes.models.survival.likelihood.visit_interval_log_likelihood`, an exact time
being an event dated exactly at the visit that closes its interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from magbayes.model_draws import add_log_likelihood
from magbayes.models.blocks import site_effect
from magbayes.models.survival.baselines import baseline_from_priors
from magbayes.models.survival.data import (
    OBSERVED,
    CountingProcessData,
    counting_process_arrays,
    visit_intervals_of,
)
from magbayes.models.survival.likelihood import (
    draw_visit_interval,
    exact_event_mask,
    interval_hazards,
    visit_interval_log_likelihood,
    visit_log_hazard,
)
from magbayes.sampler import sample_posterior


def _outcome_distribution(
    exact: np.ndarray | None, dated_at_visit: bool
) -> tuple[Callable[..., Any], Callable[..., np.ndarray], str]:
    """``logp``, ``random`` and ``signature`` of the observed ``survival`` (a CustomDist).

    The parameters are the interval hazards (subject, interval) and, when some events are
    dated at their visit (``dated_at_visit``), the log hazards at the visits.
    """

    def logp(value, hazard, *log_h):
        at_visit = log_h[0] if dated_at_visit else None
        return visit_interval_log_likelihood(value, hazard, at_visit, exact=exact)

    def random(hazard, *log_h, rng=None, size=None):
        return draw_visit_interval(np.asarray(hazard, float), rng)

    inputs = ["(s,k)"] * (2 if dated_at_visit else 1)
    return logp, random, ",".join(inputs) + "->(s)"


def build_counting_process_model(
    data: CountingProcessData,
    *,
    baseline: str = "piecewise",
    beta_sd: float = 10.0,
    baseline_prior_mean: float | None = None,
    baseline_prior_sd: float = 2.0,
    frailty: str | None = "partial",
    frailty_scale: float = 0.5,
    center: bool = True,
) -> pm.Model:
    """A proportional-hazards model of counting-process data.

    ``h_i(t) = h0(t) * exp(x_i(t)' beta + log_frailty[cluster_i])`` with
    ``beta ~ Normal(0, beta_sd)`` (dims ``covariate``), a baseline of
    :func:`~magbayes.models.survival.baselines.baseline_from_priors` (piecewise:
    ``Normal(baseline_prior_mean, baseline_prior_sd)`` per piece; Weibull: shape
    ``LogNormal(0, 0.5)``, log scale ``Normal(-baseline_prior_mean, baseline_prior_sd)``)
    and, when ``data`` has clusters and ``frailty`` is not None, a log-normal cluster
    frailty (``cluster_log_frailty``, dims ``cluster``, via
    :func:`magbayes.models.blocks.site_effect`).

    Parameters
    ----------
    data : CountingProcessData
        From :func:`~magbayes.models.survival.data.counting_process_arrays`.
    baseline : {"piecewise", "weibull"}
        Baseline hazard.
    beta_sd : float
        Prior sd of each log hazard ratio (per unit of the covariate).
    baseline_prior_mean, baseline_prior_sd : float
        Prior of the log baseline hazard (log events per unit time; default mean: log
        crude rate).
    frailty : {"partial", "fixed"} or None
        Cluster frailty pooling (None: no frailty).
    frailty_scale : float
        Prior scale of the frailty sd (partial) or of each offset (fixed).
    center : bool
        Subtract each covariate's mean over segments before fitting (the hazard ratios
        are unchanged; the baseline hazard is then that of a subject at the means).

    Returns
    -------
    pymc.Model
        Variables ``beta``, the baseline, optionally ``cluster_log_frailty``, and the
        observed ``survival`` (dims ``subject``): the visit interval of each subject's
        event (:func:`~magbayes.models.survival.data.visit_intervals_of`; 0:
        right-censored). Its log density is each subject's log-likelihood, so the
        ``log_likelihood`` group has one value per subject; its predictive draws are of
        the same index (for an exact time: whether the event happens by then), a check
        of the number of events, not a replicate of the event times.

    Notes
    -----
    With a fine piecewise grid (e.g.
    :func:`~magbayes.models.survival.baselines.quantile_grid` with a few events per piece)
    and weak priors (``baseline_prior_sd`` about 5) the hazard ratios approach the Cox
    partial-likelihood estimates.
    """
    intervals, value, _ = visit_intervals_of(data)
    x = intervals.segment_covariates
    means = x.mean(axis=0) if (center and x.shape[0]) else np.zeros(x.shape[1])
    coords: dict[str, list] = {
        "subject": [str(s) for s in data.subject_ids],
        "covariate": list(data.covariate_names),
        "hazard_piece": list(data.piece_labels),
    }
    use_frailty = frailty is not None and data.cluster_index is not None
    if use_frailty:
        coords["cluster"] = [str(c) for c in data.cluster_names]
    centre = (
        float(np.log(data.crude_rate())) if baseline_prior_mean is None else baseline_prior_mean
    )
    dated_at_visit = bool((data.event_type == OBSERVED).any())
    with pm.Model(coords=coords) as model:
        base = baseline_from_priors(
            baseline,
            log_hazard_mean=centre,
            log_hazard_sd=baseline_prior_sd,
            shape_sd=0.5,
            log_scale_mean=-centre,
            log_scale_sd=baseline_prior_sd,
        )
        eta = pt.zeros(intervals.n_segments)
        if x.shape[1]:
            beta = pm.Normal("beta", 0.0, beta_sd, dims="covariate")
            eta = eta + pt.dot(x - means, beta)
        if use_frailty:
            frail = site_effect(
                "cluster_log_frailty",
                data.cluster_index,
                pooling=frailty,
                scale=frailty_scale,
                dim="cluster",
            )
            eta = eta + frail[intervals.segment_subject]
        arrays = [interval_hazards(intervals, eta, base)]
        if dated_at_visit:
            arrays.append(visit_log_hazard(intervals, eta, base))
        logp, random, signature = _outcome_distribution(exact_event_mask(data), dated_at_visit)
        pm.CustomDist(
            "survival",
            *arrays,
            logp=logp,
            random=random,
            signature=signature,
            observed=value,
            dims="subject",
            dtype="int64",
        )
    model.covariate_means = dict(zip(data.covariate_names, map(float, means), strict=True))
    return model


def fit_counting_process(
    frame: pd.DataFrame,
    *,
    covariates: Sequence[str],
    grid: Sequence[float] | None = None,
    baseline: str = "piecewise",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    target_accept: float = 0.9,
    model_kwargs: dict[str, Any] | None = None,
    **array_kwargs: Any,
) -> xr.DataTree:
    """Fit a Bayesian proportional-hazards model to a counting-process table.

    Parameters
    ----------
    frame : pandas.DataFrame
        See :func:`~magbayes.models.survival.data.counting_process_arrays`.
    covariates : sequence of str
        Columns entering the linear predictor.
    grid : sequence of float, optional
        Piecewise baseline boundaries (see
        :func:`~magbayes.models.survival.baselines.quantile_grid` for a fine grid).
    baseline : {"piecewise", "weibull"}
        Baseline hazard.
    draws, tune, chains, seed : int
        Sampler settings (nutpie).
    target_accept : float
        NUTS target acceptance rate (higher: smaller steps, fewer divergences).
    model_kwargs : dict, optional
        Passed to :func:`build_counting_process_model` (priors, frailty, centring).
    **array_kwargs
        Passed to :func:`~magbayes.models.survival.data.counting_process_arrays` (column
        names, ``cluster_col``, ...).

    Returns
    -------
    xarray.DataTree
        Posterior, sample_stats, observed_data and a per-subject ``log_likelihood``.
    """
    data = counting_process_arrays(frame, covariates=covariates, grid=grid, **array_kwargs)
    model = build_counting_process_model(data, baseline=baseline, **(model_kwargs or {}))
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed}
    tree = sample_posterior(model, settings | {"target_accept": target_accept})
    return add_log_likelihood(tree, model, ["survival"])
