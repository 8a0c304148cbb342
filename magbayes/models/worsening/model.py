"""The PyMC worsening model: priors, linear predictors and the visit-interval likelihood."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from magbayes.models import blocks, survival
from magbayes.models.base import Design
from magbayes.models.worsening.definition import DEFAULTS
from magbayes.models.worsening.design import visit_interval_data
from magbayes.spec import Spec

#: ``[sites] parametrisation = "auto"`` samples the site frailties directly (centred) when
#: every site has at least this many confirmed worsenings: the data then pin each frailty
#: down far more tightly than its prior, where the non-centred form has a funnel. Measured
#: (seeded simulated cohorts; 2 chains x 500 draws unless said): 47 patients, ~10 per site:
#: centred 189 divergences (4 x 1000), non-centred none; 1,000 patients, 81-202 per site:
#: centred 2-9 divergences, non-centred none (lower ESS); 1,500 patients, 371-431 per site:
#: neither diverges, centred ESS 2,008 vs 365 for the sd; 5,000 patients, ~1,000 per site
#: (4 x 1000): non-centred 2 divergences and ESS 306, centred none and ESS 2,358.
CENTRED_MIN_WORSENINGS_PER_SITE: int = 300


def _prior(spec: Spec, key: str) -> float:
    """A positive prior scale from the spec's ``[priors]``, defaulting to :data:`DEFAULTS`."""
    return blocks.prior_from_spec(spec.section("priors"), key, DEFAULTS["priors"][key])


def _baseline(spec: Spec, kind: str) -> survival.PiecewiseBaseline | survival.WeibullBaseline:
    """The baseline hazard of ``[baseline_hazard] kind`` with the spec's priors."""
    priors = {**DEFAULTS["priors"], **spec.section("priors")}
    return survival.baseline_from_priors(
        kind,
        log_hazard_mean=float(priors["baseline_log_hazard_mean"]),
        log_hazard_sd=_prior(spec, "baseline_log_hazard_sd"),
        shape_sd=_prior(spec, "weibull_shape_sd"),
        log_scale_mean=float(priors["weibull_log_scale_mean"]),
        log_scale_sd=_prior(spec, "weibull_log_scale_sd"),
    )


def _centred_frailty(design: Design, spec: Spec) -> bool:
    """Whether to sample the site frailties centred (``[sites] parametrisation``)."""
    choice = blocks.site_parametrisation(spec)
    if choice != "auto":
        return choice == "centred"
    d = design.data
    per_site = np.bincount(
        d["site_of_patient"], weights=d["worsening_seen"], minlength=len(design.coords["site"])
    )
    return bool(per_site.min() >= CENTRED_MIN_WORSENINGS_PER_SITE)


def _worsening_distribution(n_unknown: int, exact_at_visit: bool):
    """``logp``, ``random`` and ``signature`` of the observed ``worsening`` (a CustomDist).

    The parameters are the sural-reduced prevalence, each patient's early-sural status
    (known, reduced: 0/1), then, with ``n_unknown`` patients of unknown status, their
    indices; then (patient, interval) arrays
    (:func:`~magbayes.models.survival.interval_hazards`): the interval hazards of every
    patient under their own early-sural status (as if reduced where it is unknown), and,
    only for the patients whose status is unknown, under "preserved"; with
    ``exact_at_visit`` (``event_time = "detecting_visit"``) the log hazards at the visits
    (:func:`~magbayes.models.survival.visit_log_hazard`) follow in the same order. The
    statuses are parameters rather than constants, so the compiled model does not depend
    on the cohort.
    """

    def split(arrays):
        arrays = list(arrays)
        unknown = arrays.pop(0) if n_unknown else None
        hazard, hazard_p = arrays.pop(0), (arrays.pop(0) if n_unknown else None)
        log_h = log_h_p = None
        if exact_at_visit:
            log_h, log_h_p = arrays.pop(0), (arrays.pop(0) if n_unknown else None)
        return unknown, hazard, hazard_p, log_h, log_h_p

    def logp(value, prevalence, known, reduced, *arrays):
        unknown, hazard, hazard_p, log_h, log_h_p = split(arrays)
        ll_status = survival.visit_interval_log_likelihood(value, hazard, log_h)
        ll_p = ll_status
        if n_unknown:
            ll_unknown_p = survival.visit_interval_log_likelihood(value[unknown], hazard_p, log_h_p)
            ll_p = pt.set_subtensor(ll_status[unknown], ll_unknown_p)
        return blocks.mix_over_sural(ll_status, ll_p, known, reduced, prevalence)

    def random(prevalence, known, reduced, *arrays, rng=None, size=None):
        unknown, hazard, hazard_p, _, _ = split(arrays)
        hazard = np.array(hazard, dtype=float)
        if n_unknown:
            as_reduced = rng.random(len(unknown)) < np.asarray(prevalence)
            hazard[unknown] = np.where(as_reduced[:, None], hazard[unknown], hazard_p)
        return survival.draw_visit_interval(hazard, rng)

    per_status = ["(p,k)"] + (["(u,k)"] if n_unknown else [])
    inputs = ["()", "(p)", "(p)"] + (["(u)"] if n_unknown else [])
    inputs += per_status * (2 if exact_at_visit else 1)
    return logp, random, ",".join(inputs) + "->(p)"


