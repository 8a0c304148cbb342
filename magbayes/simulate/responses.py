"""The clinician's rating of each treatment course: none < partial < good.

For course ``k`` of patient ``i`` at site ``s`` (ordered logistic, positive = more
benefit)::

    a_k = alpha_intercept
          + alpha_treatment[treatment_k]                       (not rituximab; ivig = 0)
          + alpha_rituximab + alpha_rituximab_x_sural * sural_reduced_i   (rituximab)
          + alpha_later_line * (line_k >= 2)
          + sum_c beta_covariate[c] * z_ic
          + patient_effect[i] + site_effect[s]

    patient_effect[i] ~ Normal(0, patient_sd),  site_effect[s] ~ Normal(0, site_sd)
    P(rating >= partial) = logistic(a_k - c_partial),  P(good) = logistic(a_k - c_good)

IVIg is the reference treatment (``alpha_treatment["ivig"] = 0``), so ``alpha_intercept``
is the location of a first-line IVIg course in an average patient. Some ratings are then
recorded as ``unknown`` completely at random; the true category is kept in the truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from magbayes.simulate.parameters import COVARIATES

#: Response categories, worst to best.
CATEGORIES: tuple[str, ...] = ("none", "partial", "good")


def draw_response_effects(
    rng: np.random.Generator, patient_ids: list[str], sites: list[str], response: dict[str, Any]
) -> tuple[dict[str, float], dict[str, float]]:
    """Patient and site effects on the rating (log odds).

    Returns
    -------
    patient_effect, site_effect : dict
        ``{patient_id: value}``, ``{site: value}``.
    """
    site = rng.normal(0.0, response["site_sd"], len(sites))
    patient = rng.normal(0.0, response["patient_sd"], len(patient_ids))
    return (
        {p: float(v) for p, v in zip(patient_ids, patient, strict=True)},
        {s: float(v) for s, v in zip(sites, site, strict=True)},
    )


def response_linear_predictor(
    courses: pd.DataFrame,
    z_by_patient: dict[str, np.ndarray],
    site_by_patient: dict[str, str],
    sural_reduced: dict[str, bool],
    patient_effect: dict[str, float],
    site_effect: dict[str, float],
    response: dict[str, Any],
) -> np.ndarray:
    """``a_k`` of each course (log odds scale), following the module's equation."""
    beta = np.asarray([response["beta_covariate"][c] for c in COVARIATES], float)
    out = np.empty(len(courses))
    for k, (pid, treatment, line) in enumerate(
        zip(courses["patient_id"], courses["treatment"], courses["line"], strict=True)
    ):
        value = response["alpha_intercept"]
        if treatment == "rituximab":
            value += response["alpha_rituximab"] + response["alpha_rituximab_x_sural"] * float(
                sural_reduced[pid]
            )
        else:
            value += response["alpha_treatment"][treatment]
        if line >= 2:
            value += response["alpha_later_line"]
        value += float(z_by_patient[pid] @ beta)
        value += patient_effect[pid] + site_effect[site_by_patient[pid]]
        out[k] = value
    return out


def draw_ratings(
    rng: np.random.Generator, linear_predictor: np.ndarray, cutpoints: list[float]
) -> np.ndarray:
    """True rating of each course (``none``, ``partial`` or ``good``)."""
    below = expit(np.asarray(cutpoints, float)[None, :] - linear_predictor[:, None])
    u = rng.random(len(linear_predictor))
    index = (u[:, None] > below).sum(axis=1)
    return np.asarray(CATEGORIES, dtype=object)[index].astype(str)


def hide_ratings(rng: np.random.Generator, ratings: np.ndarray, unknown: float) -> np.ndarray:
    """Ratings as recorded: a share ``unknown`` replaced by ``"unknown"`` at random."""
    hide = rng.random(len(ratings)) < unknown
    return np.where(hide, "unknown", ratings)
