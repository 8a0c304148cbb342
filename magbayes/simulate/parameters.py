"""Default settings and true parameters of the simulator, and how overrides are applied.

Every number here is documented with its source in ``docs/simulator.md`` (a published
figure from ``CLINICAL.md`` or "assumption"). The parameters are grouped in sections:

``population``
    Patients, sites and electrophysiology (:mod:`magbayes.simulate.population`).
``visits``
    Timing of clinical assessments (:mod:`magbayes.simulate.schedule`).
``treatments``
    Treatment courses (:mod:`magbayes.simulate.treatments`).
``missing``
    Shares of values missing completely at random.
``progression``
    Latent disability and the scores drawn from it
    (:mod:`magbayes.simulate.trajectories`).
``worsening``
    Proportional-hazards model of the time to confirmed worsening
    (:mod:`magbayes.simulate.events`).
``response``
    Ordered-logistic model of the clinician's rating of each course
    (:mod:`magbayes.simulate.responses`).
``dropout``
    Death and loss to follow-up, used only with ``end_of_follow_up=True``
    (:mod:`magbayes.simulate.dropout`).

Overrides (the ``**overrides`` of :func:`magbayes.simulate.simulate_cohort`) are given
either as a whole section (``progression={"slope": 0.8}``) or, for a name that exists in
one section only, directly (``slope=0.8``). A labelled vector (a dict) may be overridden
in part; unknown names are refused, never ignored.
"""

from __future__ import annotations

import copy
from typing import Any

#: Default ``sural_rituximab_effect``: the change in the progression slope under
#: rituximab in sural-reduced compared with sural-preserved patients
#: (``gamma_rituximab_x_sural``, latent logit units per year; negative = more benefit).
DEFAULT_SURAL_RITUXIMAB_EFFECT: float = -0.35

#: ``beta_rituximab_x_sural = HAZARD_PER_SLOPE * sural_rituximab_effect`` (log hazard
#: ratio per unit of the progression interaction; same sign: negative = benefit).
HAZARD_PER_SLOPE: float = 1.0

#: ``alpha_rituximab_x_sural = RESPONSE_PER_SLOPE * sural_rituximab_effect`` (log odds of a
#: better rating per unit of the progression interaction; opposite sign, because a
#: positive ``alpha`` is a benefit).
RESPONSE_PER_SLOPE: float = -2.0

#: Covariates of all three models, in this order (patient x covariate matrices).
COVARIATES: tuple[str, ...] = (
    "age_at_onset",
    "log10_anti_mag_titer",
    "pattern_cidp_like",
    "pattern_axonal",
)

#: Treatments other than rituximab (rituximab has its own named effects).
OTHER_TREATMENTS: tuple[str, ...] = (
    "ivig",
    "corticosteroids",
    "plasma_exchange",
    "cyclophosphamide",
    "chlorambucil",
    "other",
)

#: Break points (years since onset) of the piecewise-constant baseline hazard; the last
#: piece (12 years onwards) is open-ended.
HAZARD_BREAKS_YEARS: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0)