def build_model(design: Design, spec: Spec) -> pm.Model:
    """The PyMC worsening model for a design.

    Parameters
    ----------
    design : Design
        From :func:`make_design`.
    spec : Spec
        Resolved worsening spec (baseline hazard, priors, site pooling).

    Returns
    -------
    pymc.Model
        Observed ``worsening`` (dims ``patient``): the visit interval in which a confirmed
        worsening was first seen (``j``: between the ``j-1``-th and ``j``-th checked
        visits after baseline; 0: none by the end of follow-up). Its log density is each
        patient's interval-/right-censored log-likelihood, read from that value, so
        PSIS-LOO leaves out one patient at a time and SBC can refit drawn outcomes; its
        ``random`` draws the same outcome from the model.
    """
    kind = spec.section("baseline_hazard")["kind"]
    d = design.data
    cohort_data = visit_interval_data(design)
    exact_at_visit = spec.section("outcome")["event_time"] == "detecting_visit"
    internal = {"exposure_row", "checked_visit"}
    coords = {k: v for k, v in design.coords.items() if len(v) and k not in internal}
    n_trt = len(design.coords["treatment"])
    known = d["sural_known"].astype(bool)
    unknown = np.nonzero(~known)[0]

    with pm.Model(coords=coords) as model:
        # Every array of the cohort is a ``pm.Data`` input of the compiled model rather than
        # a constant in it, so one compiled model serves every cohort of the same structure.
        data = cohort_data.as_data()
        base = _baseline(spec, kind)
        patient_eta = blocks.site_effect(
            "site_log_frailty",
            pm.Data("site_of_patient", d["site_of_patient"]),
            pooling=spec.section("sites")["pooling"],
            scale=_prior(spec, "frailty_sd"),
            centred=_centred_frailty(design, spec),
        )
        if len(design.coords["covariate"]):
            x = blocks.imputed_covariates(
                d["covariate_value"], list(d["covariate_binary"]), as_data=True
            )
            beta_cov = pm.Normal(
                "beta_covariate", 0.0, _prior(spec, "covariate_sd"), dims="covariate"
            )
            patient_eta = patient_eta + pt.dot(x, beta_cov)
        beta_rtx, beta_x = blocks.rituximab_by_sural_status(
            "beta", _prior(spec, "rituximab_sd"), _prior(spec, "interaction_sd")
        )
        beta_sural = pm.Normal("beta_sural_reduced", 0.0, _prior(spec, "sural_sd"))
        beta_trt = (
            pm.Normal("beta_treatment", 0.0, _prior(spec, "treatment_sd"), dims="treatment")
            if n_trt
            else None
        )

        x_seg = data.segment_covariates
        eta_p = patient_eta[data.segment_subject] + beta_rtx * x_seg[:, n_trt]
        if beta_trt is not None:
            eta_p = eta_p + pt.dot(x_seg[:, :n_trt], beta_trt)
        eta_r = eta_p + beta_sural + beta_x * x_seg[:, n_trt]

        prevalence = blocks.sural_prevalence(known, d["sural_reduced"], as_data=True)
        known_t = pm.Data("sural_known_patient", known.astype(np.int8))
        reduced_t = pm.Data("sural_reduced_patient", d["sural_reduced"].astype(np.int8))
        # Interval hazards of each patient under their own status (unknown: as if reduced),
        # and under "preserved" only for the patients whose status is unknown (no wasted
        # work on the others); the likelihood mixes the two for those patients.
        as_reduced = pt.or_(pt.eq(known_t, 0), pt.neq(reduced_t, 0))
        eta_status = pt.where(as_reduced[data.segment_subject], eta_r, eta_p)
        integrated = base.integrated(data)
        params = [prevalence, known_t, reduced_t]
        arrays = [survival.interval_hazards(data, eta_status, base, integrated_baseline=integrated)]
        if len(unknown):
            unknown_numpy, unknown_segments = cohort_data.subset(~known)
            unknown_data = unknown_numpy.as_data("sural_unknown_")
            unknown_segments = pm.Data("sural_unknown_segment", unknown_segments)
            params.append(pm.Data("sural_unknown_patient", unknown))
            arrays.append(
                survival.interval_hazards(
                    unknown_data,
                    eta_p[unknown_segments],
                    base,
                    integrated_baseline=integrated[unknown_segments],
                )
            )
        if exact_at_visit:
            arrays.append(survival.visit_log_hazard(data, eta_status, base))
            if len(unknown):
                arrays.append(
                    survival.visit_log_hazard(unknown_data, eta_p[unknown_segments], base)
                )
        logp, random, signature = _worsening_distribution(len(unknown), exact_at_visit)
        pm.CustomDist(
            "worsening",
            *params,
            *arrays,
            logp=logp,
            random=random,
            signature=signature,
            observed=np.asarray(d["worsening_interval"], dtype="int64"),
            dims="patient",
            dtype="int64",
        )
    return model
