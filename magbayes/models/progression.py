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

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.models import blocks, scores
from magbayes.models.base import (
    BASELINE_COVARIATES,
    MODELLED_TREATMENTS,
    Design,
    Headline,
    shared_defaults,
)
from magbayes.spec import Spec

NAME = "progression"

DEFAULTS: dict[str, Any] = shared_defaults(
    {
        "outcome": {"score": "incat", "likelihood": "auto"},
        "covariates": {"baseline": BASELINE_COVARIATES},
        "treatments": {
            "modelled": MODELLED_TREATMENTS,
            "later_line_effect": True,
            "level_change": False,
        },
        "sites": {"pooling": "partial"},
        "patients": {"parametrisation": "centred"},
        # measured in benchmarks/bench_progression.py (docs/performance.md)
        "sampler": {"tune": 400, "target_accept": 0.8, "extra_doublings": 1},
        "priors": {
            "slope_sd": 0.7,
            "patient_level_sd": 3.0,
            "patient_rate_sd": 0.5,
            "site_sd": 1.0,
            "treatment_sd": 0.5,
            "rituximab_sd": 0.5,
            "interaction_sd": 0.5,
            "later_line_sd": 0.3,
            "level_change_sd": 1.0,
            "sural_rate_sd": 0.5,
            "covariate_sd": 2.0,
            "intercept_sd": 4.0,
            "cutpoint_spacing": 3.0,
            "irods_precision_rate": 0.1,
        },
    }
)

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
    missing_rule = spec.section("early_sural").get("missing", "marginalise")
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
    treatment_years = np.zeros((len(scored), len(modelled)))
    treatment_started = np.zeros((len(scored), len(modelled)))
    rituximab_years = np.zeros(len(scored))
    rituximab_started = np.zeros(len(scored))
    later_line_years = np.zeros(len(scored))
    visit_patient = scored["patient_id"].to_numpy()
    ignored = 0
    for course in courses.itertuples(index=False):
        on = visit_patient == course.patient_id
        since = np.where(on, np.clip(years - course.start_years, 0.0, None), 0.0)
        started = (on & (years >= course.start_years)).astype(float)
        if course.treatment == "rituximab":
            rituximab_years += since
            rituximab_started += started
        elif course.treatment in modelled:
            k = modelled.index(course.treatment)
            treatment_years[:, k] += since
            treatment_started[:, k] += started
        else:
            ignored += 1
            continue
        if course.line >= 2:
            later_line_years += since
    counts["treatment courses modelled"] = len(courses) - ignored
    counts["treatment courses not modelled (treatment not in spec)"] = ignored

    covariates = list(spec.section("covariates").get("baseline", []))
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
    return Design(NAME, coords, data, dims, counts, standardisation)


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


def _anchor_cutpoint(design: Design) -> int:
    """Index of the cutpoint fixed at 0: the one just above the median observed score."""
    n_cutpoints = len(design.coords["cutpoint"])
    if len(design.data["score"]) == 0:
        return 0
    median = int(np.floor(np.median(design.data["score"])))
    return int(np.clip(median, 0, n_cutpoints - 1))


def _score_logp(family: str, unknown_rows: np.ndarray):
    """Per-patient log-likelihood of the score, summing out an unknown early-sural status.

    ``eta_chosen`` is the latent disability under each patient's known status (under
    "preserved" where unknown); ``eta_reduced`` under "reduced". Only the rows of patients
    whose status is unknown (``unknown_rows``, fixed by the design) need the second one,
    so the likelihood is computed twice only there.
    """

    def logp(value, observed, eta_chosen, eta_reduced, known, reduced, prevalence, *params):
        fill = 0 if family == "ordered_logistic" else 0.5
        safe = pt.where(observed, value, fill)
        cells = scores.cell_logp(family, safe, eta_chosen, list(params))
        per_patient = pt.sum(pt.where(observed, cells, 0.0), axis=-1)
        if len(unknown_rows) == 0:
            return per_patient
        rows = pt.as_tensor_variable(unknown_rows)
        cells_reduced = scores.cell_logp(family, safe[rows], eta_reduced[rows], list(params))
        if_reduced = pt.sum(pt.where(observed[rows], cells_reduced, 0.0), axis=-1)
        share = pt.broadcast_to(prevalence, per_patient.shape)[rows]
        mixed = pt.logaddexp(pt.log(share) + if_reduced, pt.log1p(-share) + per_patient[rows])
        return pt.set_subtensor(per_patient[rows], mixed)

    return logp


