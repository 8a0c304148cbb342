"""Latent disability over time and the disability scores drawn from it.

For patient ``i`` at site ``s`` and time ``t`` (years since onset), on the latent logit
scale of an ordered-logistic model::

    eta_i(t) = level_i + rate_i * t
               + sum_c beta_covariate[c] * z_ic
               + sum_{courses k of i with start s_k <= t} gamma_k * (t - s_k)

    (level_i, rate_i) ~ MVN((intercept + site_level[s],
                             slope + site_slope[s] + rate_sural_reduced * sural_reduced_i),
                            diag(patient_sd) R diag(patient_sd)),  R_12 = patient_corr

    gamma_k = gamma_treatment[treatment_k]                  (not rituximab)
            = gamma_rituximab + gamma_rituximab_x_sural * sural_reduced_i   (rituximab)
            + gamma_later_line                              (if line_k >= 2)

INCAT, ONLS and mRS are ordered-logistic draws with their own cutpoints; the I-RODS
centile is ``100 * Beta`` with mean ``logistic(irods_intercept - irods_slope * eta)`` and
precision ``irods_precision`` (higher I-RODS = less disability).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from magbayes.simulate.parameters import COVARIATES

#: Ordinal scores drawn from the latent disability, with their highest value.
ORDINAL_SCORES: dict[str, int] = {"incat": 10, "onls": 12, "mrs": 6}


def draw_site_effects(
    rng: np.random.Generator, sites: list[str], progression: dict[str, Any]
) -> tuple[dict[str, float], dict[str, float]]:
    """Site offsets of the level and of the slope: ``Normal(0, site_level_sd)`` etc.

    Returns
    -------
    site_level, site_slope : dict
        ``{site: offset}`` (latent logit; latent logit per year).
    """
    level = rng.normal(0.0, progression["site_level_sd"], len(sites))
    slope = rng.normal(0.0, progression["site_slope_sd"], len(sites))
    return (
        {s: float(v) for s, v in zip(sites, level, strict=True)},
        {s: float(v) for s, v in zip(sites, slope, strict=True)},
    )


def draw_patient_trajectories(
    rng: np.random.Generator,
    site_of_patient: np.ndarray,
    sural_reduced: np.ndarray,
    site_level: dict[str, float],
    site_slope: dict[str, float],
    progression: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Each patient's level (at onset) and rate (per year) of latent disability.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream for this stage.
    site_of_patient : numpy.ndarray of str
        Site of each patient.
    sural_reduced : numpy.ndarray of bool
        Early sural reduction of each patient (the true status where undefined).
    site_level, site_slope : dict
        From :func:`draw_site_effects`.
    progression : dict
        The ``progression`` section of the parameters.

    Returns
    -------
    level, rate : numpy.ndarray
        Latent logit at onset; latent logit per year.
    """
    n = len(site_of_patient)
    mean_level = progression["intercept"] + np.asarray([site_level[s] for s in site_of_patient])
    mean_rate = (
        progression["slope"]
        + np.asarray([site_slope[s] for s in site_of_patient])
        + progression["rate_sural_reduced"] * sural_reduced.astype(float)
    )
    sd = np.asarray(progression["patient_sd"], float)
    corr = progression["patient_corr"]
    cov = np.diag(sd) @ np.array([[1.0, corr], [corr, 1.0]]) @ np.diag(sd)
    deviations = rng.multivariate_normal(np.zeros(2), cov, size=n, method="cholesky")
    return mean_level + deviations[:, 0], mean_rate + deviations[:, 1]


