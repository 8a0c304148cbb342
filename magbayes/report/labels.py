"""Clinician-readable names of a fit's effects, scores and outcome variable.

The figures and tables of a report name parameters the way a paper would ("rituximab,
sural-preserved: change in progression rate") rather than by their PyMC names, and state
their units. This module is the one place that knows those names, per model; a model it
does not know falls back to its PyMC variable names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import xarray as xr

from magbayes.cohort.tables import SCORES
from magbayes.models import get_model_module

if TYPE_CHECKING:
    from magbayes.fit import FitResult

#: Printed names of the disability scores, with their range.
SCORE_NAMES: dict[str, str] = {
    "incat": "INCAT disability score",
    "onls": "ONLS",
    "mrs": "modified Rankin scale",
    "irods": "I-RODS centile",
}

#: Printed names of treatments.
TREATMENT_NAMES: dict[str, str] = {
    "ivig": "IVIg",
    "rituximab": "rituximab",
    "corticosteroids": "corticosteroids",
    "plasma_exchange": "plasma exchange",
    "cyclophosphamide": "cyclophosphamide",
    "chlorambucil": "chlorambucil",
    "other": "other treatment",
}

#: Printed names of the usual covariates (other columns print as they are named).
COVARIATE_NAMES: dict[str, str] = {
    "age_at_onset": "age at onset",
    "log10_anti_mag_titer": "anti-MAG titre (log10 BTU)",
    "pattern_cidp_like": "CIDP-like pattern",
    "pattern_axonal": "axonal pattern",
    "sex_male": "male sex",
    "median_dml_ms": "median distal motor latency",
    "tli_median": "median terminal latency index",
    "median_mcv_ms": "median motor conduction velocity",
    "peroneal_cmap_mv": "peroneal CMAP amplitude",
}

#: What the population-level parameters that are not effects mean (by variable name).
PARAMETER_MEANINGS: dict[str, str] = {
    # progression
    "slope": "mean progression rate, untreated, sural-preserved [latent logit per year]",
    "patient_sd": "between-patient sd of the level and of the rate",
    "patient_corr": "correlation of patients' level and rate",
    "site_level": "site offset of the level",
    "site_level_sd": "sd of the site offsets of the level",
    "site_slope": "site offset of the rate",
    "site_slope_sd": "sd of the site offsets of the rate",
    "cutpoints": "ordered cutpoints between adjacent score values (latent scale)",
    "irods_precision": "precision of the Beta likelihood (I-RODS)",
    "sural_reduced_prevalence": "share of patients with early sural reduction",
    # worsening
    "baseline_log_hazard": "log baseline hazard of each time piece (per year)",
    "weibull_shape": "Weibull shape of the baseline hazard",
    "weibull_log_scale": "log Weibull scale of the baseline hazard (years)",
    "site_log_frailty": "site log frailty",
    "site_log_frailty_sd": "sd of the site log frailties",
    "site_log_frailty_vs_reference": "site log hazard ratio against the reference site",
    # response
    "alpha_intercept": "log-odds of a good response to the reference treatment",
    "site_effect": "site offset (log-odds)",
    "site_effect_sd": "sd of the site offsets",
}

#: Observed variables that are not the outcome (the known early-sural statuses, which
#: only inform the prevalence used to marginalise unknown statuses).
AUXILIARY_OBSERVED = ("sural_reduced_observed",)


@dataclass(frozen=True)
class Effect:
    """One effect as a report shows it.

    Attributes
    ----------
    label : str
        Readable name with its unit group (``"IVIg: change in rate"``).
    variable : str
        PyMC variable name.
    coords : dict
        Selection of one element of a vector variable (``{"treatment": "ivig"}``).
    unit : str
        What one unit of the effect is (``"latent INCAT logit per year"``).
    """

    label: str
    variable: str
    coords: dict
    unit: str

    def draws(self, dataset: xr.Dataset) -> xr.DataArray:
        """Draws of this effect from a posterior (or prior) dataset."""
        return dataset[self.variable].sel(self.coords, drop=True)


def score_name(spec_or_score: object) -> str:
    """The modelled score's short name in capitals (``"INCAT"``, ``"I-RODS"``)."""
    score = _score_of(spec_or_score)
    return {"irods": "I-RODS", "mrs": "mRS"}.get(score, score.upper())


def score_axis_label(spec_or_score: object) -> str:
    """Axis label of a score with its range (``"INCAT disability score (0-10)"``)."""
    score = _score_of(spec_or_score)
    low, high, _ = SCORES.get(score, (0, 0, True))
    name = SCORE_NAMES.get(score, score)
    higher = "higher = less disability" if score == "irods" else "higher = more disability"
    return f"{name} ({low:g}–{high:g}; {higher})"


def _score_of(spec_or_score: object) -> str:
    if isinstance(spec_or_score, str):
        return spec_or_score
    section = getattr(spec_or_score, "section", None)
    if section is None:
        return "incat"
    return str(section("outcome").get("score", "incat"))


def covariate_label(name: str, standardisation: dict[str, dict[str, float]]) -> str:
    """A covariate's name with what one unit of its coefficient means."""
    printed = COVARIATE_NAMES.get(name, name.replace("_", " "))
    scale = standardisation.get(name)
    if scale and not (scale.get("mean") == 0.0 and scale.get("sd") == 1.0):
        return f"{printed} (per sd {scale['sd']:.3g})"
    return f"{printed} (yes vs no)"