DEFAULTS: dict[str, dict[str, Any]] = {
    "population": {
        "male_fraction": 0.75,
        "age_mean": 62.6,
        "age_sd": 10.0,
        "age_min": 25.0,
        "age_max": 91.0,
        "pattern_probabilities": {
            "distal_demyelinating": 0.61,
            "cidp_like": 0.34,
            "axonal": 0.05,
        },
        "log10_titer_mean": 4.677,
        "log10_titer_sd": 0.552,
        "site_size_ratio": 0.75,
        "first_ncs_mean_years": 1.75,
        "first_ncs_shape": 3.0,
        "sural_absent_probability": {
            "distal_demyelinating": 0.30,
            "cidp_like": 0.25,
            "axonal": 0.55,
        },
        "sural_present_median_uv": 6.5,
        "sural_present_log_sd": 0.6,
        "sural_log_change_per_year_of_age": -0.015,
        "sural_log_decline_per_year_late": 0.10,
    },
    "visits": {
        "first_visit_lag_mean_years": 0.2,
        "interval_median_years": 0.75,
        "interval_log_sd": 0.25,
        "interval_min_years": 0.3,
        "interval_max_years": 2.0,
        "follow_up_mean_years": 8.5,
        "follow_up_shape": 2.0,
    },
    "treatments": {
        "any_immunotherapy": 0.81,
        "rituximab_line_probabilities": {
            "none": 0.39,
            "1": 0.06,
            "2": 0.33,
            "3": 0.19,
            "4": 0.03,
        },
        "extra_lines_probabilities": {"0": 0.62, "1": 0.28, "2": 0.10},
        "line_after_rituximab": 0.15,
        "first_line_probabilities": {
            "ivig": 0.82,
            "corticosteroids": 0.09,
            "plasma_exchange": 0.04,
            "cyclophosphamide": 0.02,
            "chlorambucil": 0.03,
        },
        "later_line_weights": {
            "ivig": 0.40,
            "corticosteroids": 0.20,
            "plasma_exchange": 0.10,
            "cyclophosphamide": 0.15,
            "chlorambucil": 0.15,
        },
        "first_line_delay_mean_years": 0.5,
        "line_gap_mean_years": 2.0,
        "line_gap_shape": 2.0,
        # confounding by indication (magbayes.simulate.indication): 0 = rituximab at the
        # planned line and time; k > 0 = rituximab only after INCAT has risen by k points
        # since the first visit, rituximab_trigger_lag_years after that visit
        "rituximab_trigger_incat_rise": 0.0,
        "rituximab_trigger_lag_years": 0.25,
        "duration_mean_years": {
            "ivig": 2.0,
            "rituximab": 0.08,
            "corticosteroids": 0.6,
            "plasma_exchange": 0.15,
            "cyclophosphamide": 0.5,
            "chlorambucil": 0.8,
            "other": 0.5,
        },
    },
    "missing": {
        "age_at_onset": 0.0,
        "sex": 0.0,
        "pattern": 0.0,
        "anti_mag_titer_btu": 0.07,
        "sural_snap_uv": 0.04,
        "first_ncs_years": 0.02,
        "electrophysiology": 0.07,
        "incat": 0.0,
        "onls": 0.10,
        "mrs": 0.10,
        "irods": 0.40,
        "response_unknown": 0.05,
    },
    "progression": {
        "intercept": 5.5,
        "slope": 0.40,
        "site_level_sd": 0.5,
        "site_slope_sd": 0.05,
        "patient_sd": [3.4, 0.20],
        "patient_corr": 0.2,
        "rate_sural_reduced": 0.25,
        "beta_covariate": {
            "age_at_onset": 1.0,
            "log10_anti_mag_titer": 0.2,
            "pattern_cidp_like": 1.0,
            "pattern_axonal": 0.5,
        },
        "gamma_treatment": {
            "ivig": -0.08,
            "corticosteroids": 0.0,
            "plasma_exchange": -0.05,
            "cyclophosphamide": -0.10,
            "chlorambucil": -0.10,
            "other": 0.0,
        },
        "gamma_rituximab": -0.15,
        "gamma_rituximab_x_sural": DEFAULT_SURAL_RITUXIMAB_EFFECT,
        "gamma_later_line": 0.05,
        "cutpoints": {
            "incat": [0.5, 3.5, 6.5, 9.5, 12.5, 15.5, 18.5, 21.5, 24.5, 27.5],
            "onls": [0.0, 3.0, 5.5, 8.0, 10.5, 13.0, 15.5, 18.0, 20.5, 23.0, 25.5, 28.0],
            "mrs": [1.0, 10.0, 13.0, 19.0, 25.0, 32.0],
        },
        "irods_intercept": 2.0,
        "irods_slope": 0.2,
        "irods_precision": 30.0,
    },
    "worsening": {
        "baseline_hazard": [0.13, 0.13, 0.15, 0.16, 0.17, 0.18],
        "site_frailty_sd": 0.3,
        "beta_treatment": {
            "ivig": -0.10,
            "corticosteroids": 0.0,
            "plasma_exchange": -0.05,
            "cyclophosphamide": -0.15,
            "chlorambucil": -0.15,
            "other": 0.0,
        },
        "beta_rituximab": -0.20,
        "beta_rituximab_x_sural": HAZARD_PER_SLOPE * DEFAULT_SURAL_RITUXIMAB_EFFECT,
        "beta_covariate": {
            "age_at_onset": 0.25,
            "log10_anti_mag_titer": 0.05,
            "pattern_cidp_like": 0.25,
            "pattern_axonal": 0.15,
        },
    },
    "response": {
        "alpha_intercept": -0.3,
        "alpha_treatment": {
            "ivig": 0.0,
            "corticosteroids": -0.3,
            "plasma_exchange": 0.2,
            "cyclophosphamide": 0.0,
            "chlorambucil": 0.0,
            "other": 0.0,
        },
        "alpha_rituximab": 1.4,
        "alpha_rituximab_x_sural": RESPONSE_PER_SLOPE * DEFAULT_SURAL_RITUXIMAB_EFFECT,
        "alpha_later_line": -0.2,
        "beta_covariate": {
            "age_at_onset": -0.1,
            "log10_anti_mag_titer": 0.2,
            "pattern_cidp_like": 0.0,
            "pattern_axonal": -0.2,
        },
        "patient_sd": 0.7,
        "site_sd": 0.2,
        "cutpoints": [0.0, 1.8],
    },
    # end of follow-up (magbayes.simulate.dropout; only with end_of_follow_up=True):
    # death hazard h0(t) exp(death_alpha (eta(t) - disability_reference)), h0 Weibull in
    # years since onset with shape death_shape, scaled so that the probability of dying
    # between 5 and 6 years after onset is death_hazard at the reference disability;
    # loss to follow-up at lost_hazard per year times exp(lost_alpha (eta(t) - reference))
    "dropout": {
        "death_alpha": 0.2,
        "death_hazard": 0.02,
        "death_shape": 1.4,
        "disability_reference": 7.5,
        "lost_hazard": 0.02,
        "lost_alpha": 0.0,
        "interval_censored_share": 0.0,
    },
}