def _score_random(family: str):
    """Draw scores (patient, visit_slot), drawing unknown early-sural statuses too."""

    def random(
        observed, eta_chosen, eta_reduced, known, reduced, prevalence, *params, rng=None, size=None
    ):
        unknown_reduced = ~np.asarray(known, bool) & (rng.random(np.shape(known)) < prevalence)
        eta = np.where(unknown_reduced[..., None], eta_reduced, eta_chosen)
        drawn = scores.draw_cells(family, eta, list(params), rng)
        if family == "ordered_logistic":
            return np.where(observed, drawn, -1).astype(np.int64)
        return np.where(observed, drawn, np.nan)

    return random


def build_model(design: Design, spec: Spec) -> pm.Model:
    """The PyMC progression model for a design.

    The latent disability is computed on the (patient, visit_slot) layout so that every
    term is a dense elementwise operation; padding cells are masked out of the
    likelihood.

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
    priors = spec.section("priors")

    def prior(key: str) -> float:
        return blocks.prior_from_spec(priors, key, DEFAULTS["priors"][key])

    tspec = spec.section("treatments")
    family = design.counts["likelihood"]
    d = design.data
    coords = {k: v for k, v in design.coords.items() if len(v) or k == "treatment"}
    n_treatments = len(design.coords["treatment"])
    n_covariates = len(design.coords["covariate"])
    observed = _padded(np.ones(len(d["years_since_onset"]), bool), design, False)
    years = _padded(d["years_since_onset"], design, 0.0)
    rituximab_years = _padded(d["rituximab_years"], design, 0.0)

    with pm.Model(coords=coords) as model:
        site_of_patient = d["site_of_patient"]
        pooling = spec.section("sites").get("pooling", "partial")
        site_level = blocks.site_effect(
            "site_level", site_of_patient, pooling=pooling, scale=prior("site_sd")
        )
        site_slope = blocks.site_effect(
            "site_slope", site_of_patient, pooling=pooling, scale=prior("site_sd") / 4.0
        )

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
            anchor = _anchor_cutpoint(design)
            # prior centred between the cutpoints 1|2 and 2|3 (INCAT about 2 at onset), with
            # cutpoints `spacing` apart on average
            intercept_centre = spacing * (1.5 - anchor)
        else:
            intercept_centre = 0.0
        intercept = pm.Normal("level_intercept", intercept_centre, prior("intercept_sd"))
        level_mean = intercept + site_level
        if n_covariates:
            x = blocks.imputed_covariates(d["covariate_value"], list(d["covariate_binary"]))
            beta = pm.Normal("beta_covariate", 0.0, prior("covariate_sd"), dims="covariate")
            level_mean = level_mean + pt.dot(x, beta)
        rate_mean = slope + site_slope
        centred = spec.section("patients").get("parametrisation", "centred") == "centred"
        if centred:
            rate_z = pm.Normal("patient_rate_z", 0.0, 1.0, dims="patient")
            rate = pm.Deterministic(
                "patient_rate", rate_mean + patient_sd[1] * rate_z, dims="patient"
            )
        else:
            z = pm.Normal("patient_z", 0.0, 1.0, dims=("patient", "patient_effect"))
            rate = rate_mean + patient_sd[1] * (
                patient_corr * z[:, 0] + pt.sqrt(1.0 - patient_corr**2) * z[:, 1]
            )

        # the part of the latent disability that changes over a patient's visits
        change = rate[:, None] * years
        if n_treatments:
            gamma = pm.Normal("gamma_treatment", 0.0, prior("treatment_sd"), dims="treatment")
            change = change + pt.dot(_padded(d["treatment_years"], design, 0.0), gamma)
        gamma_rtx = pm.Normal("gamma_rituximab", 0.0, prior("rituximab_sd"))
        gamma_x = pm.Normal("gamma_rituximab_x_sural", 0.0, prior("interaction_sd"))
        change = change + gamma_rtx * rituximab_years
        if tspec.get("later_line_effect", True):
            gamma_later = pm.Normal("gamma_later_line", 0.0, prior("later_line_sd"))
            change = change + gamma_later * _padded(d["later_line_years"], design, 0.0)
        if tspec.get("level_change", False):
            if n_treatments:
                delta = pm.Normal(
                    "delta_treatment", 0.0, prior("level_change_sd"), dims="treatment"
                )
                change = change + pt.dot(_padded(d["treatment_started"], design, 0.0), delta)
            delta_rtx = pm.Normal("delta_rituximab", 0.0, prior("level_change_sd"))
            change = change + delta_rtx * _padded(d["rituximab_started"], design, 0.0)
        # early sural reduction: faster rate before treatment, own change after rituximab
        sural_shift = rate_sural * years + gamma_x * rituximab_years
        known = d["sural_known"].astype(bool)
        reduced_known = (known & (d["sural_reduced"] == 1)).astype(float)
        change_chosen = change + reduced_known[:, None] * sural_shift

        if centred:
            # The patient's level is sampled as the mean latent disability over their
            # visits, which the visits pin down on their own, instead of the level at onset,
            # which trades off against the rate and every treatment effect when visits come
            # years after onset. Same model: level at onset = level over visits - mean
            # change over visits, a shift by other parameters (unit Jacobian), and the
            # prior of the level at onset given the rate is unchanged.
            visit_share = observed / np.maximum(observed.sum(axis=1, keepdims=True), 1)
            mean_change = pt.sum(change_chosen * visit_share, axis=1)
            level_over_visits = pm.Normal(
                "patient_level_over_visits",
                level_mean + patient_corr * patient_sd[0] * rate_z + mean_change,
                patient_sd[0] * pt.sqrt(1.0 - patient_corr**2),
                dims="patient",
            )
            level = pm.Deterministic(
                "patient_level", level_over_visits - mean_change, dims="patient"
            )
        else:
            level = level_mean + patient_sd[0] * z[:, 0]
        eta_chosen = level[:, None] + change_chosen
        eta_reduced = level[:, None] + change + sural_shift
        prevalence = blocks.sural_prevalence(d["sural_known"], d["sural_reduced"])

        if family == "ordered_logistic":
            gaps = pm.Gamma("cutpoint_gap", alpha=4.0, beta=4.0 / spacing, dims="gap")
            # cutpoint `anchor` is 0; the others are cumulated gaps below and above it
            above = pt.cumsum(gaps[anchor:])
            below = -pt.cumsum(gaps[:anchor][::-1])[::-1]
            cutpoints = pm.Deterministic(
                "cutpoints", pt.concatenate([below, pt.zeros(1), above]), dims="cutpoint"
            )
            params = [cutpoints]
            signature = "(v),(v),(v),(),(),(),(c)->(v)"
            fill, dtype = -1, "int64"
        else:
            params = [pm.Exponential("irods_precision", prior("irods_precision_rate"))]
            signature = "(v),(v),(v),(),(),(),()->(v)"
            fill, dtype = 0.5, "float64"  # padding must not be NaN (PyMC would impute it)

        pm.CustomDist(
            "score",
            observed,
            eta_chosen,
            eta_reduced,
            d["sural_known"].astype(bool),
            d["sural_reduced"].astype(bool),
            prevalence,
            *params,
            logp=_score_logp(family, np.nonzero(~known)[0]),
            random=_score_random(family),
            signature=signature,
            observed=_padded(d["score"], design, fill),
            dims=("patient", "visit_slot"),
            dtype=dtype,
        )
    return model


# ----------------------------------------------------------------------------- results


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


def group_benefit(posterior: xr.Dataset, design: Design) -> dict[str, xr.DataArray]:
    """Rituximab's change in progression rate (latent units / year) by early-sural status."""
    preserved = posterior["gamma_rituximab"]
    reduced = posterior["gamma_rituximab"] + posterior["gamma_rituximab_x_sural"]
    return {"sural_reduced": reduced, "sural_preserved": preserved}