def outcome_variable(model: str, tree: xr.DataTree) -> str:
    """Name of the observed outcome variable (``score``, ``worsening``, ``response``).

    The model module's ``LOG_LIKELIHOOD_VAR`` (or ``OUTCOME_VAR``) when it declares one,
    else the first log-likelihood variable that is not an auxiliary observation.
    """
    module = get_model_module(model)
    for attr in ("OUTCOME_VAR", "LOG_LIKELIHOOD_VAR"):
        name = getattr(module, attr, None)
        if name:
            return str(name)
    for group in ("log_likelihood", "observed_data", "posterior_predictive", "prior_predictive"):
        if group in tree.children:
            names = [v for v in tree[group].data_vars if v not in AUXILIARY_OBSERVED]
            if names:
                return str(names[0])
    raise ValueError(f"no observed outcome variable found in the {model!r} fit")


def effects(result: FitResult) -> list[Effect]:
    """The treatment, early-sural and covariate effects of a fit, readable, in order.

    Parameters
    ----------
    result : FitResult
        A fit (its posterior variables decide which effects exist).

    Returns
    -------
    list of Effect
        The headline contrast first, then the other rituximab, treatment and early-sural
        effects, then covariates. Intercepts, scales, cutpoints and site offsets are
        not effects and are left to the summary table.
    """
    post = result.posterior["posterior"]
    builder = _EFFECT_BUILDERS.get(result.model, _generic_effects)
    names = set(post.data_vars)
    dataset = post.to_dataset()
    out = []
    for effect in builder(post, result):
        if effect.variable not in names:
            continue
        if float(effect.draws(dataset).std()) == 0.0:
            continue  # a reference level fixed at 0 is not an estimate
        out.append(effect)
    return out


def _vector(post: xr.DataTree, variable: str, dim: str, label, unit: str) -> list[Effect]:
    if variable not in post.data_vars or dim not in post[variable].dims:
        return []
    return [Effect(label(str(name)), variable, {dim: name}, unit) for name in post[dim].values]


def _progression_effects(post: xr.DataTree, result: FitResult) -> list[Effect]:
    score, standardisation = score_name(result.spec), result.standardisation
    rate = f"latent {score} logit per year"
    level = f"latent {score} logit"
    out = [
        Effect("rituximab × early sural reduction [rate]", "gamma_rituximab_x_sural", {}, rate),
        Effect("rituximab, sural-preserved [rate]", "gamma_rituximab", {}, rate),
        Effect("early sural reduction, untreated [rate]", "rate_sural_reduced", {}, rate),
        Effect("course in line ≥ 2 [rate]", "gamma_later_line", {}, rate),
    ]
    out += _vector(
        post, "gamma_treatment", "treatment", lambda t: f"{TREATMENT_NAMES.get(t, t)} [rate]", rate
    )
    out.append(Effect("rituximab, sural-preserved [level step]", "delta_rituximab", {}, level))
    out += _vector(
        post,
        "delta_treatment",
        "treatment",
        lambda t: f"{TREATMENT_NAMES.get(t, t)} [level step]",
        level,
    )
    out += _vector(
        post,
        "beta_covariate",
        "covariate",
        lambda c: f"{covariate_label(c, standardisation)} [level]",
        level,
    )
    return out


def _worsening_effects(post: xr.DataTree, result: FitResult) -> list[Effect]:
    score, standardisation = score_name(result.spec), result.standardisation
    unit = f"log hazard ratio of confirmed {score} worsening"
    out = [
        Effect("rituximab × early sural reduction", "beta_rituximab_x_sural", {}, unit),
        Effect("rituximab, sural-preserved", "beta_rituximab", {}, unit),
        Effect("early sural reduction, without rituximab", "beta_sural_reduced", {}, unit),
        Effect("course in line ≥ 2", "beta_later_line", {}, unit),
    ]
    out += _vector(post, "beta_treatment", "treatment", lambda t: TREATMENT_NAMES.get(t, t), unit)
    out += _vector(
        post, "beta_covariate", "covariate", lambda c: covariate_label(c, standardisation), unit
    )
    return out


def _response_effects(post: xr.DataTree, result: FitResult) -> list[Effect]:
    standardisation = result.standardisation
    reference = result.spec.section("treatments").get("reference")
    versus = f"vs {TREATMENT_NAMES.get(reference, reference)}" if reference else "vs reference"
    unit = "log-odds of a good response"
    out = [
        Effect("rituximab × early sural reduction", "alpha_rituximab_x_sural", {}, unit),
        Effect("rituximab, sural-preserved", "alpha_rituximab", {}, unit),
        Effect("course in line ≥ 2", "alpha_later_line", {}, unit),
    ]
    out += _vector(
        post,
        "alpha_treatment",
        "treatment",
        lambda t: f"{TREATMENT_NAMES.get(t, t)} ({versus})",
        unit,
    )
    out += _vector(
        post, "beta_covariate", "covariate", lambda c: covariate_label(c, standardisation), unit
    )
    return out


def _generic_effects(post: xr.DataTree, result: FitResult) -> list[Effect]:
    out: list[Effect] = []
    for name, var in post.data_vars.items():
        if not str(name).startswith(("gamma_", "beta_", "alpha_", "delta_")):
            continue
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        if not extra:
            out.append(Effect(str(name), str(name), {}, "model scale"))
        elif len(extra) == 1:
            out += _vector(post, str(name), extra[0], lambda x, n=name: f"{n}[{x}]", "model scale")
    return out


_EFFECT_BUILDERS = {
    "progression": _progression_effects,
    "worsening": _worsening_effects,
    "response": _response_effects,
}