#: Names that depend on ``sural_rituximab_effect`` (section, name, scale).
INTERACTIONS: tuple[tuple[str, str, float], ...] = (
    ("progression", "gamma_rituximab_x_sural", 1.0),
    ("worsening", "beta_rituximab_x_sural", HAZARD_PER_SLOPE),
    ("response", "alpha_rituximab_x_sural", RESPONSE_PER_SLOPE),
)


def default_parameters() -> dict[str, dict[str, Any]]:
    """A fresh, deep copy of :data:`DEFAULTS`."""
    return copy.deepcopy(DEFAULTS)


def resolve_parameters(
    sural_rituximab_effect: float = DEFAULT_SURAL_RITUXIMAB_EFFECT,
    overrides: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The simulator's parameters: defaults, then the sural effect, then overrides.

    Parameters
    ----------
    sural_rituximab_effect : float
        ``gamma_rituximab_x_sural`` (latent logit per year). It also sets
        ``beta_rituximab_x_sural = HAZARD_PER_SLOPE * effect`` (log hazard ratio) and
        ``alpha_rituximab_x_sural = RESPONSE_PER_SLOPE * effect`` (log odds); ``0`` means
        no interaction anywhere. An explicit override of one of these three names wins.
    overrides : dict, optional
        Section dicts (``{"progression": {"slope": 0.8}}``) or names found in exactly one
        section (``{"slope": 0.8}``).

    Returns
    -------
    dict
        ``{section: {name: value}}``, validated.

    Raises
    ------
    ValueError
        For an unknown or ambiguous name, a value of the wrong shape, or invalid
        probabilities / cutpoints.
    """
    params = default_parameters()
    effect = float(sural_rituximab_effect)
    for section, name, scale in INTERACTIONS:
        params[section][name] = scale * effect
    for key, value in (overrides or {}).items():
        if key in params:
            if not isinstance(value, dict):
                raise ValueError(f"override {key!r} must be a dict of {key} parameters")
            for name, item in value.items():
                _set(params, key, name, item)
            continue
        sections = [s for s in params if key in params[s]]
        if not sections:
            known = sorted({n for s in params.values() for n in s} | set(params))
            raise ValueError(f"unknown simulator option {key!r}; known names: {', '.join(known)}")
        if len(sections) > 1:
            raise ValueError(
                f"simulator option {key!r} exists in sections {', '.join(sections)}: "
                f"give it as {sections[0]}={{{key!r}: ...}}"
            )
        _set(params, sections[0], key, value)
    _validate(params)
    return params


def _set(params: dict, section: str, name: str, value: Any) -> None:
    if name not in params[section]:
        raise ValueError(
            f"unknown {section} parameter {name!r}; known: {', '.join(params[section])}"
        )
    current = params[section][name]
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{section}.{name} must be a dict keyed by {', '.join(current)}")
        for label, item in value.items():
            if label not in current:
                # Nested dicts (cutpoints per score) hold lists, not numbers.
                raise ValueError(
                    f"{section}.{name} has no entry {label!r}; entries: {', '.join(current)}"
                )
            if isinstance(current[label], list):
                current[label] = _as_list(item, len(current[label]), f"{section}.{name}.{label}")
            else:
                current[label] = float(item)
    elif isinstance(current, list):
        params[section][name] = _as_list(value, len(current), f"{section}.{name}")
    else:
        params[section][name] = float(value)


def _as_list(value: Any, length: int, where: str) -> list[float]:
    values = [float(v) for v in value]
    if len(values) != length:
        raise ValueError(f"{where} needs {length} values, got {len(values)}")
    return values


def _validate(params: dict) -> None:
    for section, values in params.items():
        for name, value in values.items():
            if name.endswith("_probabilities"):
                total = sum(value.values())
                if any(v < 0 for v in value.values()) or abs(total - 1.0) > 1e-6:
                    raise ValueError(
                        f"{section}.{name} must be non-negative and sum to 1 (sum {total:g})"
                    )
    for name, fraction in params["missing"].items():
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"missing.{name} must be in [0, 1), not {fraction:g}")
    prog = params["progression"]
    for score, cuts in prog["cutpoints"].items():
        if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
            raise ValueError(f"progression.cutpoints.{score} must be strictly increasing")
    resp_cuts = params["response"]["cutpoints"]
    if resp_cuts[1] <= resp_cuts[0]:
        raise ValueError("response.cutpoints must be increasing: [c_partial, c_good]")
    if not -1.0 < prog["patient_corr"] < 1.0:
        raise ValueError("progression.patient_corr must be in (-1, 1)")
    if any(h < 0 for h in params["worsening"]["baseline_hazard"]):
        raise ValueError("worsening.baseline_hazard must be non-negative (per year)")
    for section, name in (
        ("progression", "site_level_sd"),
        ("progression", "site_slope_sd"),
        ("progression", "irods_precision"),
        ("worsening", "site_frailty_sd"),
        ("response", "patient_sd"),
        ("response", "site_sd"),
    ):
        if params[section][name] < 0:
            raise ValueError(f"{section}.{name} must be non-negative")
    for name in ("rituximab_trigger_incat_rise", "rituximab_trigger_lag_years"):
        if params["treatments"][name] < 0:
            raise ValueError(f"treatments.{name} must be non-negative")
    if any(sd < 0 for sd in prog["patient_sd"]):
        raise ValueError("progression.patient_sd must be non-negative")
    dropout = params["dropout"]
    if not 0.0 < dropout["death_hazard"] < 1.0:
        raise ValueError(
            "dropout.death_hazard (annual mortality 5 to 6 years after onset) must be in "
            f"(0, 1), not {dropout['death_hazard']:g}"
        )
    if not dropout["death_shape"] > 0:
        raise ValueError("dropout.death_shape must be positive")
    if dropout["lost_hazard"] < 0:
        raise ValueError("dropout.lost_hazard must be non-negative (per year)")
    if not 0.0 <= dropout["interval_censored_share"] <= 1.0:
        raise ValueError("dropout.interval_censored_share must be in [0, 1]")
