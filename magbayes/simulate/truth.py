"""The true parameters behind a simulated cohort, laid out as in ``truth.json``.

Names are those of the models (``gamma_rituximab_x_sural``, ``beta_rituximab``,
``alpha_rituximab``, ...). Vectors are lists; labelled vectors are dicts keyed by their
labels (site, treatment and covariate names).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from magbayes import __version__
from magbayes.cohort.tables import DEFAULT_SURAL_THRESHOLD_UV, DEFAULT_SURAL_WINDOW_YEARS
from magbayes.simulate.events import MAX_BASELINE_INCAT
from magbayes.simulate.parameters import (
    COVARIATES,
    HAZARD_BREAKS_YEARS,
    HAZARD_PER_SLOPE,
    RESPONSE_PER_SLOPE,
)
from magbayes.simulate.responses import CATEGORIES

#: Why the worsening truth is absent when worsening is read from the scores.
SCORES_MODE_NOTE = (
    "worsening_from='scores': INCAT is not constrained by a hazard model, so confirmed "
    "worsening is whatever the ordered-logistic scores show; there is no true hazard. "
    "The progression truth is exact in this mode."
)
HAZARD_MODE_NOTE = (
    "worsening_from='hazard': INCAT draws were capped/raised to agree with each patient's "
    "worsening_time, so this worsening truth is exact and the progression truth describes "
    "ONLS, mRS and I-RODS exactly but INCAT only approximately."
)


def build_truth(
    *,
    seed: int,
    options: dict[str, Any],
    params: dict[str, dict[str, Any]],
    standardisation: dict[str, dict[str, float]],
    sites: list[str],
    patient_ids: list[str],
    site_by_patient: dict[str, str],
    z: np.ndarray,
    sural_reduced: dict[str, bool],
    progression_effects: dict[str, Any],
    worsening_effects: dict[str, Any] | None,
    response_effects: dict[str, Any],
    first_worsening: pd.Series,
    courses: pd.DataFrame,
) -> dict[str, Any]:
    """Assemble ``truth.json``.

    Parameters
    ----------
    seed : int
        The seed actually used.
    options : dict
        Arguments of :func:`magbayes.simulate.simulate_cohort` (overrides included).
    params : dict
        Resolved parameters (:func:`magbayes.simulate.parameters.resolve_parameters`).
    standardisation : dict
        Population mean and sd of each covariate.
    sites, patient_ids : list of str
        Labels.
    site_by_patient : dict
        Site of each patient.
    z : numpy.ndarray
        Standardised covariates (patient x covariate, :data:`COVARIATES` order).
    sural_reduced : dict
        True early-sural status of each patient.
    progression_effects : dict
        ``site_level``, ``site_slope`` (dicts) and ``level``, ``rate`` (arrays).
    worsening_effects : dict or None
        ``site_log_frailty`` (dict) and ``worsening_time`` (array); ``None`` when
        worsening is read from the scores.
    response_effects : dict
        ``site_effect``, ``patient_effect`` (dicts).
    first_worsening : pandas.Series
        First confirmed worsening visit per patient (years since onset, NaN if none).
    courses : pandas.DataFrame
        Courses as written plus ``gamma``, ``beta``, ``response_linear_predictor`` and
        ``true_response``.
    """
    prog = params["progression"]
    progression = {
        key: prog[key]
        for key in (
            "intercept",
            "slope",
            "site_level_sd",
            "site_slope_sd",
            "patient_sd",
            "patient_corr",
            "rate_sural_reduced",
            "beta_covariate",
            "gamma_treatment",
            "gamma_rituximab",
            "gamma_rituximab_x_sural",
            "gamma_later_line",
            "cutpoints",
            "irods_intercept",
            "irods_slope",
            "irods_precision",
        )
    }
    progression["site_level"] = progression_effects["site_level"]
    progression["site_slope"] = progression_effects["site_slope"]
    progression["scale"] = "latent logit of the ordered-logistic scores; time in years since onset"
    progression["exact_for_incat"] = worsening_effects is None

    if worsening_effects is None:
        worsening: dict[str, Any] = {"applicable": False, "note": SCORES_MODE_NOTE}
    else:
        w = params["worsening"]
        worsening = {
            "applicable": True,
            "note": HAZARD_MODE_NOTE,
            "definition": {
                "score": "incat",
                "min_increase": 1,
                "baseline": "first visit",
                "confirmation": "next visit",
                "at_risk_from": "baseline visit (delayed entry)",
                "max_baseline_incat": MAX_BASELINE_INCAT,
            },
            "hazard_breaks_years": list(HAZARD_BREAKS_YEARS),
            "baseline_hazard": w["baseline_hazard"],
            "site_frailty_sd": w["site_frailty_sd"],
            "site_log_frailty": worsening_effects["site_log_frailty"],
            "beta_treatment": w["beta_treatment"],
            "beta_rituximab": w["beta_rituximab"],
            "beta_rituximab_x_sural": w["beta_rituximab_x_sural"],
            "beta_covariate": w["beta_covariate"],
            "scale": "log hazard ratio; baseline hazard per year",
        }

    r = params["response"]
    response = {
        key: r[key]
        for key in (
            "alpha_intercept",
            "alpha_treatment",
            "alpha_rituximab",
            "alpha_rituximab_x_sural",
            "alpha_later_line",
            "beta_covariate",
            "patient_sd",
            "site_sd",
            "cutpoints",
        )
    }
    response["site_effect"] = response_effects["site_effect"]
    response["categories"] = list(CATEGORIES)
    response["reference_treatment"] = "ivig"
    response["unknown_fraction"] = params["missing"]["response_unknown"]
    response["scale"] = "log odds of a better rating (none < partial < good)"

    patients = {}
    for i, pid in enumerate(patient_ids):
        entry: dict[str, Any] = {
            "site": site_by_patient[pid],
            "true_sural_reduced": bool(sural_reduced[pid]),
            "level": progression_effects["level"][i],
            "rate": progression_effects["rate"][i],
            "covariates_standardised": {c: z[i, j] for j, c in enumerate(COVARIATES)},
            "worsening_time": (
                None if worsening_effects is None else worsening_effects["worsening_time"][i]
            ),
            "first_confirmed_worsening_years": first_worsening.get(pid, np.nan),
            "response_patient_effect": response_effects["patient_effect"][pid],
        }
        patients[pid] = entry

    course_list = []
    for row in courses.itertuples(index=False):
        course_list.append(
            {
                "patient_id": row.patient_id,
                "treatment": row.treatment,
                "line": row.line,
                "start_years": row.start_years,
                "stop_years": row.stop_years,
                "gamma": row.gamma,
                "beta": None if worsening_effects is None else row.beta,
                "response_linear_predictor": row.response_linear_predictor,
                "true_response": row.true_response,
                "response": row.response,
            }
        )

    generator = dict(options)
    generator["magbayes_version"] = __version__
    generator["interaction_mapping"] = {
        "gamma_rituximab_x_sural": "sural_rituximab_effect",
        "beta_rituximab_x_sural": f"{HAZARD_PER_SLOPE:g} * sural_rituximab_effect",
        "alpha_rituximab_x_sural": f"{RESPONSE_PER_SLOPE:g} * sural_rituximab_effect",
    }
    generator["settings"] = {
        key: params[key] for key in ("population", "visits", "treatments", "missing")
    }
    return {
        "seed": seed,
        "generator": generator,
        "covariates": list(COVARIATES),
        "covariate_standardisation": standardisation,
        "sural_definition": {
            "threshold_uv": DEFAULT_SURAL_THRESHOLD_UV,
            "window_years": DEFAULT_SURAL_WINDOW_YEARS,
            "undefined_uses": "true_sural_reduced",
        },
        "sites": list(sites),
        "progression": progression,
        "worsening": worsening,
        "response": response,
        "patients": patients,
        "courses": course_list,
    }
