"""Response model: the clinician's rating of each treatment course.

The published study compared electrophysiology at onset between good and poor responders
to each treatment. Its Bayesian counterpart is a hierarchical logistic model of the
rating of each course (``response`` in treatments.csv)::

    eta[c] = alpha_intercept                                  (logistic only)
           + alpha_treatment[treatment[c]]                   (reference: 0)
           + rituximab[c] * (alpha_rituximab_mean
                             + alpha_rituximab_x_sural * (sural_reduced[patient[c]] - 1/2))
           + later_line[c] * alpha_later_line
           + covariates[patient[c]] @ beta_covariate
           + patient_effect[patient[c]] + site_effect[site[c]]

so that rituximab's effect is ``alpha_rituximab = alpha_rituximab_mean -
alpha_rituximab_x_sural / 2`` in sural-preserved patients and ``alpha_rituximab +
alpha_rituximab_x_sural`` in sural-reduced ones, both with the same prior; with
``good ~ Bernoulli(logistic(eta))`` (``likelihood = "logistic"``; ``partial`` counted
as a failure or a success as the spec says) or ``rating ~ OrderedLogistic(eta, cutpoints)``
over none < partial < good (``likelihood = "ordered_logistic"``).

The likelihood is written per patient (all of a patient's rated courses together) so that
an unknown early-sural status can be summed out (:func:`magbayes.models.blocks.mix_over_sural`)
and the ``log_likelihood`` group has one value per patient (leave-one-patient-out LOO).
Courses rated ``unknown`` or not rated are left out of the likelihood and counted; they are
never counted as failures. See ``docs/models/response.md``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.special import expit

from magbayes.cohort.tables import TREATMENTS, Cohort
from magbayes.errors import CohortError, Problem, SpecError
from magbayes.labels import Effect, covariate_effects, treatment_name, vector_effects
from magbayes.models.base import (
    Design,
    Headline,
    ModelDefinition,
    prior_names,
    shipped_defaults,
    spec_rules,
)
from magbayes.models.blocks import (
    SITE_POOLING,
    covariate_design,
    imputed_covariates,
    missing_covariate_labels,
    mix_over_sural,
    rituximab_by_sural_status,
    site_effect,
    site_index,
    sural_prevalence,
    sural_status,
    treatment_names,
    usable_covariates,
)
from magbayes.models.scores import LIKELIHOOD_WORDS
from magbayes.spec import Spec, deep_merge
from magbayes.spec_schema import check_spec, list_of, one_of, positive

NAME = "response"

#: Every key of the spec with its default: the spec file ``models/response.toml``.
DEFAULTS: dict[str, Any] = shipped_defaults(NAME)

LIKELIHOODS = ("logistic", "ordered_logistic")
PARTIAL_AS = ("failure", "success")
#: Treatments a spec may name (rituximab has its own effect: never the reference).
OTHER_TREATMENTS = tuple(t for t in TREATMENTS if t != "rituximab")

#: What each key of a spec accepts beyond the type of its default (the shared tables'
#: rules come from :func:`magbayes.models.base.spec_rules`); every prior is a positive scale.
OWN_RULES: dict[str, dict[str, Any]] = {
    "outcome": {"likelihood": one_of(*LIKELIHOODS), "partial": one_of(*PARTIAL_AS)},
    "treatments": {
        "modelled": list_of(one_of(*TREATMENTS), non_empty=False),
        "reference": one_of(*OTHER_TREATMENTS),
    },
    "sites": {"pooling": one_of(*SITE_POOLING)},
    "priors": {key: positive() for key in prior_names(DEFAULTS)},
}
SPEC_RULES = spec_rules(DEFAULTS, OWN_RULES)

HEADLINE = Headline(
    question="Does early sural reduction predict a good response to rituximab?",
    contrast_var="alpha_rituximab_x_sural",
    main_var="alpha_rituximab",
    benefit_sign=+1,
    scale=(
        "difference in log-odds of a good response to rituximab, "
        "sural-reduced minus sural-preserved"
    ),
)

#: Variables whose posteriors the summary lists (scalars and labelled vectors). The free
#: ``alpha_treatment_vs_reference`` rather than ``alpha_treatment``, whose reference element
#: is a constant 0 (no R-hat, and a meaningless rank in SBC).
SUMMARY_VARS = [
    "alpha_intercept",
    "alpha_treatment_vs_reference",
    "alpha_rituximab_mean",
    "alpha_rituximab",
    "alpha_rituximab_x_sural",
    "alpha_later_line",
    "beta_covariate",
    "patient_sd",
    "site_effect",
    "site_effect_sd",
    "cutpoints",
    "sural_reduced_prevalence",
]

#: The observed variable; its ``log_likelihood`` has one value per rated patient.
LOG_LIKELIHOOD_VAR = "response"

#: Rating codes of the ordered scale (``ordered_logistic``).
ORDINAL_CODES = {"none": 0, "partial": 1, "good": 2}
#: Cutpoint labels of the ordered scale (dimension ``response_cut``).
CUT_LABELS = ["none|partial", "partial|good"]
#: Value of an empty cell of the (patient, course slot) rating matrix.
NO_COURSE = -1


# --------------------------------------------------------------------------- spec


def settings(spec: Spec | dict) -> dict[str, Any]:
    """The spec with this model's defaults filled in, checked.

    Parameters
    ----------
    spec : Spec or dict
        A resolved spec (or its ``data`` dict).

    Returns
    -------
    dict
        ``DEFAULTS`` merged under the spec.

    Raises
    ------
    SpecError
        For a value this model does not understand (never silently ignored).
    """
    data = spec.data if isinstance(spec, Spec) else dict(spec)
    s = deep_merge(DEFAULTS, data)
    source = spec.path if isinstance(spec, Spec) and spec.path else f"{NAME} spec"
    check_spec(NAME, s, source)
    return s


def rating_code(response: str, likelihood: str, partial: str) -> int:
    """Code of a known rating: 0/1 (not good / good) or 0/1/2 (none / partial / good).

    Parameters
    ----------
    response : {"good", "partial", "none"}
        The clinician's rating.
    likelihood : {"logistic", "ordered_logistic"}
        Outcome scale.
    partial : {"failure", "success"}
        With ``logistic``: what a partial response counts as.
    """
    if likelihood == "ordered_logistic":
        return ORDINAL_CODES[response]
    if response == "partial":
        return int(partial == "success")
    return int(response == "good")


def rating_codes_text(likelihood: str, partial: str) -> str:
    """What the rating codes of ``response`` mean, in words."""
    if likelihood == "ordered_logistic":
        return "0 = none, 1 = partial, 2 = good"
    if partial == "success":
        return "1 = good or partial, 0 = none"
    return "1 = good, 0 = partial or none"


# --------------------------------------------------------------------------- design


def _normalised_response(treatments: pd.DataFrame) -> pd.Series:
    """Rating per course, lower case, ``"missing"`` where empty; bad values are errors."""
    raw = treatments["response"].astype("string").str.strip().str.lower()
    raw = raw.fillna("missing").replace("", "missing")
    allowed = {"good", "partial", "none", "unknown", "missing"}
    bad = ~raw.isin(allowed)
    if bad.any():
        problems = [
            Problem(
                file="treatments.csv",
                row=int(row),
                column="response",
                value=str(value),
                expected="good, partial, none, unknown or empty",
            )
            for row, value in zip(
                treatments.loc[bad, "source_row"], treatments.loc[bad, "response"], strict=True
            )
        ]
        raise CohortError(problems)
    return raw


def _exclude_unknown_sural(cohort: Cohort) -> tuple[Cohort, int, int]:
    """Cohort without the patients whose early-sural status is unknown, and counts."""
    known, _ = sural_status(cohort)
    keep_ids = set(np.asarray(cohort.patient_ids)[known])
    dropped_courses = int((~cohort.treatments["patient_id"].isin(keep_ids)).sum())
    kept = replace(
        cohort,
        patients=cohort.patients.loc[known],
        visits=cohort.visits[cohort.visits["patient_id"].isin(keep_ids)],
        treatments=cohort.treatments[cohort.treatments["patient_id"].isin(keep_ids)],
    )
    return kept, int((~known).sum()), dropped_courses


def make_design(cohort: Cohort, spec: Spec | dict) -> Design:
    """Rated treatment courses, patients, covariates and early-sural status as arrays.

    Parameters
    ----------
    cohort : Cohort
        The cohort (its early-sural definition is replaced by the spec's when they differ).
    spec : Spec or dict
        The response spec.

    Returns
    -------
    Design
        Coordinates ``patient`` (every patient of the cohort), ``site``, ``treatment``
        (the reference first, then the other modelled treatments with a rated course;
        rituximab has its own variables), ``covariate``, ``missing_covariate`` (when any
        value is missing), ``course`` (rated courses, labelled ``"<patient> row <n>"``
        after their row in treatments.csv), ``patient_rated`` (patients with a rated
        course), ``course_slot`` (1st, 2nd, ... rated course of a patient, by start time)
        and, with ``ordered_logistic``, ``response_cut``. ``counts`` says how many
        courses were left out and why.

    Raises
    ------
    SpecError
        When no course has a known rating, or a covariate is unusable.
    """
    s = settings(spec)
    outcome, sural_spec, tr_spec = s["outcome"], s["early_sural"], s["treatments"]
    likelihood, partial = outcome["likelihood"], outcome["partial"]

    threshold, window = float(sural_spec["threshold_uv"]), float(sural_spec["window_years"])
    if (cohort.sural_threshold_uv, cohort.sural_window_years) != (threshold, window):
        cohort = cohort.with_sural_definition(threshold, window)

    counts: dict[str, Any] = {}
    if sural_spec["missing"] == "exclude":
        cohort, n_pat, n_courses = _exclude_unknown_sural(cohort)
        counts["patients_excluded_sural_unknown"] = n_pat
        counts["courses_excluded_sural_unknown"] = n_courses

    patient_ids = cohort.patient_ids
    patient_pos = {pid: i for i, pid in enumerate(patient_ids)}
    site_idx, sites = site_index(cohort)
    known, reduced = sural_status(cohort)

    tr = cohort.treatments.copy()
    tr["rating"] = _normalised_response(tr)
    modelled = list(tr_spec["modelled"])
    is_rituximab = tr["treatment"].eq("rituximab")
    is_modelled = is_rituximab | tr["treatment"].isin(modelled)
    rated = tr["rating"].isin(["good", "partial", "none"])

    counts["patients"] = len(patient_ids)
    counts["sites"] = len(sites)
    counts["courses"] = len(tr)
    counts["courses_left_out_response_unknown"] = int((tr["rating"] == "unknown").sum())
    counts["courses_left_out_response_missing"] = int((tr["rating"] == "missing").sum())
    counts["courses_left_out_treatment_not_modelled"] = int((rated & ~is_modelled).sum())

    courses = tr[rated & is_modelled].copy()
    if courses.empty:
        raise SpecError(
            "no treatment course has a known rating (good, partial or none) for a modelled "
            "treatment: the response model has nothing to fit"
        )
    reference = tr_spec["reference"]
    present = set(courses["treatment"])
    others = [t for t in treatment_names(cohort, modelled) if t in present and t != reference]
    treatments = [reference, *others]
    treatment_pos = {t: i for i, t in enumerate(treatments)}

    courses["patient_index"] = courses["patient_id"].map(patient_pos).astype(int)
    courses["course_label"] = [
        f"{pid} row {int(row)}"
        for pid, row in zip(courses["patient_id"], courses["source_row"], strict=True)
    ]
    course_rituximab = courses["treatment"].eq("rituximab").to_numpy(int)
    course_treatment = np.array(
        [treatment_pos.get(t, NO_COURSE) for t in courses["treatment"]], dtype=int
    )
    course_later_line = (courses["line"].to_numpy(int) >= 2).astype(int)
    course_rating = np.array(
        [rating_code(r, likelihood, partial) for r in courses["rating"]], dtype=int
    )
    course_patient = courses["patient_index"].to_numpy(int)

    # (patient_rated, course_slot) layout: a patient's rated courses in start order.
    rated_patients = sorted(set(course_patient))
    rated_pos = {p: i for i, p in enumerate(rated_patients)}
    slot_of = courses.groupby("patient_index").cumcount().to_numpy(int)
    n_slots = int(slot_of.max()) + 1
    slot_course = np.full((len(rated_patients), n_slots), NO_COURSE, dtype=int)
    slot_course[[rated_pos[p] for p in course_patient], slot_of] = np.arange(len(courses))
    rating_matrix = np.where(slot_course >= 0, course_rating[slot_course], NO_COURSE)

    resolved = (
        Spec(NAME, s, path=spec.path, is_builtin=spec.is_builtin)
        if isinstance(spec, Spec)
        else Spec(NAME, s)
    )
    names, left_out = usable_covariates(cohort, resolved)
    cov_values, standardisation, binary = covariate_design(cohort, names)
    missing_labels = missing_covariate_labels(cov_values, patient_ids, names)

    coords: dict[str, list] = {
        "patient": list(patient_ids),
        "site": list(sites),
        "treatment": treatments,
        "covariate": names,
        "course": courses["course_label"].tolist(),
        "patient_rated": [patient_ids[p] for p in rated_patients],
        "course_slot": list(range(1, n_slots + 1)),
    }
    if missing_labels:
        coords["missing_covariate"] = missing_labels
    if likelihood == "ordered_logistic":
        coords["response_cut"] = list(CUT_LABELS)

    data = {
        "covariate_value": cov_values,
        "covariate_binary": np.array([binary[n] for n in names], dtype=bool),
        "patient_site": site_idx,
        "sural_known": known.astype(int),
        "sural_reduced": reduced.astype(int),
        "course_patient": course_patient,
        "course_site": site_idx[course_patient],
        "course_treatment": course_treatment,
        "course_rituximab": course_rituximab,
        "course_later_line": course_later_line,
        "course_line": courses["line"].to_numpy(int),
        "course_rating": course_rating,
        "rated_patient": np.asarray(rated_patients, dtype=int),
        "slot_course": slot_course,
        "response": rating_matrix,
    }
    dims = {
        "covariate_value": ("patient", "covariate"),
        "covariate_binary": ("covariate",),
        "patient_site": ("patient",),
        "sural_known": ("patient",),
        "sural_reduced": ("patient",),
        "course_patient": ("course",),
        "course_site": ("course",),
        "course_treatment": ("course",),
        "course_rituximab": ("course",),
        "course_later_line": ("course",),
        "course_line": ("course",),
        "course_rating": ("course",),
        "rated_patient": ("patient_rated",),
        "slot_course": ("patient_rated", "course_slot"),
    }

    ratings = courses["rating"].value_counts()
    rit_patients = course_patient[course_rituximab == 1]
    rated_known = known[rated_patients]
    counts.update(
        {
            "courses_rated": len(courses),
            "courses_rated_good": int(ratings.get("good", 0)),
            "courses_rated_partial": int(ratings.get("partial", 0)),
            "courses_rated_none": int(ratings.get("none", 0)),
            "partial_counted_as": (
                "middle category (ordered_logistic)"
                if likelihood == "ordered_logistic"
                else partial
            ),
            "rating_codes": rating_codes_text(likelihood, partial),
            "patients_with_rated_course": len(rated_patients),
            "reference_treatment": reference,
            "reference_courses_rated": int((courses["treatment"] == reference).sum()),
            "rituximab_courses_rated": int(course_rituximab.sum()),
            "rituximab_courses_sural_reduced": int((known & (reduced == 1))[rit_patients].sum()),
            "rituximab_courses_sural_preserved": int((known & (reduced == 0))[rit_patients].sum()),
            "rituximab_courses_sural_unknown": int((~known[rit_patients]).sum()),
            "patients_rated_sural_unknown_marginalised": int((~rated_known).sum()),
            "covariate_values_imputed": len(missing_labels),
        }
    )
    return Design(
        model=NAME,
        coords=coords,
        data=data,
        dims=dims,
        counts=counts,
        standardisation=standardisation,
        left_out_covariates=[c.as_dict() for c in left_out],
    )


# --------------------------------------------------------------------------- likelihood


def course_logp(
    rating: pt.TensorVariable,
    eta: pt.TensorVariable,
    cutpoints: pt.TensorVariable | None = None,
) -> pt.TensorVariable:
    """Log-probability of each rating (same shape as ``eta``).

    Parameters
    ----------
    rating : pytensor.tensor.TensorVariable
        0/1 (logistic) or 0/1/2 (ordered), any shape; must be a valid code (clip padding
        before calling).
    eta : pytensor.tensor.TensorVariable
        Linear predictor (log-odds of a good response for ``logistic``).
    cutpoints : pytensor.tensor.TensorVariable, optional
        Ordered cutpoints ``[none|partial, partial|good]`` for the ordered scale.
    """
    if cutpoints is None:
        return pm.logp(pm.Bernoulli.dist(logit_p=eta), rating)
    dist = pm.OrderedLogistic.dist(eta=eta, cutpoints=cutpoints, compute_p=False)
    return pm.logp(dist, rating)


def draw_ratings(
    eta: np.ndarray, cutpoints: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Draw a rating code for each cell given ``eta`` (numpy; posterior predictive)."""
    u = rng.random(np.shape(eta))
    if cutpoints is None:
        return (u < expit(eta)).astype(np.int64)
    cut = np.asarray(cutpoints)
    at_least = expit(eta[..., None] - cut)  # P(rating >= partial), P(rating >= good)
    return (u[..., None] < at_least).sum(axis=-1).astype(np.int64)


def _patient_likelihood(ordinal: bool):
    """``logp`` and ``random`` of the per-patient rating distribution (a ``CustomDist``).

    The value is the (patient_rated, course_slot) matrix of rating codes, ``NO_COURSE``
    where a patient has fewer courses. Inputs: the linear predictor if the patient is
    sural-reduced and if preserved (same shape), which cells hold a course (``filled``,
    same shape), whether each rated patient's early-sural status is known and reduced
    (per patient), the early-sural prevalence, and (ordered scale) the cutpoints. The
    design's arrays are inputs, not constants, so that one compiled model serves every
    cohort of the same structure (:mod:`magbayes.compile_cache`).
    """

    def logp(value, eta_reduced, eta_preserved, filled, known, reduced, prevalence, *cut):
        cutpoints = cut[0] if ordinal else None
        present = pt.ge(value, 0)
        code = pt.maximum(value, 0)

        def total(eta):
            cell = course_logp(code, eta, cutpoints)
            return pt.switch(present, cell, 0.0).sum(axis=-1)

        return mix_over_sural(total(eta_reduced), total(eta_preserved), known, reduced, prevalence)

    def random(
        eta_reduced, eta_preserved, filled, known, reduced, prevalence, *cut, rng=None, size=None
    ):
        cutpoints = cut[0] if ordinal else None
        eta_reduced, eta_preserved = np.asarray(eta_reduced), np.asarray(eta_preserved)
        batch = tuple(size) if size is not None else eta_reduced.shape[:-1]
        shape = batch + eta_reduced.shape[-1:]
        eta_reduced = np.broadcast_to(eta_reduced, shape)
        eta_preserved = np.broadcast_to(eta_preserved, shape)
        drawn = rng.random(shape[:-1]) < prevalence
        status = np.where(np.asarray(known, bool), np.asarray(reduced, bool), drawn)
        eta = np.where(status[..., None], eta_reduced, eta_preserved)
        ratings = draw_ratings(eta, cutpoints, rng)
        return np.where(np.broadcast_to(np.asarray(filled, bool), shape), ratings, NO_COURSE)

    return logp, random


# --------------------------------------------------------------------------- model


def build_model(design: Design, spec: Spec | dict) -> pm.Model:
    """The response model for a design.

    Parameters
    ----------
    design : Design
        From :func:`make_design`.
    spec : Spec or dict
        The response spec (priors, likelihood, site pooling).

    Returns
    -------
    pymc.Model
        Free variables (log-odds scale): ``alpha_intercept`` (logistic; with the ordered
        scale it is the deterministic ``-cutpoints[partial|good]``, the same quantity:
        log-odds of a good response to the reference treatment in line 1 for an average
        patient), ``alpha_treatment_vs_reference`` (``alpha_treatment`` holds the
        reference's 0 too), ``alpha_rituximab_mean`` (rituximab's effect averaged over
        the two early-sural groups), ``alpha_rituximab_x_sural`` (the sural-reduced
        group's effect minus the sural-preserved group's; the deterministic
        ``alpha_rituximab`` is the sural-preserved effect),
        ``alpha_later_line``, ``beta_covariate``, ``patient_z`` / ``patient_sd``
        (non-centred: ``patient_effect = patient_sd * patient_z``),
        ``site_effect`` and its scale, ``cutpoints`` (ordered scale),
        ``covariate_missing`` / ``covariate_missing_share`` (imputed covariates) and
        ``sural_reduced_prevalence`` (only when a rated patient's early-sural status is
        unknown). Observed: ``response`` (per rated patient) and, with the prevalence,
        ``sural_reduced_observed``.
    """
    s = settings(spec)
    priors, pooling = s["priors"], s["sites"]["pooling"]
    ordinal = s["outcome"]["likelihood"] == "ordered_logistic"
    d = design.data
    coords = {k: list(v) for k, v in design.coords.items()}

    rated = d["rated_patient"]
    known = d["sural_known"].astype(bool)
    reduced = d["sural_reduced"].astype(int)
    slot_course = d["slot_course"]
    filled = slot_course >= 0

    # Every array of the cohort is a ``pm.Data`` input of the compiled model rather than a
    # constant in it: one compiled model then serves every cohort of the same structure
    # (magbayes.compile_cache), and only the first fit of a spec compiles. The prior scales
    # are inputs too, so the refits of [priors.sensitivity] load that compiled model.
    with pm.Model(coords=coords) as model:
        sd = {key: pm.Data(f"prior_{key}", float(priors[key])) for key in prior_names(DEFAULTS)}
        course_patient = pm.Data("course_patient", d["course_patient"])
        covariates = imputed_covariates(
            d["covariate_value"], list(d["covariate_binary"]), as_data=True
        )
        beta = pm.Normal("beta_covariate", 0.0, sd["covariate_sd"], dims="covariate")

        patient_sd = pm.HalfNormal("patient_sd", sigma=sd["patient_sd"])
        patient_z = pm.Normal("patient_z", 0.0, 1.0, dims="patient")
        patient_effect = pm.Deterministic("patient_effect", patient_sd * patient_z, dims="patient")
        site = site_effect(
            "site_effect",
            pm.Data("course_site", d["course_site"]),
            pooling=pooling,
            scale=sd["site_sd"],
        )

        n_treatments = len(coords["treatment"])
        if n_treatments > 1:
            model.add_coord("treatment_vs_reference", coords["treatment"][1:])
            free = pm.Normal(
                "alpha_treatment_vs_reference",
                0.0,
                sd["treatment_sd"],
                dims="treatment_vs_reference",
            )
            alpha_treatment = pm.Deterministic(
                "alpha_treatment", pt.concatenate([pt.zeros(1), free]), dims="treatment"
            )
        else:
            alpha_treatment = pm.Deterministic("alpha_treatment", pt.zeros(1), dims="treatment")
        alpha_rituximab, alpha_interaction = rituximab_by_sural_status(
            "alpha", sd["rituximab_sd"], sd["interaction_sd"]
        )
        if s["treatments"]["later_line_effect"]:
            alpha_later_line = pm.Normal("alpha_later_line", 0.0, sd["later_line_sd"])
        else:
            alpha_later_line = pt.constant(0.0)

        cut_args: list = []
        if ordinal:
            centres = np.array([-0.5, 0.5])
            cutpoints = pm.Normal(
                "cutpoints",
                mu=centres,
                sigma=sd["cutpoint_sd"],
                # The initial point is the prior mean, already increasing: no initval
                # (a model with initval cannot be converted by pm.compute_log_likelihood).
                transform=pm.distributions.transforms.ordered,
                dims="response_cut",
            )
            pm.Deterministic("alpha_intercept", -cutpoints[-1])
            intercept = pt.constant(0.0)
            cut_args = [cutpoints]
        else:
            intercept = pm.Normal("alpha_intercept", 0.0, sd["intercept_sd"])

        # Rituximab courses index the appended 0 (their effect is alpha_rituximab).
        course_treatment = pm.Data("course_treatment", d["course_treatment"])
        treatment_shift = pt.concatenate([alpha_treatment, pt.zeros(1)])[course_treatment]
        rituximab = pm.Data("course_rituximab", d["course_rituximab"].astype(float))
        later_line = pm.Data("course_later_line", d["course_later_line"].astype(float))
        eta_preserved = (
            intercept
            + treatment_shift
            + rituximab * alpha_rituximab
            + later_line * alpha_later_line
            + pt.dot(covariates, beta)[course_patient]
            + patient_effect[course_patient]
            + site
        )
        eta_reduced = eta_preserved + rituximab * alpha_interaction

        needs_prevalence = s["early_sural"]["missing"] == "marginalise" and not known[rated].all()
        prevalence = (
            sural_prevalence(known, reduced, as_data=True) if needs_prevalence else pt.constant(0.5)
        )

        cells = pm.Data("slot_cell", np.where(filled, slot_course, 0))
        logp, random = _patient_likelihood(ordinal)
        pm.CustomDist(
            LOG_LIKELIHOOD_VAR,
            eta_reduced[cells],
            eta_preserved[cells],
            pm.Data("slot_filled", filled.astype(np.int8)),
            pm.Data("rated_sural_known", known[rated].astype(np.int8)),
            pm.Data("rated_sural_reduced", reduced[rated].astype(np.int8)),
            prevalence,
            *cut_args,
            logp=logp,
            random=random,
            signature="(s),(s),(s),(),(),(),(k)->(s)" if ordinal else "(s),(s),(s),(),(),()->(s)",
            observed=pm.Data("response_observed", d["response"]),
            dims=("patient_rated", "course_slot"),
            dtype="int64",
        )
    return model


# --------------------------------------------------------------------------- answers


def to_courses(ratings: xr.DataArray, design: Design) -> xr.DataArray:
    """Ratings laid out per patient and course slot, re-laid out one per rated course.

    Parameters
    ----------
    ratings : xarray.DataArray
        Dimensions ``patient_rated`` and ``course_slot`` (plus any sample dimensions).
    design : Design
        The design the ratings belong to.

    Returns
    -------
    xarray.DataArray
        Dimension ``course`` (labels ``"<patient> row <n>"``) instead of the two.
    """
    slot_course = design.data["slot_course"]
    rows, cols = np.nonzero(slot_course >= 0)
    order = np.argsort(slot_course[rows, cols])
    out = ratings.isel(
        patient_rated=xr.DataArray(rows[order], dims="course"),
        course_slot=xr.DataArray(cols[order], dims="course"),
    )
    out = out.drop_vars(["patient_rated", "course_slot"], errors="ignore")
    return out.assign_coords(course=design.coords["course"]).astype(np.int8)


def finalise(tree: xr.DataTree, design: Design) -> xr.DataTree:
    """Lay observed and predicted ratings out one per course (for predictive checks).

    The likelihood works on a (patient, course slot) matrix so that the log-likelihood is
    per patient; the saved ``observed_data`` and ``posterior_predictive`` ratings are
    re-laid out along ``course`` (the ``log_likelihood`` group keeps ``patient_rated``).
    """
    for group in ("observed_data", "posterior_predictive", "prior_predictive"):
        if group in tree.children and LOG_LIKELIHOOD_VAR in tree[group].data_vars:
            ds = tree[group].to_dataset()
            long = to_courses(ds[LOG_LIKELIHOOD_VAR], design)
            ds = ds.drop_vars(LOG_LIKELIHOOD_VAR).drop_dims(["course_slot"], errors="ignore")
            if "patient_rated" in ds.dims and not any(
                "patient_rated" in v.dims for v in ds.data_vars.values()
            ):
                ds = ds.drop_dims("patient_rated")
            long.attrs["codes"] = design.counts.get("rating_codes", "")
            tree[group] = xr.DataTree(ds.assign({LOG_LIKELIHOOD_VAR: long}))
    return tree


# --------------------------------------------------------------------------- words


def effects(result: Any) -> list[Effect]:
    """The response model's effects: rituximab, treatments against the reference, covariates."""
    post = result.posterior["posterior"]
    reference = result.spec.section("treatments").get("reference")
    versus = f"vs {treatment_name(reference)}" if reference else "vs reference"
    unit = "log-odds of a good response"
    out = [
        Effect("rituximab × early sural reduction", "alpha_rituximab_x_sural", {}, unit),
        Effect("rituximab, sural-preserved", "alpha_rituximab", {}, unit),
        Effect("course in line ≥ 2", "alpha_later_line", {}, unit),
    ]
    out += vector_effects(
        post, "alpha_treatment", "treatment", lambda t: f"{treatment_name(t)} ({versus})", unit
    )
    out += covariate_effects(post, result.standardisation, unit)
    return out


def outcome_words(result: Any) -> str:
    """The rating in words, with its codes (binary or ordered)."""
    observed = result.posterior["observed_data"][LOG_LIKELIHOOD_VAR].values
    if np.nanmax(observed) <= 1:
        if result.spec.section("outcome")["partial"] == "success":
            return "rating of a treatment course (1 = good or partial, 0 = none)"
        return "rating of a treatment course (1 = good response, 0 = partial or none)"
    return "rating of a treatment course (0 = none, 1 = partial, 2 = good)"


def methods_sentence(result: Any) -> str:
    """What the response model is, for the methods paragraph."""
    likelihood = str(
        result.design_counts.get("likelihood", result.spec.section("outcome").get("likelihood", ""))
    )
    return (
        "The clinician's rating of each treatment course was modelled with a Bayesian "
        f"hierarchical {LIKELIHOOD_WORDS.get(likelihood, likelihood)} regression with "
        "patient and site effects; rituximab's effect on the odds of a good response was "
        "allowed to differ with early sural reduction."
    )


DEFINITION = ModelDefinition(
    name=NAME,
    title="treatment response",
    defaults=DEFAULTS,
    own_rules=OWN_RULES,
    make_design=make_design,
    build_model=build_model,
    headline=HEADLINE,
    outcome_var=LOG_LIKELIHOOD_VAR,
    summary_vars=tuple(SUMMARY_VARS),
    parameter_meanings={
        "alpha_intercept": "log-odds of a good response to the reference treatment",
        "site_effect": "site offset (log-odds)",
        "site_effect_sd": "sd of the site offsets",
    },
    effects=effects,
    outcome_words=outcome_words,
    effect_units=lambda result: (
        "Units: log-odds of a good response (positive = more good responses)"
    ),
    methods_sentence=methods_sentence,
    benefit_words="chance of a good response as rated by the clinician",
    equations=__doc__,
    finalise=finalise,
)
