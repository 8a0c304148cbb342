"""A joint model of a longitudinal outcome and a time to event, and its fit.

Longitudinal part (measurement ``j`` of subject ``i`` at time ``t_j``)::

    m_i(t) = (beta_0 + z_i' gamma + b0_i) + (beta_1 + w_i' delta + b1_i) * t
    gaussian: y_j ~ Normal(m_i(t_j), sigma)
    ordinal:  P(y_j <= k) = logistic(c_k - m_i(t_j))   (c_1 = 0 < c_2 < ...)
    (b0_i, b1_i) ~ MvNormal(0, diag(s) R diag(s)),  R ~ LKJ(eta)

Event part: ``log h_i(t) = log h0(t) + x_i' beta + alpha * (m_i(t) - c)``
(:mod:`magbayes.models.joint.likelihood`). :func:`build_joint_model` makes the PyMC model,
:func:`fit_joint_model` samples it with nutpie through :mod:`magbayes.sampler`,
:func:`subject_log_likelihood` gives each subject's log-likelihood of both parts (for
PSIS-LOO) and :func:`convergence_summary` the convergence gate, from ArviZ.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from magbayes.model_draws import add_log_likelihood
from magbayes.models.joint.data import JointData, joint_arrays
from magbayes.models.joint.likelihood import (
    event_hazard_terms,
    event_log_likelihood,
    event_quadrature,
)
from magbayes.models.joint.quadrature import DEFAULT_NODES
from magbayes.models.scores import draw_visits, visit_logp
from magbayes.models.survival.baselines import (
    baseline_from_priors,
    make_grid,
    piece_labels,
    quantile_grid,
)
from magbayes.result import ESS_BULK_MIN, RHAT_MAX
from magbayes.sampler import sample_posterior

PARAMETRIZATIONS = ("centred", "non-centred")

#: Default number of pieces of a piecewise baseline (equal numbers of events per piece).
DEFAULT_PIECES = 6


def default_grid(data: JointData, n_pieces: int = DEFAULT_PIECES) -> np.ndarray:
    """Piecewise-baseline grid with about equal numbers of events per piece."""
    times = data.stop[data.event_type != 0]
    if len(times) < n_pieces:
        return make_grid(None)
    return quantile_grid(times, n_pieces)


def _crude_rate(data: JointData) -> float:
    """Events per unit of follow-up time."""
    return max(float(np.sum(data.event_type != 0)), 0.5) / max(float(data.stop.sum()), 1e-12)


def _times(matrix: np.ndarray, vector: Any) -> pt.TensorVariable:
    """``matrix @ vector`` as a sum of products.

    PyTensor's matrix-vector ``dot`` holds a ``None`` shape constant, which the compile
    cache cannot key (the model would be compiled at every fit).
    """
    return pt.sum(matrix * vector[None, :], axis=1)


def _ordinal_logp(value, eta, cutpoints):
    """Log-probability of each ordinal measurement (the progression model's kernel)."""
    return visit_logp("ordered_logistic", value, eta, cutpoints)


def _ordinal_random(eta, cutpoints, rng=None, size=None):
    """Ordinal measurements drawn given the latent trajectory."""
    return draw_visits("ordered_logistic", np.asarray(eta), np.asarray(cutpoints), rng)


def _event_logp(value, before, within, log_h_stop, event_type):
    """Per-subject event log-likelihood (module level, so the compile cache can key it)."""
    return event_log_likelihood(value, event_type, before, within, log_h_stop)


def build_joint_model(
    data: JointData,
    *,
    baseline: str = "weibull",
    grid: Sequence[float] | None = None,
    parametrization: str = "centred",
    n_nodes: int = DEFAULT_NODES,
    fixed_effect_sd: float = 10.0,
    random_effect_sd_scale: float | None = None,
    lkj_eta: float = 2.0,
    residual_sd_scale: float | None = None,
    cutpoint_sd: float = 5.0,
    beta_sd: float = 5.0,
    alpha_sd: float = 5.0,
    baseline_prior_sd: float = 2.0,
    reference: float | None = None,
) -> pm.Model:
    """The joint model of :class:`~magbayes.models.joint.data.JointData`.

    Parameters
    ----------
    data : JointData
        From :func:`~magbayes.models.joint.data.joint_arrays`.
    baseline : {"weibull", "piecewise"}
        Baseline hazard (default Weibull: on pbcseq it samples in about a third of the
        time of a 6-piece baseline, whose quadrature has 15 nodes per piece), the survival
        core's
        (:func:`~magbayes.models.survival.baselines.baseline_from_priors`): piecewise
        ``baseline_log_hazard ~ Normal(log crude rate, baseline_prior_sd)`` per piece, or
        Weibull (shape ``LogNormal(0, 0.5)``, log scale ``Normal(-log crude rate,
        baseline_prior_sd)``).
    grid : sequence of float, optional
        Piecewise grid ``[0, ..., inf]`` (default :func:`default_grid`).
    parametrization : {"centred", "non-centred"}
        Centred (default; with several measurements per subject it mixes far better, see
        docs/models/joint-core.md): each subject's level and slope ``subject_trajectory ~
        MvNormal(fixed-effect part, L L')``, and ``random_effect`` their deviation.
        Non-centred: ``random_effect = random_effect_z @ L'`` with standard-normal
        ``random_effect_z``.
    n_nodes : int
        Gauss-Legendre nodes per integration range (per grid piece).
    fixed_effect_sd : float
        Prior sd of each trajectory fixed effect (value units; per time unit for slopes).
    random_effect_sd_scale : float, optional
        Half-normal scale of the random intercept and slope sds (default: the sd of the
        values for a Gaussian outcome, 2.5 logits for an ordinal one).
    lkj_eta : float
        LKJ prior of the intercept-slope correlation (1: uniform).
    residual_sd_scale : float, optional
        Gaussian: half-normal scale of ``sigma`` (default: the sd of the values).
    cutpoint_sd : float
        Ordinal: the first cutpoint is 0 (the trajectory's intercept sets the location);
        each further one lies ``cutpoint_gap ~ HalfNormal(cutpoint_sd)`` above the last
        (logits).
    beta_sd, alpha_sd : float
        Prior sds of each event log hazard ratio and of the association ``alpha`` (log
        hazard per unit of the current value).
    baseline_prior_sd : float
        Prior sd of the log baseline hazard.
    reference : float, optional
        ``c`` in the hazard (default: mean of the values, Gaussian; 0, ordinal).

    Returns
    -------
    pymc.Model
        Observed ``longitudinal`` (dims ``measurement``) and ``event`` (dims ``subject``,
        the event flag; its log density is each subject's event log-likelihood). The model
        keeps ``joint_data`` (the data) and ``event_covariate_means`` as attributes.
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {PARAMETRIZATIONS}, not {parametrization!r}"
        )
    gaussian = data.outcome == "gaussian"
    values = data.measurement_value
    value_sd = float(np.std(values)) if gaussian and len(values) > 1 else 1.0
    value_sd = value_sd if value_sd > 0 else 1.0
    if random_effect_sd_scale is None:
        random_effect_sd_scale = value_sd if gaussian else 2.5
    if reference is None:
        reference = float(np.mean(values)) if gaussian and len(values) else 0.0
    g = None
    if baseline == "piecewise":
        g = default_grid(data) if grid is None else np.asarray(grid, float)
        if g[0] != 0.0 or not np.isinf(g[-1]):
            g = make_grid(g)
    quadrature = event_quadrature(data, g, n_nodes)
    x = data.event_covariates
    means = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    level_design, slope_design = data.trajectory_design()
    coords: dict[str, list] = {
        "subject": [str(s) for s in data.subject_ids],
        "measurement": list(range(data.n_measurements)),
        "trajectory_term": data.trajectory_terms,
        "effect": ["intercept", "slope"],
        "cholesky_entry": ["intercept", "slope:intercept", "slope"],
        "event_covariate": list(data.event_covariate_names),
    }
    if g is not None:
        coords["hazard_piece"] = piece_labels(g, data.time_unit)
    if not gaussian:
        coords["cutpoint_step"] = [
            f"{a}-{b}" for a, b in zip(data.categories[1:-1], data.categories[2:], strict=True)
        ]
        coords["cutpoint"] = [
            f"{a}|{b}" for a, b in zip(data.categories[:-1], data.categories[1:], strict=True)
        ]
    centre = float(np.log(_crude_rate(data)))
    subject = data.measurement_subject
    with pm.Model(coords=coords) as model:
        beta_traj = pm.Normal("trajectory", 0.0, fixed_effect_sd, dims="trajectory_term")
        sd_dist = pm.HalfNormal.dist(random_effect_sd_scale, shape=2)
        chol, corr, stds = pm.LKJCholeskyCov(
            "random_effect_cholesky",
            eta=lkj_eta,
            n=2,
            sd_dist=sd_dist,
            compute_corr=True,
            store_in_trace=False,
            dims="cholesky_entry",
        )
        pm.Deterministic("random_effect_sd", stds, dims="effect")
        pm.Deterministic("random_effect_corr", corr[1, 0])
        mean_level = _times(level_design, beta_traj)
        mean_slope = _times(slope_design, beta_traj)
        mean = pt.stack([mean_level, mean_slope], axis=1)
        if parametrization == "centred":
            # the subject's own level and slope, centred on the fixed-effect part
            own = pm.MvNormal("subject_trajectory", mu=mean, chol=chol, dims=("subject", "effect"))
            pm.Deterministic("random_effect", own - mean, dims=("subject", "effect"))
            level, slope = own[:, 0], own[:, 1]
        else:
            z = pm.Normal("random_effect_z", 0.0, 1.0, dims=("subject", "effect"))
            b = pm.Deterministic("random_effect", pt.dot(z, chol.T), dims=("subject", "effect"))
            level, slope = mean_level + b[:, 0], mean_slope + b[:, 1]
        current = level[subject] + slope[subject] * data.measurement_time
        if gaussian:
            sigma = pm.HalfNormal(
                "residual_sd", value_sd if residual_sd_scale is None else residual_sd_scale
            )
            pm.Normal("longitudinal", current, sigma, observed=values, dims="measurement")
        else:
            # the first cutpoint is 0 (the intercept sets the location, and mixes well
            # because it is the mean of the subjects' levels); the others follow by gaps
            gaps = pm.HalfNormal("cutpoint_gap", cutpoint_sd, dims="cutpoint_step")
            cutpoints = pm.Deterministic(
                "cutpoints", pt.concatenate([pt.zeros(1), pt.cumsum(gaps)]), dims="cutpoint"
            )
            pm.CustomDist(
                "longitudinal",
                current,
                cutpoints,
                logp=_ordinal_logp,
                random=_ordinal_random,
                signature="(m),(k)->(m)",
                observed=values,
                dims="measurement",
                dtype="int64",
            )
        base = baseline_from_priors(
            baseline,
            log_hazard_mean=centre,
            log_hazard_sd=baseline_prior_sd,
            shape_sd=0.5,
            log_scale_mean=-centre,
            log_scale_sd=baseline_prior_sd,
        )
        eta = pt.zeros(data.n_subjects)
        if x.shape[1]:
            beta = pm.Normal("beta", 0.0, beta_sd, dims="event_covariate")
            eta = eta + _times(x - means, beta)
        alpha = pm.Normal("alpha", 0.0, alpha_sd)
        terms = event_hazard_terms(data, quadrature, base, eta, alpha, level, slope, reference)
        pm.CustomDist(
            "event",
            *terms,
            data.event_type.astype("int64"),
            logp=_event_logp,
            signature="(s),(s),(s),(s)->(s)",
            observed=(data.event_type != 0).astype("int64"),
            dims="subject",
            dtype="int64",
        )
    model.joint_data = data
    model.event_covariate_means = dict(
        zip(data.event_covariate_names, map(float, means), strict=True)
    )
    model.reference_value = reference
    return model


def subject_log_likelihood(tree: xr.DataTree, model: pm.Model) -> xr.DataArray:
    """Each subject's log-likelihood of both parts, per draw, added to ``tree``.

    The ``log_likelihood`` group gets ``longitudinal`` (per measurement), ``event`` and
    ``joint`` (per subject: the sum of the subject's measurements and its event), so
    ``az.loo(tree, var_name="joint")`` leaves one subject out at a time.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of ``model``.
    model : pymc.Model
        From :func:`build_joint_model`.

    Returns
    -------
    xarray.DataArray
        ``joint``, dims (chain, draw, subject).
    """
    add_log_likelihood(tree, model, ["longitudinal", "event"])
    group = tree["log_likelihood"].to_dataset()
    data: JointData = model.joint_data
    per_measurement = group["longitudinal"].transpose("chain", "draw", "measurement").values
    chains, draws, _ = per_measurement.shape
    sums = np.zeros((chains, draws, data.n_subjects))
    np.add.at(sums, (slice(None), slice(None), data.measurement_subject), per_measurement)
    joint = group["event"].transpose("chain", "draw", "subject") + xr.DataArray(
        sums, dims=("chain", "draw", "subject")
    )
    joint.name = "joint"
    tree["log_likelihood"] = xr.DataTree(group.assign(joint=joint))
    return joint


def convergence_summary(
    tree: xr.DataTree,
    *,
    r_hat_max: float = RHAT_MAX,
    ess_bulk_min: float = ESS_BULK_MIN,
) -> dict[str, Any]:
    """Convergence of a fit from ArviZ's R-hat and ESS, and whether it passes the gate.

    Over every sampled parameter (random effects included): largest rank-normalised
    R-hat, smallest bulk and tail ESS, and the number of divergent transitions. The gate
    passes when R-hat <= ``r_hat_max``, bulk ESS >= ``ess_bulk_min`` and there are no
    divergences (magbayes' thresholds by default: 1.01 and 400).

    Returns
    -------
    dict
        ``r_hat_max``, ``ess_bulk_min``, ``ess_tail_min`` (each with ``*_variable``),
        ``ess_bulk_min_population`` (over the parameters that are not per subject),
        ``divergences``, ``passed`` and ``reasons``.
    """
    post = tree["posterior"].to_dataset()
    names = [v for v in post.data_vars if post[v].dtype.kind == "f"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(post[names])
        bulk = az.ess(post[names], method="bulk")
        tail = az.ess(post[names], method="tail")

    def extreme(ds: xr.Dataset, how: str, keys: list[str]) -> tuple[float, str]:
        values = {k: float(getattr(ds[k], how)(skipna=True)) for k in keys}
        values = {k: v for k, v in values.items() if np.isfinite(v)}
        if not values:
            return float("nan"), ""
        key = (max if how == "max" else min)(values, key=values.get)
        return values[key], key

    population = [v for v in names if "subject" not in post[v].dims]
    out: dict[str, Any] = {}
    out["r_hat_max"], out["r_hat_max_variable"] = extreme(rhat, "max", names)
    out["ess_bulk_min"], out["ess_bulk_min_variable"] = extreme(bulk, "min", names)
    out["ess_tail_min"], out["ess_tail_min_variable"] = extreme(tail, "min", names)
    pop = extreme(bulk, "min", population)
    out["ess_bulk_min_population"], out["ess_bulk_min_population_variable"] = pop
    stats = tree["sample_stats"]
    out["divergences"] = int(stats["diverging"].sum()) if "diverging" in stats else 0
    reasons = []
    if not out["r_hat_max"] <= r_hat_max:
        reasons.append(f"R-hat {out['r_hat_max']:.3f} > {r_hat_max} ({out['r_hat_max_variable']})")
    if not out["ess_bulk_min"] >= ess_bulk_min:
        reasons.append(
            f"bulk ESS {out['ess_bulk_min']:.0f} < {ess_bulk_min} ({out['ess_bulk_min_variable']})"
        )
    if out["divergences"]:
        reasons.append(f"{out['divergences']} divergent transition(s)")
    out["passed"] = not reasons
    out["reasons"] = reasons
    return out


def fit_joint_model(
    longitudinal: pd.DataFrame,
    events: pd.DataFrame,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    target_accept: float = 0.9,
    model_kwargs: dict[str, Any] | None = None,
    log_likelihood: bool = True,
    **array_kwargs: Any,
) -> tuple[xr.DataTree, pm.Model]:
    """Fit a joint model to a longitudinal and an event table with nutpie.

    Parameters
    ----------
    longitudinal, events : pandas.DataFrame
        See :func:`~magbayes.models.joint.data.joint_arrays`.
    draws, tune, chains, seed : int
        Sampler settings (:func:`magbayes.sampler.sample_posterior`; chains run in
        parallel on the available cores).
    target_accept : float
        NUTS target acceptance rate.
    model_kwargs : dict, optional
        Passed to :func:`build_joint_model` (baseline, parametrization, priors).
    log_likelihood : bool
        Add each subject's log-likelihood (:func:`subject_log_likelihood`).
    **array_kwargs
        Passed to :func:`~magbayes.models.joint.data.joint_arrays` (columns, outcome,
        covariates).

    Returns
    -------
    tree : xarray.DataTree
        Posterior, sample_stats, observed_data and (with ``log_likelihood``) the
        per-subject log-likelihood; ``tree["posterior"].attrs["wall_seconds"]`` is the
        time of building, compiling (or loading) and sampling.
    model : pymc.Model
        The model that was sampled.
    """
    started = time.perf_counter()
    data = joint_arrays(longitudinal, events, **array_kwargs)
    model = build_joint_model(data, **(model_kwargs or {}))
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed}
    tree = sample_posterior(model, settings | {"target_accept": target_accept})
    tree["posterior"].attrs["wall_seconds"] = time.perf_counter() - started
    if log_likelihood:
        subject_log_likelihood(tree, model)
    return tree, model