def latent_with_courses(
    visits: pd.DataFrame,
    patient_ids: list[str],
    level: np.ndarray,
    rate: np.ndarray,
    covariate_effect: np.ndarray,
    courses: pd.DataFrame,
    sural_reduced: dict[str, bool],
    progression: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Each course's slope change and the latent disability at each visit.

    The one computation of ``eta`` that the simulator and
    :mod:`magbayes.simulate.replay` share: :func:`course_slope_changes`, then
    :func:`latent_disability`.

    Parameters
    ----------
    visits, patient_ids, level, rate, covariate_effect
        As for :func:`latent_disability`.
    courses : pandas.DataFrame
        ``patient_id``, ``treatment``, ``line``, ``start_years``.
    sural_reduced : dict
        True early-sural status of each patient.
    progression : dict
        The ``progression`` parameters (``gamma_*``).

    Returns
    -------
    gamma, eta : numpy.ndarray
        Slope change per course (latent logit per year); ``eta`` per visit (latent logit).
    """
    gamma = course_slope_changes(courses, sural_reduced, progression)
    eta = latent_disability(visits, patient_ids, level, rate, covariate_effect, courses, gamma)
    return gamma, eta


def course_slope_changes(
    courses: pd.DataFrame, sural_reduced: dict[str, bool], progression: dict[str, Any]
) -> np.ndarray:
    """``gamma_k`` of each course: change in the latent slope from its start (per year)."""
    gamma = np.empty(len(courses))
    for k, (pid, treatment, line) in enumerate(
        zip(courses["patient_id"], courses["treatment"], courses["line"], strict=True)
    ):
        if treatment == "rituximab":
            value = progression["gamma_rituximab"] + progression["gamma_rituximab_x_sural"] * float(
                sural_reduced[pid]
            )
        else:
            value = progression["gamma_treatment"][treatment]
        if line >= 2:
            value += progression["gamma_later_line"]
        gamma[k] = value
    return gamma


def latent_disability(
    visits: pd.DataFrame,
    patient_ids: list[str],
    level: np.ndarray,
    rate: np.ndarray,
    covariate_effect: np.ndarray,
    courses: pd.DataFrame,
    gamma: np.ndarray,
) -> np.ndarray:
    """``eta`` at each visit (latent logit), following the module's equation.

    Parameters
    ----------
    visits : pandas.DataFrame
        ``patient_id``, ``years_since_onset``.
    patient_ids : list of str
        Order of ``level``, ``rate`` and ``covariate_effect``.
    level, rate : numpy.ndarray
        From :func:`draw_patient_trajectories`.
    covariate_effect : numpy.ndarray
        ``sum_c beta_covariate[c] * z_ic`` per patient.
    courses : pandas.DataFrame
        ``patient_id``, ``start_years``.
    gamma : numpy.ndarray
        From :func:`course_slope_changes`.
    """
    row = {pid: i for i, pid in enumerate(patient_ids)}
    idx = visits["patient_id"].map(row).to_numpy(int)
    t = visits["years_since_onset"].to_numpy(float)
    eta = level[idx] + rate[idx] * t + covariate_effect[idx]
    pairs = pd.DataFrame(
        {"visit_row": np.arange(len(visits)), "patient_id": visits["patient_id"].to_numpy()}
    ).merge(
        pd.DataFrame(
            {
                "patient_id": courses["patient_id"].to_numpy(),
                "start": courses["start_years"].to_numpy(float),
                "gamma": np.asarray(gamma, float),
            }
        ),
        on="patient_id",
    )
    exposure = np.maximum(t[pairs["visit_row"].to_numpy()] - pairs["start"].to_numpy(), 0.0)
    np.add.at(eta, pairs["visit_row"].to_numpy(), pairs["gamma"].to_numpy() * exposure)
    return eta


def latent_path(
    times: np.ndarray,
    level: float,
    rate: float,
    covariate_effect: float,
    course_starts: np.ndarray,
    gamma: np.ndarray,
) -> np.ndarray:
    """``eta`` of one patient at any times (latent logit), the module's equation.

    The same sum as :func:`latent_disability` computes at the visits, for one patient at
    arbitrary times (the end-of-follow-up hazards of :mod:`magbayes.simulate.dropout`
    need it between visits). ``eta`` is linear in time between course starts.

    Parameters
    ----------
    times : numpy.ndarray
        Years since onset.
    level, rate, covariate_effect : float
        The patient's level (latent logit), rate (latent logit per year) and
        ``sum_c beta_covariate[c] * z_ic``.
    course_starts, gamma : numpy.ndarray
        Start (years since onset) and slope change (latent logit per year) of each of the
        patient's courses.
    """
    t = np.asarray(times, float)
    eta = level + rate * t + covariate_effect
    starts = np.asarray(course_starts, float)
    if starts.size:
        exposure = np.maximum(t[..., None] - starts, 0.0)
        eta = eta + exposure @ np.asarray(gamma, float)
    return eta


def covariate_effect(z: np.ndarray, beta_covariate: dict[str, float]) -> np.ndarray:
    """``sum_c beta[c] * z_ic`` per patient (``z`` in :data:`COVARIATES` order)."""
    return z @ np.asarray([beta_covariate[c] for c in COVARIATES], float)


def probability_below(eta: np.ndarray, cutpoints: list[float]) -> np.ndarray:
    """``P(score < k)`` for ``k = 1..K`` at each latent value: ``logistic(c_k - eta)``.

    Parameters
    ----------
    eta : numpy.ndarray
        Latent disability (latent logit), one value per row.
    cutpoints : list of float
        The score's ``K`` increasing cutpoints (latent logit).

    Returns
    -------
    numpy.ndarray
        ``(len(eta), K)``.
    """
    return expit(np.asarray(cutpoints, float)[None, :] - np.asarray(eta, float)[:, None])


def category_probabilities(eta: np.ndarray, cutpoints: list[float]) -> np.ndarray:
    """``P(score = k)`` for ``k = 0..K`` at each latent value (rows sum to 1).

    The differences of :func:`probability_below`, the function :func:`draw_ordinal`
    draws with.
    """
    below = probability_below(eta, cutpoints)
    ones = np.ones((below.shape[0], 1))
    return np.diff(np.hstack([np.zeros_like(ones), below, ones]), axis=1)


def draw_ordinal(rng: np.random.Generator, eta: np.ndarray, cutpoints: list[float]) -> np.ndarray:
    """Ordered-logistic draws: ``P(score >= k) = logistic(eta - c_k)``, integers 0..K.

    One uniform number ``u`` per row; the score is the number of ``k`` with
    ``u > P(score < k)``.
    """
    below = probability_below(eta, cutpoints)
    u = rng.random(len(eta))
    return (u[:, None] > below).sum(axis=1)


def irods_beta_shapes(
    eta: np.ndarray, progression: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Shapes ``(a, b)`` of the Beta distribution of I-RODS / 100 at each latent value.

    Mean ``logistic(irods_intercept - irods_slope * eta)`` (kept within 1e-9 of 0 and 1),
    precision ``irods_precision``: ``a = mean * precision``, ``b = (1 - mean) * precision``.
    """
    mean = expit(progression["irods_intercept"] - progression["irods_slope"] * eta)
    precision = progression["irods_precision"]
    mean = np.clip(mean, 1e-9, 1 - 1e-9)
    return mean * precision, (1.0 - mean) * precision


def draw_scores(
    rng: np.random.Generator, eta: np.ndarray, progression: dict[str, Any]
) -> dict[str, np.ndarray]:
    """INCAT, ONLS, mRS (integers) and I-RODS (centile, 0.1) at each visit, complete."""
    scores = {
        name: draw_ordinal(rng, eta, progression["cutpoints"][name]) for name in ORDINAL_SCORES
    }
    a, b = irods_beta_shapes(eta, progression)
    centile = 100.0 * rng.beta(a, b)
    scores["irods"] = np.clip(np.round(centile, 1), 0.0, 100.0)
    return scores


def hide_scores(
    rng: np.random.Generator, scores: pd.DataFrame, missing: dict[str, float]
) -> pd.DataFrame:
    """Scores as recorded: some missing at random, never all four at one visit.

    INCAT is never hidden at a baseline visit (``visit == 0``) because worsening is
    measured from it. Where every score of a visit would be hidden, INCAT is kept.

    Parameters
    ----------
    scores : pandas.DataFrame
        ``visit`` and the four score columns, complete.
    missing : dict
        The ``missing`` section (share per score).
    """
    out = scores.copy()
    n = len(out)
    hidden = {name: rng.random(n) < missing[name] for name in ("incat", "onls", "mrs", "irods")}
    hidden["incat"] &= out["visit"].to_numpy() != 0
    all_hidden = np.logical_and.reduce(list(hidden.values()))
    hidden["incat"] &= ~all_hidden
    for name, hide in hidden.items():
        kind = "Float64" if name == "irods" else "Int64"
        out[name] = out[name].astype(kind).mask(hide)
    return out
