r"""Progression model: a disability score over years since onset.

For patient :math:`i` at site :math:`s(i)`, visit at :math:`t` years since onset, the latent
disability is

.. math::

    \eta_i(t) = \ell_i + r_i t + x_i^\top \beta
        + \sum_{k} \gamma_{\mathrm{trt}(k)}\,(t - t_k)_+
        + \gamma_{\mathrm{later}} \sum_{k:\ \mathrm{line}_k \ge 2} (t - t_k)_+

where the sums run over the patient's treatment courses :math:`k` started at
:math:`t_k` (so each course changes the *rate* from its start), and for rituximab
:math:`\gamma = \gamma_{\mathrm{rtx}} + \gamma_{\mathrm{rtx}\times\mathrm{sural}}\,
\mathrm{sural\_reduced}_i`. Patient level and rate are correlated and pooled towards their
site: :math:`\ell_i \sim N(\alpha + u_{s(i)}, \sigma_\ell)` and
:math:`r_i \mid \ell_i \sim N(\bar r + v_{s(i)} + \delta\,\mathrm{sural\_reduced}_i
+ \rho\,\sigma_r z_i, \sigma_r \sqrt{1-\rho^2})` with :math:`z_i = (\ell_i - \alpha -
u_{s(i)})/\sigma_\ell`, site offsets :math:`u, v` summing to zero. The score follows an
ordered logistic (integer scales; the cutpoint above the cohort's median score fixed at 0,
gaps between cutpoints Gamma-distributed) or a Beta (I-RODS centile) in :math:`\eta`. An
unknown early-sural status is summed out with the estimated prevalence. Higher :math:`\eta`
means more disability, so a *negative* :math:`\gamma` slows progression: the headline is
:math:`P(\gamma_{\mathrm{rtx}\times\mathrm{sural}} < 0)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from magbayes.cohort.tables import SCORES, TREATMENTS, Cohort
from magbayes.errors import SpecError
from magbayes.labels import Effect, covariate_effects, score_name, treatment_name, vector_effects
from magbayes.models import blocks, scores
from magbayes.models.base import (
    Design,
    Headline,
    ModelDefinition,
    ModelFigure,
    prior_names,
    shipped_defaults,
    spec_rules,
)
from magbayes.models.progression import predictions
from magbayes.models.progression.figures import plot_patient, plot_timing
from magbayes.spec import Spec
from magbayes.spec_schema import list_of, one_of, positive

NAME = "progression"

#: Every key of the spec with its default: the spec file ``models/progression.toml``.
DEFAULTS: dict[str, Any] = shipped_defaults(NAME)

#: ``[patients] parametrisation`` options (:func:`_patient_parametrisation`).
PATIENT_PARAMETRISATIONS = ("auto", "partial", "centred", "over_visits", "non_centred")

#: How each resolved ``[patients] parametrisation`` is said in the terminal and the report.
PATIENT_COORDINATES_IN_WORDS = {
    "partial": "level partly centred, rate non-centred",
    "centred": "centred over the visits, rates non-centred",
    "over_visits": "centred over the visits, rates too",
    "non_centred": "non-centred",
}

#: ``[sites] parametrisation`` options (:func:`_site_parametrisation`).
SITE_PARAMETRISATIONS = (*blocks.SITE_PARAMETRISATIONS, "partial")

#: What each key of a spec accepts beyond the type of its default (the shared tables'
#: rules come from :func:`magbayes.models.base.spec_rules`); every prior is a positive scale.
OWN_RULES: dict[str, dict[str, Any]] = {
    "outcome": {
        "score": one_of(*SCORES),
        "likelihood": one_of("auto", *scores.LIKELIHOODS),
    },
    "treatments": {
        "modelled": list_of(one_of(*TREATMENTS), non_empty=False),
    },
    "sites": {
        "pooling": one_of(*blocks.SITE_POOLING),
        "parametrisation": one_of(*SITE_PARAMETRISATIONS),
    },
    "patients": {"parametrisation": one_of(*PATIENT_PARAMETRISATIONS)},
    "priors": {key: positive() for key in prior_names(DEFAULTS)},
}
SPEC_RULES = spec_rules(DEFAULTS, OWN_RULES)

HEADLINE = Headline(
    question=(
        "Does early sural reduction predict a larger slowing of disability progression "
        "after rituximab?"
    ),
    contrast_var="gamma_rituximab_x_sural",
    main_var="gamma_rituximab",
    benefit_sign=-1,
    scale=(
        "difference in the change of progression rate after rituximab start, sural-reduced "
        "minus sural-preserved, in latent {score} units per year (negative = slower "
        "progression = more benefit)"
    ),
)

#: Variables whose posteriors the summary lists (scalars and labelled vectors).
SUMMARY_VARS = [
    "slope",
    "rate_sural_reduced",
    "gamma_rituximab",
    "gamma_rituximab_x_sural",
    "gamma_later_line",
    "gamma_treatment",
    "delta_treatment",
    "delta_rituximab",
    "beta_covariate",
    "patient_sd",
    "patient_corr",
    "site_level",
    "site_level_sd",
    "site_slope",
    "site_slope_sd",
    "level_intercept",
    "cutpoints",
    "irods_precision",
    "sural_reduced_prevalence",
]


# ----------------------------------------------------------------------------- design


def make_design(cohort: Cohort, spec: Spec) -> Design:
    """Arrays of the progression model for one cohort and spec.

    Parameters
    ----------
    cohort : Cohort
        The cohort (its early-sural definition should already follow the spec).
    spec : Spec
        Resolved progression spec.

    Returns
    -------
    Design
        Visits with the outcome score laid out as (patient, visit_slot), years since onset,
        years since each modelled treatment's start at each visit, covariates (NaN where
        missing), site index and early-sural status.
    """
    outcome = spec.section("outcome")
    score = outcome.get("score", "incat")
    family = scores.likelihood_for(score, outcome.get("likelihood", "auto"))
    missing_rule = spec.section("early_sural")["missing"]
    if missing_rule not in ("marginalise", "exclude"):
        raise SpecError("[early_sural] missing must be 'marginalise' or 'exclude'")

    counts: dict[str, Any] = {}
    if missing_rule == "exclude":
        unknown = cohort.patients.index[cohort.patients["sural_reduced"].isna()]
        counts["patients left out: early-sural status unknown"] = len(unknown)
        cohort = _drop_patients(cohort, set(unknown))

    patient_ids = cohort.patient_ids
    pos = {pid: i for i, pid in enumerate(patient_ids)}
    visits = cohort.visits
    scored = visits[visits[score].notna()]
    counts["patients"] = len(patient_ids)
    counts["visits"] = len(visits)
    counts[f"visits with {score}"] = len(scored)
    counts[f"visits without {score} (not in the likelihood)"] = len(visits) - len(scored)
    no_score = sorted(set(patient_ids) - set(scored["patient_id"]))
    counts[f"patients without any {score}"] = len(no_score)

    patient_of_visit = scored["patient_id"].map(pos).to_numpy(int)
    slot = scored.groupby("patient_id").cumcount().to_numpy(int)
    n_slots = int(slot.max()) + 1 if len(slot) else 1
    years = scored["years_since_onset"].to_numpy(float)
    raw_score = scored[score].to_numpy(float)
    value = (
        raw_score.astype(int) if family == "ordered_logistic" else scores.centile_to_unit(raw_score)
    )

    # treatment exposure: years since each course started, summed per treatment
    tspec = spec.section("treatments")
    modelled = blocks.treatment_names(cohort, list(tspec.get("modelled", [])))
    courses = cohort.treatments[cohort.treatments["patient_id"].isin(pos)]
    visit_patient = scored["patient_id"].to_numpy()
    exposure = _course_exposure(courses, visit_patient, years, modelled)
    treatment_years, treatment_started = exposure["treatment_years"], exposure["treatment_started"]
    rituximab_years, rituximab_started = exposure["rituximab_years"], exposure["rituximab_started"]
    later_line_years = exposure["later_line_years"]
    ignored = int(exposure["ignored"])
    counts["treatment courses modelled"] = len(courses) - ignored
    counts["treatment courses not modelled (treatment not in spec)"] = ignored

    covariates, left_out = blocks.usable_covariates(cohort, spec)
    cov_values, standardisation, binary = blocks.covariate_design(cohort, covariates)
    missing_labels = blocks.missing_covariate_labels(cov_values, patient_ids, covariates)
    counts["covariate values imputed in the model"] = len(missing_labels)

    known, reduced = blocks.sural_status(cohort)
    counts["early sural reduced"] = int((known & (reduced == 1)).sum())
    counts["early sural preserved"] = int((known & (reduced == 0)).sum())
    counts["early sural unknown (marginalised in the model)"] = int((~known).sum())

    site_idx, sites = blocks.site_index(cohort)

    visit_labels = [f"{p}@{t:.2f}y" for p, t in zip(visit_patient, years, strict=True)]
    coords = {
        "patient": patient_ids,
        "site": sites,
        "visit": visit_labels,
        "visit_slot": list(range(n_slots)),
        "treatment": modelled,
        "covariate": covariates,
        "missing_covariate": missing_labels,
        "patient_effect": ["level", "rate"],
    }
    if family == "ordered_logistic":
        coords["cutpoint"] = [f"{k}|{k + 1}" for k in range(scores.n_categories(score) - 1)]
        coords["gap"] = coords["cutpoint"][1:]
    data = {
        "score": value,
        "years_since_onset": years,
        "patient_of_visit": patient_of_visit,
        "visit_slot_of_visit": slot,
        "treatment_years": treatment_years,
        "treatment_started": treatment_started,
        "rituximab_years": rituximab_years,
        "rituximab_started": rituximab_started,
        "later_line_years": later_line_years,
        "covariate_value": cov_values,
        "covariate_binary": np.asarray([binary[c] for c in covariates], dtype=bool),
        "site_of_patient": site_idx,
        "sural_known": known,
        "sural_reduced": reduced,
    }
    dims = {
        "score": ("visit",),
        "years_since_onset": ("visit",),
        "patient_of_visit": ("visit",),
        "treatment_years": ("visit", "treatment"),
        "rituximab_years": ("visit",),
        "later_line_years": ("visit",),
        "covariate_value": ("patient", "covariate"),
        "site_of_patient": ("patient",),
        "sural_known": ("patient",),
        "sural_reduced": ("patient",),
    }
    counts["score"] = score
    counts["likelihood"] = family
    left = [c.as_dict() for c in left_out]
    return Design(NAME, coords, data, dims, counts, standardisation, left)


def _course_exposure(
    courses: pd.DataFrame,
    visit_patient: np.ndarray | None,
    years: np.ndarray,
    modelled: list[str],
) -> dict[str, np.ndarray]:
    """Years since each course started (0 before), summed per treatment, at every visit.

    Parameters
    ----------
    courses : pandas.DataFrame
        Treatment courses (``patient_id``, ``treatment``, ``line``, ``start_years``).
    visit_patient : numpy.ndarray or None
        Patient id of each visit; None when the visits and courses are one patient's (a
        prediction's times), which pairs every visit with every course without matching ids.
    years : numpy.ndarray
        Years since onset of each visit.
    modelled : list of str
        Treatments with their own effect (rituximab always has its own terms).

    Returns
    -------
    dict
        ``treatment_years`` and ``treatment_started`` (visit, treatment), and
        ``rituximab_years``, ``rituximab_started``, ``later_line_years``,
        ``later_line_started`` (visit,) in years (``*_started``: number of courses started
        by the visit); ``ignored``: courses of a treatment that is not modelled.
    """
    n_visits = len(years)
    out = {
        "treatment_years": np.zeros((n_visits, len(modelled))),
        "treatment_started": np.zeros((n_visits, len(modelled))),
        "rituximab_years": np.zeros(n_visits),
        "rituximab_started": np.zeros(n_visits),
        "later_line_years": np.zeros(n_visits),
        "later_line_started": np.zeros(n_visits),
    }
    is_rituximab = (courses["treatment"] == "rituximab").to_numpy()
    column = courses["treatment"].map({t: k for k, t in enumerate(modelled)})
    kept = is_rituximab | column.notna().to_numpy()
    out["ignored"] = np.array(int((~kept).sum()))
    courses = courses[kept]
    column = column[kept].fillna(-1).to_numpy(int)
    is_rituximab = is_rituximab[kept]
    # every (visit, course) pair of the same patient
    if visit_patient is None:
        visit, course = (a.ravel() for a in np.indices((n_visits, len(courses))))
    else:
        visit_rows = pd.DataFrame({"patient_id": visit_patient, "visit": np.arange(n_visits)})
        course_rows = pd.DataFrame(
            {
                "patient_id": courses["patient_id"].to_numpy(),
                "course": np.arange(len(courses)),
            }
        )
        pairs = visit_rows.merge(course_rows, on="patient_id")
        visit = pairs["visit"].to_numpy(int)
        course = pairs["course"].to_numpy(int)
    since = years[visit] - courses["start_years"].to_numpy(float)[course]
    started = since >= 0
    since = np.clip(since, 0.0, None)
    rtx = is_rituximab[course]
    np.add.at(out["rituximab_years"], visit[rtx], since[rtx])
    np.add.at(out["rituximab_started"], visit[rtx], started[rtx])
    other = ~rtx
    np.add.at(out["treatment_years"], (visit[other], column[course[other]]), since[other])
    np.add.at(out["treatment_started"], (visit[other], column[course[other]]), started[other])
    later = courses["line"].to_numpy(int)[course] >= 2
    np.add.at(out["later_line_years"], visit[later], since[later])
    np.add.at(out["later_line_started"], visit[later], started[later])
    return out


def exposure_per_year(exposure: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """How fast each exposure of :func:`_course_exposure` grows: its derivative in time.

    Years since a course started grow by 1 a year once it has started, so the derivative
    of each ``*_years`` is the number of courses started (``*_started``); the counts of
    courses started are steps, with derivative 0 between course starts. Passed to
    :func:`exposure_matrix`, the result gives the rate of change of the latent disability
    that the treatments add (per year, between course starts).
    """
    out = {
        "treatment_years": np.asarray(exposure["treatment_started"], float),
        "rituximab_years": np.asarray(exposure["rituximab_started"], float),
        "later_line_years": np.asarray(exposure["later_line_started"], float),
    }
    for name in ("treatment_started", "rituximab_started", "later_line_started"):
        out[name] = np.zeros_like(np.asarray(exposure[name], float))
    return out


def _drop_patients(cohort: Cohort, drop: set[str]) -> Cohort:
    if not drop:
        return cohort
    return Cohort.from_frames(
        cohort.patients[~cohort.patients.index.isin(drop)].reset_index(),
        cohort.visits[~cohort.visits["patient_id"].isin(drop)],
        cohort.treatments[~cohort.treatments["patient_id"].isin(drop)],
        source=cohort.source,
        sha256=cohort.sha256,
        sural_threshold_uv=cohort.sural_threshold_uv,
        sural_window_years=cohort.sural_window_years,
    )


# ----------------------------------------------------------------------------- model


def _padded(values: np.ndarray, design: Design, fill: float) -> np.ndarray:
    """Per-visit values (visit, ...) laid out as (patient, visit_slot, ...)."""
    values = np.asarray(values)
    n_patients = len(design.coords["patient"])
    n_slots = len(design.coords["visit_slot"])
    out = np.full((n_patients, n_slots, *values.shape[1:]), fill, dtype=values.dtype)
    out[design.data["patient_of_visit"], design.data["visit_slot_of_visit"]] = values
    return out


def _data(name: str, value: Any) -> pt.TensorVariable:
    """A cohort array as a ``pm.Data`` input of the model (inside a model context)."""
    return pm.Data(name, np.asarray(value))


def _anchor_cutpoint(design: Design) -> int:
    """Index of the cutpoint fixed at 0: the one just above the median observed score."""
    n_cutpoints = len(design.coords["cutpoint"])
    if len(design.data["score"]) == 0:
        return 0
    median = int(np.floor(np.median(design.data["score"])))
    return int(np.clip(median, 0, n_cutpoints - 1))


def _core(value: Any, ndim: int) -> Any:
    """A parameter without the leading length-1 (or repeated) batch axes PyMC may add."""
    while value.ndim > ndim:
        value = value[0]
    return value


@dataclass(frozen=True)
class VisitLayout:
    """Arrays that turn per-patient and population parameters into per-visit values.

    numpy arrays (for predictive draws), or ``pm.Data`` inputs of the model (``as_data``).

    The latent disability at visit ``v`` of patient ``p`` is
    ``anchor[p] + rate[p] * time[v] + columns[v] @ coefficients``; a patient whose
    early-sural status is unknown also has, under "reduced",
    ``rate_sural_reduced * years[v] + gamma_rituximab_x_sural * rituximab_years[v]`` added
    at each of their visits (``unknown_visit``).

    Attributes
    ----------
    patient, slot : numpy.ndarray of int
        Per visit: patient index and position among the patient's visits.
    time : numpy.ndarray
        Per visit: years since onset, minus the patient's mean over their visits when the
        anchor is the level over the visits (years).
    columns : numpy.ndarray
        Shape (visit, coefficient): exposures whose coefficients are population
        parameters (years since a treatment started, ...), centred like ``time``.
    unknown_visit : numpy.ndarray of int
        Visits of patients whose early-sural status is unknown.
    unknown_slot : numpy.ndarray of int
        For each of those visits, its patient's position in ``unknown_patient``.
    unknown_patient : numpy.ndarray of int
        Patients whose early-sural status is unknown.
    unknown_years, unknown_rituximab_years : numpy.ndarray
        Years since onset and since rituximab started at ``unknown_visit`` (years).
    """

    patient: np.ndarray
    slot: np.ndarray
    time: np.ndarray
    columns: np.ndarray
    unknown_visit: np.ndarray
    unknown_slot: np.ndarray
    unknown_patient: np.ndarray
    unknown_years: np.ndarray
    unknown_rituximab_years: np.ndarray

    def as_data(self) -> VisitLayout:
        """The same layout with every array a ``pm.Data`` input (inside a model context)."""
        return VisitLayout(
            **{
                field: _data(f"visit_layout_{field}", getattr(self, field))
                for field in self.__dataclass_fields__
            }
        )

    def eta(self, anchor, rate, coefficients, lib=pt):
        """Latent disability at every visit (under each patient's known status)."""
        return (
            anchor[self.patient]
            + rate[self.patient] * self.time
            + lib.dot(self.columns, coefficients)
        )

    def sural_shift(self, rate_sural, gamma_x):
        """What "reduced" adds at the visits of patients whose status is unknown."""
        return rate_sural * self.unknown_years + gamma_x * self.unknown_rituximab_years


def score_loglik_by_status(
    family: str,
    layout: VisitLayout,
    value,
    anchor,
    rate,
    coefficients,
    rate_sural,
    gamma_x,
    param,
    any_unknown: bool,
):
    """Per-patient log-likelihood of the scores under each early-sural status.

    The scores are read from the (patient, visit_slot) ``value`` at each visit; the
    log-probability of each visit is computed once (long layout, no padding) and summed
    per patient. Only the visits of patients whose status is unknown are computed a second
    time, under "reduced".

    Returns
    -------
    per_patient : pytensor.tensor.TensorVariable
        Shape (patient,): under each patient's known status, "preserved" when unknown.
    if_reduced : pytensor.tensor.TensorVariable or None
        Shape (unknown patient,): under "reduced", for ``layout.unknown_patient``;
        ``None`` when every status is known.
    """
    scores_at_visits = value[layout.patient, layout.slot]
    eta = layout.eta(anchor, rate, coefficients)
    cells = scores.visit_logp(family, scores_at_visits, eta, param)
    per_patient = pt.inc_subtensor(pt.zeros(value.shape[0])[layout.patient], cells)
    if not any_unknown:
        return per_patient, None
    visits = layout.unknown_visit
    eta_reduced = eta[visits] + layout.sural_shift(rate_sural, gamma_x)
    cells_reduced = scores.visit_logp(family, scores_at_visits[visits], eta_reduced, param)
    by_unknown_patient = pt.zeros(layout.unknown_patient.shape[0])[layout.unknown_slot]
    return per_patient, pt.inc_subtensor(by_unknown_patient, cells_reduced)


def _score_logp(family: str, layout: VisitLayout, any_unknown: bool):
    """Per-patient log-likelihood of the scores, summing out an unknown early-sural status.

    :func:`score_loglik_by_status`, the two statuses of an unknown one mixed with the
    estimated prevalence.
    """

    def logp(value, slots, anchor, rate, coefficients, rate_sural, gamma_x, prevalence, param):
        coefficients = _core(coefficients, 1)
        param = _core(param, 1 if family == "ordered_logistic" else 0)
        rate_sural, gamma_x, prevalence = (_core(v, 0) for v in (rate_sural, gamma_x, prevalence))
        per_patient, if_reduced = score_loglik_by_status(
            family,
            layout,
            value,
            anchor,
            rate,
            coefficients,
            rate_sural,
            gamma_x,
            param,
            any_unknown,
        )
        if if_reduced is None:
            return per_patient
        unknown = layout.unknown_patient
        if_chosen = per_patient[unknown]
        mixed = pt.logaddexp(pt.log(prevalence) + if_reduced, pt.log1p(-prevalence) + if_chosen)
        return pt.set_subtensor(per_patient[unknown], mixed)

    return logp


def _score_random(family: str, layout: VisitLayout, fill: float):
    """Draw scores (patient, visit_slot), drawing unknown early-sural statuses too."""

    def random(
        slots,
        anchor,
        rate,
        coefficients,
        rate_sural,
        gamma_x,
        prevalence,
        param,
        rng=None,
        size=None,
    ):
        coefficients = _core(np.asarray(coefficients), 1)
        param = _core(np.asarray(param), 1 if family == "ordered_logistic" else 0)
        rate_sural, gamma_x, prevalence = (
            _core(np.asarray(v), 0) for v in (rate_sural, gamma_x, prevalence)
        )
        eta = layout.eta(np.asarray(anchor), np.asarray(rate), coefficients, lib=np)
        if len(layout.unknown_patient):
            reduced = rng.random(len(layout.unknown_patient)) < prevalence
            shift = layout.sural_shift(rate_sural, gamma_x)
            eta[layout.unknown_visit] += np.where(reduced[layout.unknown_slot], shift, 0.0)
        drawn = scores.draw_visits(family, eta, param, rng)
        out = np.full(np.shape(slots), fill, dtype=_score_dtype(family))
        out[layout.patient, layout.slot] = drawn
        return out

    return random


def _score_dtype(family: str) -> str:
    # integer scales fit in one byte: predictive draws of large cohorts stay small
    return "int8" if family == "ordered_logistic" else "float64"


def _unknown_status_share(known: np.ndarray, reduced_known: np.ndarray) -> np.ndarray:
    """Where between the two statuses the sampled level of an unknown status lies.

    The share of early sural reduction among the known statuses (0.5 when none is known):
    0 puts it at the "preserved" level over the visits, 1 at the "reduced" one.
    """
    return np.asarray(reduced_known[known].mean() if known.any() else 0.5, float)


def _per_patient_slope(
    values: np.ndarray, time: np.ndarray, patient: np.ndarray, n_patients: int
) -> np.ndarray:
    """Least-squares slope of per-visit values on time over each patient's visits.

    Parameters
    ----------
    values : numpy.ndarray
        Shape (visit, column): exposures (years since a course started, ...), centred on
        each patient's mean.
    time : numpy.ndarray
        Years since onset of each visit, centred on each patient's mean (years).
    patient : numpy.ndarray of int
        Patient index of each visit.
    n_patients : int
        Number of patients.

    Returns
    -------
    numpy.ndarray
        Shape (patient, column), in column units per year; 0 for a patient whose visits all
        fall at one time.
    """
    values = np.asarray(values, float)
    cross = np.zeros((n_patients, values.shape[1]))
    np.add.at(cross, patient, values * time[:, None])
    spread = np.zeros(n_patients)
    np.add.at(spread, patient, time**2)
    safe = np.where(spread > 1e-12, spread, 1.0)
    return np.where(spread[:, None] > 1e-12, cross / safe[:, None], 0.0)


#: Largest starting rate read off a patient's scores (logit units per year): two visits
#: close in time can imply any slope.
INITIAL_RATE_LIMIT: float = 1.5


def starting_values(design: Design, spec: Spec) -> dict[str, np.ndarray]:
    """Where the sampler starts, read off each patient's scores.

    Started at the prior's centre, with every patient at the same level, the chains of a
    1,000-patient cohort first spent tens of tuning iterations of up to 2,047 leapfrog
    steps each before reaching the posterior (docs/performance.md, session 8). These
    values only move that start: the sampler still adds its jitter (uniform in ±1 on the
    unconstrained scale), and the model and its posterior are unchanged.

    Parameters
    ----------
    design : Design
        From :func:`make_design`.
    spec : Spec
        Resolved progression spec.

    Returns
    -------
    dict of str to numpy.ndarray
        Starting values by variable name (constrained scale): each patient's level over
        their visits (the mean of a rough latent disability read off each score, logit
        units) and, with ``over_visits`` patients, its slope over their visits (logit
        units per year, limited to ±``INITIAL_RATE_LIMIT``); the spread of the levels at
        onset and rates these imply across patients (``patient_sd``) and the mean level
        at onset (``level_intercept``). Empty when the patients are non-centred (their
        standardised offsets start at 0).
    """
    patients_as = _patient_parametrisation(design, spec)
    if patients_as == "non_centred":
        return {}
    family = design.counts["likelihood"]
    spacing = 1.0
    if family == "ordered_logistic":
        spacing = blocks.prior_from_spec(
            spec.section("priors"), "cutpoint_spacing", DEFAULTS["priors"]["cutpoint_spacing"]
        )
    patient = np.asarray(design.data["patient_of_visit"], int)
    n_patients = len(design.coords["patient"])
    years = np.asarray(design.data["years_since_onset"], float)
    latent = _initial_latent(design, family, spacing)
    level = _per_patient_mean(latent, patient, n_patients)
    mean_years = _per_patient_mean(years, patient, n_patients)
    time = years - mean_years[patient]
    rate = _per_patient_slope((latent - level[patient])[:, None], time, patient, n_patients)
    rate = np.clip(rate[:, 0], -INITIAL_RATE_LIMIT, INITIAL_RATE_LIMIT)
    scored = np.bincount(patient, minlength=n_patients) > 0
    if not scored.any():
        scored = np.ones(n_patients, bool)
    level[~scored] = level[scored].mean()
    values = {"patient_level_over_visits": level}
    if patients_as in ("over_visits", "partial"):
        values["patient_rate_over_visits"] = rate
        at_onset = level - rate * mean_years
    else:
        # the rates start at the population's (offsets at 0): the same level at onset
        at_onset = level
    spread = np.array([at_onset[scored].std(), rate[scored].std()])
    # a spread of 0 is outside the support of a HalfNormal's log transform
    spread = np.maximum(spread, [0.1, 0.01])
    values["patient_sd"] = spread
    values["level_intercept"] = np.asarray(at_onset[scored].mean())
    if patients_as == "partial":
        # the sampled coordinates of those values, the patients' means taken as their
        # conditional prior means (the start only: the sampler moves from there): the
        # level partly centred, the rate non-centred
        per_visit = ORDINAL_VISIT_INFORMATION if family == "ordered_logistic" else 1.0
        level = values.pop("patient_level_over_visits")
        centre = level[scored].mean()
        ratio = per_visit * visit_count(design) * spread[0] ** 2
        weight = ratio / (ratio + 1.0)
        values["patient_level_partly_centred"] = weight * centre + (level - centre) / (
            spread[0] ** (1.0 - weight)
        )
        rate = values.pop("patient_rate_over_visits")
        values["patient_rate_over_visits_z"] = (rate - rate[scored].mean()) / spread[1]
    return values


def _initial_latent(design: Design, family: str, spacing: float) -> np.ndarray:
    """A rough latent disability at each visit, read off its observed score (logit units).

    Only a starting point for the sampler: an integer score is placed midway between the
    cutpoints around it, as they are at the start (``spacing`` apart, the one above the
    median score at 0); an I-RODS centile at the logit of its complement.
    """
    score = np.asarray(design.data["score"], float)
    if family == "ordered_logistic":
        return (score - _anchor_cutpoint(design) - 0.5) * spacing
    unit = np.clip(score, 0.01, 0.99)  # centile / 100 (the design's I-RODS values)
    return np.log1p(-unit) - np.log(unit)


def _per_patient_mean(values: np.ndarray, patient: np.ndarray, n_patients: int) -> np.ndarray:
    """Mean of per-visit values over each patient's visits (0 for a patient without any)."""
    values = np.asarray(values, float)
    sums = np.zeros((n_patients, *values.shape[1:]))
    np.add.at(sums, patient, values)
    counts = np.bincount(patient, minlength=n_patients).astype(float)
    return sums / np.maximum(counts, 1.0).reshape(-1, *([1] * (values.ndim - 1)))


def _site_parametrisation(design: Design, spec: Spec) -> str:
    """How the site offsets are sampled (``[sites] parametrisation``), "auto" resolved.

    Returns
    -------
    str
        "partial" (partly centred, as the patients' data about each site allow: the
        default), "centred" or "non_centred".
    """
    choice = blocks.site_parametrisation(spec, SITE_PARAMETRISATIONS)
    return "partial" if choice == "auto" else choice


#: Fisher information about the latent disability at a visit, per logit squared, of an
#: ordered logistic score: 1/3 for a latent logistic seen exactly, 0.24 midway between
#: cutpoints 3 apart; only the sampler's coordinates depend on it.
ORDINAL_VISIT_INFORMATION: float = 0.3

#: The same for a Beta score, per unit of precision: about mean x (1 - mean) for a
#: logit-mean, taken at an I-RODS centile of about 25 or 75.
BETA_VISIT_INFORMATION_PER_PRECISION: float = 0.2


def _visit_information(family: str, param: Any) -> Any:
    """What one visit tells about the latent disability there (per logit squared)."""
    if family == "ordered_logistic":
        return ORDINAL_VISIT_INFORMATION
    return BETA_VISIT_INFORMATION_PER_PRECISION * param


def _partly_centred(name: str, mean: Any, sd: Any, information: Any) -> pt.TensorVariable:
    """A per-patient Normal(mean, sd), sampled as centred as the patient's data allow.

    The sampler moves ``u ~ Normal(w * mean, sd ** w)`` and the value is
    ``mean + sd ** (1 - w) * (u - w * mean)``, which is Normal(mean, sd) whatever ``w``
    (Papaspiliopoulos, Roberts & Skold 2007, Stat Sci 22:59-73): ``w = 1`` is the centred
    form (``u`` is the value), ``w = 0`` the non-centred one (``u`` a standard normal). The
    weight is the share of the value's posterior precision that the patient's own data
    give, ``w = I sd**2 / (I sd**2 + 1)`` with ``information`` ``I``, computed at the
    current ``sd``: as the spread shrinks towards the funnel's neck the patient moves to
    non-centred coordinates, and where the visits pin the value down, to centred ones.
    Same model at every weight; only the sampler's coordinates differ.
    """
    weight = blocks.partial_centring_weight(information, sd)
    u = pm.Normal(name, weight * mean, sd**weight, dims="patient")
    return mean + sd ** (1.0 - weight) * (u - weight * mean)


def _site_information(
    level_information: Any, rate_information: Any, patient_sd: Any, n_sites: int
) -> tuple[Any, Any]:
    """What the patients tell about a site's level and slope offsets (mean over sites).

    Each patient's visits give their own level a precision ``I`` (``level_information``,
    per logit squared); around the site's offset that level also varies by
    ``patient_sd[0]``, so the patient tells ``1 / (patient_sd[0] ** 2 + 1 / I)`` about the
    offset; the same for the rate with ``rate_information`` and ``patient_sd[1]``.
    Summed over the patients and divided by the sites.
    """
    level = pt.sum(level_information / (patient_sd[0] ** 2 * level_information + 1.0))
    rate = pt.sum(rate_information / (patient_sd[1] ** 2 * rate_information + 1.0))
    return level / n_sites, rate / n_sites


def visit_count(design: Design) -> np.ndarray:
    """Scored visits of each patient."""
    patient = np.asarray(design.data["patient_of_visit"], int)
    return np.bincount(patient, minlength=len(design.coords["patient"])).astype(float)


def time_spread(design: Design) -> np.ndarray:
    """Sum over each patient's visits of the squared years from their mean (years²)."""
    patient = np.asarray(design.data["patient_of_visit"], int)
    n_patients = len(design.coords["patient"])
    years = np.asarray(design.data["years_since_onset"], float)
    time = years - _per_patient_mean(years, patient, n_patients)[patient]
    return np.bincount(patient, weights=time**2, minlength=n_patients)


def _patient_parametrisation(design: Design, spec: Spec) -> str:
    """How the patients are sampled (``[patients] parametrisation``), "auto" resolved.

    Returns
    -------
    str
        "partial" (level and rate over the visits, partly centred: the default),
        "centred" (level over the visits, rate before treatment non-centred),
        "over_visits" (level and rate over the visits, centred) or "non_centred".
    """
    choice = spec.section("patients")["parametrisation"]
    if choice not in PATIENT_PARAMETRISATIONS:
        raise SpecError(
            "[patients] parametrisation must be one of "
            + ", ".join(repr(c) for c in PATIENT_PARAMETRISATIONS)
            + f", not {choice!r}"
        )
    if choice != "auto":
        return choice
    return "partial"


def build_model(design: Design, spec: Spec) -> pm.Model:
    """The PyMC progression model for a design.

    The latent disability is computed at each visit (one row per visit, no padding) from
    per-patient parameters and population coefficients; the log-likelihood is summed per
    patient.

    Parameters
    ----------
    design : Design
        From :func:`make_design`.
    spec : Spec
        Resolved progression spec (priors, site pooling, treatment options).

    Returns
    -------
    pymc.Model
        Observed variable ``score`` (per patient, over visit slots) whose log-likelihood is
        per patient, so PSIS-LOO leaves out one patient at a time.
    """
    with pm.Model(coords=model_coords(design)) as model:
        add_score(design, add_trajectory(design, spec))
    return model


def model_coords(design: Design) -> dict[str, Any]:
    """The model's coordinates: the design's, less empty ones (``treatment`` kept)."""
    return {k: v for k, v in design.coords.items() if len(v) or k == "treatment"}


@dataclass(frozen=True)
class Trajectory:
    """The latent disability of a built model: its variables, for the score and other parts.

    At ``t`` years since onset, patient ``i`` has latent disability
    ``level[i] + rate[i] * t + exposure_matrix(...)(t) @ coefficient`` under their known
    early-sural status ("preserved" when unknown; "reduced" adds
    ``rate_sural * t + gamma_x * rituximab_years(t)``).

    Attributes
    ----------
    level, rate : pytensor.tensor.TensorVariable
        Per patient: level at onset (logit) and rate before treatment, known early sural
        reduction included (logit per year).
    coefficient : pytensor.tensor.TensorVariable
        Population coefficients of the columns of :func:`exposure_matrix`.
    rate_sural, gamma_x, prevalence : pytensor.tensor.TensorVariable
        Faster rate with early sural reduction, its change after rituximab, and the
        prevalence of reduction (for unknown statuses).
    covariates : pytensor.tensor.TensorVariable or None
        Standardised covariates (patient, covariate), missing values imputed.
    anchor, visit_rate : pytensor.tensor.TensorVariable
        What the score's likelihood reads: per patient, the level and the coefficient of
        ``layout.time`` (centred on the patient's visits in centred coordinates).
    param : pytensor.tensor.TensorVariable
        Cutpoints (ordered logistic) or precision (Beta).
    layout_values : VisitLayout
        The visits' arrays (numpy); ``layout`` the same as model inputs.
    family : str
        The score's likelihood.
    """

    level: Any
    rate: Any
    coefficient: Any
    rate_sural: Any
    gamma_x: Any
    prevalence: Any
    covariates: Any
    anchor: Any
    visit_rate: Any
    param: Any
    layout_values: VisitLayout
    layout: VisitLayout
    family: str

    def score_inputs(self) -> tuple[Any, ...]:
        """What the score's log-probability takes after the visit slots, in order."""
        return (
            self.anchor,
            self.visit_rate,
            self.coefficient,
            self.rate_sural,
            self.gamma_x,
            self.prevalence,
            self.param,
        )


def exposure_matrix(
    exposure: dict[str, np.ndarray], reduced_known: np.ndarray, n_treatments: int, tspec: Any
) -> np.ndarray:
    """Columns whose effects are the trajectory's population coefficients, in their order.

    Parameters
    ----------
    exposure : dict
        From :func:`_course_exposure` at some times (rows): years since each treatment
        started, and courses started by then.
    reduced_known : numpy.ndarray
        Per row: 1 where the row's patient has known early sural reduction.
    n_treatments : int
        Treatments other than rituximab with their own effect.
    tspec : Spec section
        ``[treatments]`` (``later_line_effect``, ``level_change``).

    Returns
    -------
    numpy.ndarray
        Shape (row, coefficient), matching :attr:`Trajectory.coefficient`.
    """
    rituximab_years = np.asarray(exposure["rituximab_years"], float)
    columns: list[np.ndarray] = []
    if n_treatments:
        columns.append(np.asarray(exposure["treatment_years"], float))
    columns.append(rituximab_years[:, None])
    columns.append((rituximab_years * reduced_known)[:, None])
    if tspec.get("later_line_effect", True):
        columns.append(np.asarray(exposure["later_line_years"], float)[:, None])
    if tspec.get("level_change", False):
        if n_treatments:
            columns.append(np.asarray(exposure["treatment_started"], float))
        columns.append(np.asarray(exposure["rituximab_started"], float)[:, None])
    return np.concatenate(columns, axis=1)


def add_trajectory(design: Design, spec: Spec) -> Trajectory:
    """The trajectory's variables, in the current model (:func:`build_model`'s context).

    Parameters
    ----------
    design : Design
        From :func:`make_design`.
    spec : Spec
        Resolved spec with the progression model's sections.
    """
    priors = spec.section("priors")

    def prior(key: str) -> float:
        return blocks.prior_from_spec(priors, key, DEFAULTS["priors"][key])

    tspec = spec.section("treatments")
    family = design.counts["likelihood"]
    d = design.data
    n_patients = len(design.coords["patient"])
    n_treatments = len(design.coords["treatment"])
    n_covariates = len(design.coords["covariate"])
    patient = np.asarray(d["patient_of_visit"], int)
    years = np.asarray(d["years_since_onset"], float)
    known = d["sural_known"].astype(bool)
    reduced_known = (known & (d["sural_reduced"] == 1)).astype(float)
    patients_as = _patient_parametrisation(design, spec)
    centred = patients_as != "non_centred"

    slope = pm.Normal("slope", 0.0, prior("slope_sd"))
    rate_sural = pm.Normal("rate_sural_reduced", 0.0, prior("sural_rate_sd"))
    patient_sd = pm.HalfNormal(
        "patient_sd",
        sigma=np.array([prior("patient_level_sd"), prior("patient_rate_sd")]),
        dims="patient_effect",
    )
    corr_unit = pm.Beta("patient_corr_unit", 2.0, 2.0)
    patient_corr = pm.Deterministic("patient_corr", 2.0 * corr_unit - 1.0)
    # One cutpoint is fixed at 0 (integer scales), so the mean level is identified by an
    # explicit intercept rather than by a joint shift of cutpoints and levels. Fixing the
    # cutpoint at the cohort's median score (rather than the first) keeps the levels of
    # most patients from moving with the uncertain gaps below it.
    if family == "ordered_logistic":
        spacing = prior("cutpoint_spacing")
        anchor_cut = _data("anchor_cutpoint", np.asarray(_anchor_cutpoint(design), "int64"))
        # prior centred between the cutpoints 1|2 and 2|3 (INCAT about 2 at onset), with
        # cutpoints `spacing` apart on average
        intercept_centre = spacing * (1.5 - anchor_cut)
    else:
        intercept_centre = 0.0
    intercept = pm.Normal("level_intercept", intercept_centre, prior("intercept_sd"))
    if family == "ordered_logistic":
        gaps = pm.Gamma("cutpoint_gap", alpha=4.0, beta=4.0 / spacing, dims="gap")
        # cutpoint `anchor_cut` is 0; the others are cumulated gaps below and above it
        above = pt.cumsum(gaps[anchor_cut:])
        below = -pt.cumsum(gaps[:anchor_cut][::-1])[::-1]
        param = pm.Deterministic(
            "cutpoints", pt.concatenate([below, pt.zeros(1), above]), dims="cutpoint"
        )
    else:
        param = pm.Exponential("irods_precision", prior("irods_precision_rate"))

    sites_as = _site_parametrisation(design, spec)
    if "partial" in (patients_as, sites_as):
        # what one visit tells about the latent disability there (Fisher information,
        # per logit squared), times each patient's visits, or their visits' spread in time
        per_visit = _visit_information(family, param)
        level_information = per_visit * _data("patient_visit_count", visit_count(design))
        rate_information = per_visit * _data("patient_time_spread", time_spread(design))
    site_information: tuple[Any, Any] = (None, None)
    if sites_as == "partial":
        site_information = _site_information(
            level_information, rate_information, patient_sd, len(design.coords["site"])
        )
    # every array of the cohort is a ``pm.Data`` input of the compiled model rather
    # than a constant in it: one compiled model then serves every cohort with the same
    # structure (magbayes.compile_cache), and only the first fit of a spec compiles
    site_of_patient = _data("site_of_patient", d["site_of_patient"])
    pooling = spec.section("sites")["pooling"]
    site_level = blocks.site_effect(
        "site_level",
        site_of_patient,
        pooling=pooling,
        scale=prior("site_sd"),
        centred=sites_as == "centred",
        information=site_information[0],
    )
    site_slope = blocks.site_effect(
        "site_slope",
        site_of_patient,
        pooling=pooling,
        scale=prior("site_sd") / 4.0,
        centred=sites_as == "centred",
        information=site_information[1],
    )
    level_mean = intercept + site_level
    x = None
    if n_covariates:
        x = blocks.imputed_covariates(
            d["covariate_value"], list(d["covariate_binary"]), as_data=True
        )
        beta = pm.Normal("beta_covariate", 0.0, prior("covariate_sd"), dims="covariate")
        level_mean = level_mean + pt.dot(x, beta)
    rate_mean = slope + site_slope
    # early sural reduction (known): a faster rate before treatment
    sural_known_reduced = _data("early_sural_reduced", reduced_known)
    if patients_as == "centred":
        rate_z = pm.Normal("patient_rate_z", 0.0, 1.0, dims="patient")
        rate = pm.Deterministic("patient_rate", rate_mean + patient_sd[1] * rate_z, dims="patient")
    elif patients_as == "non_centred":
        z = pm.Normal("patient_z", 0.0, 1.0, dims=("patient", "patient_effect"))
        rate = rate_mean + patient_sd[1] * (
            patient_corr * z[:, 0] + pt.sqrt(1.0 - patient_corr**2) * z[:, 1]
        )
    # ("over_visits": the rate is sampled below, once the treatment effects exist)

    # exposures whose effects are population coefficients, one column each (in the order
    # of exposure_matrix); early sural reduction (known) has its own change after rituximab
    coefficients: list[pt.TensorVariable] = []
    if n_treatments:
        gamma = pm.Normal("gamma_treatment", 0.0, prior("treatment_sd"), dims="treatment")
        coefficients.append(gamma)
    gamma_rtx = pm.Normal("gamma_rituximab", 0.0, prior("rituximab_sd"))
    gamma_x = pm.Normal("gamma_rituximab_x_sural", 0.0, prior("interaction_sd"))
    coefficients += [gamma_rtx[None], gamma_x[None]]
    if tspec.get("later_line_effect", True):
        gamma_later = pm.Normal("gamma_later_line", 0.0, prior("later_line_sd"))
        coefficients.append(gamma_later[None])
    if tspec.get("level_change", False):
        if n_treatments:
            delta = pm.Normal("delta_treatment", 0.0, prior("level_change_sd"), dims="treatment")
            coefficients.append(delta)
        delta_rtx = pm.Normal("delta_rituximab", 0.0, prior("level_change_sd"))
        coefficients.append(delta_rtx[None])
    exposure = exposure_matrix(d, reduced_known[patient], n_treatments, tspec)
    coefficient = pt.concatenate(coefficients)

    if centred:
        # The patient's level is sampled as the mean latent disability over their
        # visits, which the visits pin down on their own, instead of the level at onset,
        # which trades off against the rate and every treatment effect when visits come
        # years after onset. Same model: level at onset = level over visits - mean
        # change over visits, a shift by other parameters (unit Jacobian), and the
        # prior of the level at onset given the rate is unchanged. The visits then only
        # need the times and exposures centred on each patient's mean.
        mean_years = _per_patient_mean(years, patient, n_patients)
        mean_exposure = _per_patient_mean(exposure, patient, n_patients)
        rituximab_years = np.asarray(d["rituximab_years"], float)
        mean_rituximab = _per_patient_mean(rituximab_years, patient, n_patients)
        time = years - mean_years[patient]
        exposure = exposure - mean_exposure[patient]
        if patients_as in ("over_visits", "partial"):
            # The rate too is sampled as seen over the visits: the slope of the latent
            # disability over the patient's visits, treatments included, which the
            # visits pin down, instead of the rate before any treatment, which trades
            # off against every treatment effect. The exposures keep only what their
            # per-patient straight line over the visits does not explain. Same model:
            # rate over visits = rate + sum(effect x exposure slope), a shift (unit
            # Jacobian); its prior is the rate's, shifted.
            exposure_slope = _per_patient_slope(exposure, time, patient, n_patients)
            change_in_rate = pt.dot(_data("patient_exposure_slope", exposure_slope), coefficient)
            rate_visits_mean = rate_mean + rate_sural * sural_known_reduced + change_in_rate
            if patients_as == "partial":
                # non-centred: partly centring the rate too (weights from the visits' time
                # spread) left the rates' spread mixing slowly where it is small (0.1
                # logit/year: bulk ESS 156 of patient_sd[rate] over 4 x 1,000 draws on
                # 150 patients, against 1,359 non-centred; docs/robustness.md)
                rate_visits_z = pm.Normal("patient_rate_over_visits_z", 0.0, 1.0, dims="patient")
                rate_visits = rate_visits_mean + patient_sd[1] * rate_visits_z
            else:
                rate_visits = pm.Normal(
                    "patient_rate_over_visits", rate_visits_mean, patient_sd[1], dims="patient"
                )
            rate = pm.Deterministic(
                "patient_rate",
                rate_visits - change_in_rate - rate_sural * sural_known_reduced,
                dims="patient",
            )
            rate_z = (rate - rate_mean) / patient_sd[1]
            exposure = exposure - exposure_slope[patient] * time[:, None]
        rate_with_sural = rate + rate_sural * sural_known_reduced
        mean_change = rate_with_sural * _data("patient_mean_years", mean_years) + pt.dot(
            _data("patient_mean_exposure", mean_exposure), coefficient
        )
        # A patient whose early-sural status is unknown has, under "reduced", every
        # visit shifted by rate_sural x years + gamma_x x rituximab years (summed out in
        # the likelihood). Their sampled level lies that share of the mean shift between
        # the two statuses' levels over the visits, so that the level is not pulled
        # along by rate_sural times their mean years since onset whenever their visits
        # favour "reduced". Same model: a shift by other parameters.
        unknown_shift = pt.zeros(())
        if not known.all():
            share = _data("unknown_status_share", _unknown_status_share(known, reduced_known))
            unknown_shift = share * (
                rate_sural * _data("unknown_mean_years", mean_years * ~known)
                + gamma_x * _data("unknown_mean_rituximab_years", mean_rituximab * ~known)
            )
        level_visits_mean = (
            level_mean + patient_corr * patient_sd[0] * rate_z + mean_change + unknown_shift
        )
        level_visits_sd = patient_sd[0] * pt.sqrt(1.0 - patient_corr**2)
        if patients_as == "partial":
            level_over_visits = _partly_centred(
                "patient_level_partly_centred",
                level_visits_mean,
                level_visits_sd,
                level_information,
            )
        else:
            level_over_visits = pm.Normal(
                "patient_level_over_visits", level_visits_mean, level_visits_sd, dims="patient"
            )
        anchor = level_over_visits - unknown_shift
        level_at_onset = pm.Deterministic("patient_level", anchor - mean_change, dims="patient")
        rate_at_onset = rate_with_sural
        if patients_as in ("over_visits", "partial"):
            rate_with_sural = rate_visits  # the coefficient of the centred time
    else:
        rate_with_sural = rate_at_onset = rate + rate_sural * sural_known_reduced
        anchor = level_mean + patient_sd[0] * z[:, 0]
        level_at_onset = anchor
        time = years
    unknown_patient = np.nonzero(~known)[0]
    unknown_visit = np.nonzero(~known[patient])[0]
    layout_values = VisitLayout(
        patient=patient,
        slot=np.asarray(d["visit_slot_of_visit"], int),
        time=time,
        columns=exposure,
        unknown_visit=unknown_visit,
        unknown_slot=np.searchsorted(unknown_patient, patient[unknown_visit]),
        unknown_patient=unknown_patient,
        unknown_years=years[unknown_visit],
        unknown_rituximab_years=np.asarray(d["rituximab_years"], float)[unknown_visit],
    )
    layout = layout_values.as_data()
    prevalence = blocks.sural_prevalence(d["sural_known"], d["sural_reduced"], as_data=True)

    return Trajectory(
        level=level_at_onset,
        rate=rate_at_onset,
        coefficient=coefficient,
        rate_sural=rate_sural,
        gamma_x=gamma_x,
        prevalence=prevalence,
        covariates=x,
        anchor=anchor,
        visit_rate=rate_with_sural,
        param=param,
        layout_values=layout_values,
        layout=layout,
        family=family,
    )


def add_score(design: Design, trajectory: Trajectory) -> pt.TensorVariable:
    """The observed scores (``score``, per patient over visit slots), in the current model.

    Returns
    -------
    pytensor.tensor.TensorVariable
        The observed scores as a model input (patient, visit_slot).
    """
    family = trajectory.family
    fill = -1 if family == "ordered_logistic" else 0.5  # padding must not be NaN (PyMC imputes it)
    signature = (
        "(s),(),(),(k),(),(),(),(c)->(s)"
        if family == "ordered_logistic"
        else "(s),(),(),(k),(),(),(),()->(s)"
    )
    years = np.asarray(design.data["years_since_onset"], float)
    layout_values = trajectory.layout_values
    slots = _data("visit_slot_used", _padded(np.ones(len(years), bool), design, False))
    observed = _data(
        "score_observed", _padded(design.data["score"], design, fill).astype(_score_dtype(family))
    )
    pm.CustomDist(
        "score",
        slots,
        *trajectory.score_inputs(),
        logp=_score_logp(family, trajectory.layout, len(layout_values.unknown_patient) > 0),
        random=_score_random(family, layout_values, fill),
        signature=signature,
        observed=observed,
        dims=("patient", "visit_slot"),
        dtype=_score_dtype(family),
    )
    return observed


#: Target acceptance of the automatic refit in non-centred coordinates. On three 47-patient
#: cohorts whose levels spread by about 1 logit with cutpoints 0.9 apart, centred levels had
#: 10-37 divergent transitions at 0.8 and 18-37 at 0.9; non-centred patients had 2-3 at 0.8
#: and none at 0.9. Over the stress grid: docs/robustness.md.
REFIT_TARGET_ACCEPT: float = 0.9


def refit_spec(spec: Spec, design: Design, diagnostics: dict[str, Any]) -> tuple[Spec, str] | None:
    """The spec of a refit in non-centred coordinates when the first fit diverged.

    With ``[patients] parametrisation = "auto"`` the patients are first sampled as seen over
    their visits (:func:`_patient_parametrisation`), which mixes best when each patient's
    visits pin down their level. When the spread of levels is small against what the
    visits tell, that form has a funnel and the fit diverges; the same model is then
    sampled once more with non-centred patients at a target acceptance of at least
    :data:`REFIT_TARGET_ACCEPT`. The sites keep their coordinates: partly centred
    ("auto") already moves towards non-centred where the spread of sites is small. On a
    two-site cohort of 150 patients, whose divergences sat in the sites' spreads, sampled
    with different seeds, fully non-centred sites diverged in 4 of 5 runs against 1 of 6
    partly centred (docs/robustness.md). A parametrisation the user chose is never changed.

    Parameters
    ----------
    spec : Spec
        The resolved spec of the first fit.
    design : Design
        Its design.
    diagnostics : dict
        :meth:`magbayes.fit.FitResult.diagnostics` of the first fit.

    Returns
    -------
    (Spec, str) or None
        The refit's spec and why, in words; ``None`` when there is nothing to refit (no
        divergences, or the user chose the patients' parametrisation).
    """
    if not diagnostics["divergences"]:
        return None
    if spec.section("patients")["parametrisation"] != "auto":
        return None
    first = _patient_parametrisation(design, spec)
    target = max(float(spec.section("sampler")["target_accept"]), REFIT_TARGET_ACCEPT)
    overrides: dict[str, Any] = {
        "patients": {"parametrisation": "non_centred"},
        "sampler": {"target_accept": target},
    }
    why = (
        f"the first fit (patients sampled {PATIENT_COORDINATES_IN_WORDS[first]}) had "
        f"{diagnostics['divergences']} divergent transition(s); the same model was refitted "
        f"with non-centred patients at target acceptance {target:g}"
    )
    return spec.with_overrides(overrides), why


# ----------------------------------------------------------------------------- results


def divergence_advice(spec: Spec, posterior: xr.Dataset) -> list[str]:
    """What to change when a fit has divergent transitions, beyond the target acceptance.

    With patient levels sampled (partly) centred, a small spread of levels can make a funnel
    between the levels and ``patient_sd[level]``: in simulation-based calibration, fits whose
    true spread was below about 1 logit diverged in 93% of cases (53% between 1 and 2.6
    logits), against 1 fit in 100 with the non-centred form (``docs/sbc.md``).

    Parameters
    ----------
    spec : Spec
        The fitted spec.
    posterior : xarray.Dataset
        The posterior draws.

    Returns
    -------
    list of str
        Advice for the report and the command line (empty when none applies).
    """
    if spec.section("patients")["parametrisation"] == "non_centred":
        return []
    if "patient_sd" not in posterior:
        return []
    spread = float(posterior["patient_sd"].sel(patient_effect="level").median())
    return [
        "if the spread of patient levels is small (posterior median of `patient_sd[level]` here "
        f"{spread:.2f} logit; in simulation-based calibration most fits with a spread below about "
        "2.5 logits diverged), sample the patients non-centred: `[patients] parametrisation = "
        '"non_centred"`'
    ]


def to_visits(padded: xr.DataArray, design: Design) -> xr.DataArray:
    """Turn a (…, patient, visit_slot) array into (…, visit) with the design's visit labels."""
    p = xr.DataArray(design.data["patient_of_visit"], dims="visit")
    s = xr.DataArray(design.data["visit_slot_of_visit"], dims="visit")
    out = padded.isel(patient=p, visit_slot=s)
    return out.drop_vars(["patient", "visit_slot"], errors="ignore").assign_coords(
        visit=design.coords["visit"]
    )


def finalise(tree: xr.DataTree, design: Design) -> xr.DataTree:
    """Lay the observed and predicted scores out per visit (for predictive checks)."""
    for group in ("observed_data", "posterior_predictive", "prior_predictive"):
        if group in tree.children and "score" in tree[group].data_vars:
            ds = tree[group].to_dataset()
            long = to_visits(ds["score"], design)
            if design.counts.get("likelihood") == "beta":
                long = long * 100.0  # back to I-RODS centiles (the model works on 0-1)
            ds = ds.drop_vars("score").drop_dims(["visit_slot"], errors="ignore")
            ds = ds.drop_vars("patient", errors="ignore").assign(score=long)
            tree[group] = xr.DataTree(ds)
    return tree


# ----------------------------------------------------------------------------- words


def effects(result: Any) -> list[Effect]:
    """The progression model's effects: on the rate, the level step, the covariates."""
    post = result.posterior["posterior"]
    score = score_name(result.spec)
    rate = f"latent {score} logit per year"
    level = f"latent {score} logit"
    out = [
        Effect("rituximab × early sural reduction [rate]", "gamma_rituximab_x_sural", {}, rate),
        Effect("rituximab, sural-preserved [rate]", "gamma_rituximab", {}, rate),
        Effect("early sural reduction, untreated [rate]", "rate_sural_reduced", {}, rate),
        Effect("course in line ≥ 2 [rate]", "gamma_later_line", {}, rate),
    ]
    out += vector_effects(
        post, "gamma_treatment", "treatment", lambda t: f"{treatment_name(t)} [rate]", rate
    )
    out.append(Effect("rituximab, sural-preserved [level step]", "delta_rituximab", {}, level))
    out += vector_effects(
        post, "delta_treatment", "treatment", lambda t: f"{treatment_name(t)} [level step]", level
    )
    out += covariate_effects(post, result.standardisation, level, suffix=" [level]")
    return out


def effect_units(result: Any) -> str:
    """The units of the progression model's effects, for the forest plot."""
    score = score_name(result.spec)
    return (
        f"Units: [rate] rows change the progression rate, in latent {score} logit per "
        f"year; [level] and [level step] rows shift the latent {score} level (logit). "
        "Negative = less disability"
    )


def methods_sentence(result: Any) -> str:
    """What the progression model is, for the methods paragraph."""
    likelihood = str(result.design_counts.get("likelihood", ""))
    return (
        f"Disability ({score_name(result.spec)}) over years since symptom onset was modelled "
        f"with a Bayesian hierarchical {scores.LIKELIHOOD_WORDS.get(likelihood, likelihood)} "
        "regression in which each patient has a baseline level and a progression rate "
        "(correlated, partially pooled towards their site), and each treatment course "
        "changes the progression rate from its start; rituximab's change in rate was "
        "allowed to differ with early sural reduction."
    )


#: What the population-level parameters that are not effects mean.
PARAMETER_MEANINGS: dict[str, str] = {
    "slope": "mean progression rate, untreated, sural-preserved [latent logit per year]",
    "patient_sd": "between-patient sd of the level and of the rate",
    "patient_corr": "correlation of patients' level and rate",
    "site_level": "site offset of the level",
    "site_level_sd": "sd of the site offsets of the level",
    "site_slope": "site offset of the rate",
    "site_slope_sd": "sd of the site offsets of the rate",
    "cutpoints": "ordered cutpoints between adjacent score values (latent scale)",
    "irods_precision": "precision of the Beta likelihood (I-RODS)",
}

DEFINITION = ModelDefinition(
    name=NAME,
    title="disability progression",
    defaults=DEFAULTS,
    own_rules=OWN_RULES,
    make_design=make_design,
    build_model=build_model,
    headline=HEADLINE,
    outcome_var="score",
    summary_vars=tuple(SUMMARY_VARS),
    parameter_meanings=PARAMETER_MEANINGS,
    effects=effects,
    outcome_words=lambda result: f"{score_name(result.spec)} score at a visit",
    effect_units=effect_units,
    methods_sentence=methods_sentence,
    benefit_words="slowing of disability progression",
    equations=__doc__,
    has_trajectory=True,
    starting_values=starting_values,
    refit_spec=refit_spec,
    divergence_advice=divergence_advice,
    finalise=finalise,
    figures=(ModelFigure("timing", "Prompt against delayed rituximab", plot_timing),),
    predict=predictions.predict,
    timing=predictions.timing_contrast,
    prediction_figure=plot_patient,
)
