r"""Joint model of a cohort: the progression model's trajectory and the death that follows it.

The disability score follows the progression model (:mod:`magbayes.models.progression`:
the same variables, built by the same code): patient :math:`i` has latent disability
:math:`\eta_i(t)` at :math:`t` years since onset. The event (death, or death or loss to
follow-up) has hazard

.. math::

    h_i(t) = h_0(t)\,\exp\big(\alpha\,\eta_i(t) + w_{s(i)} + z_i^\top\beta_{\mathrm{event}}
        + \beta_{\mathrm{rtx}}\,n_{i,\mathrm{rtx}}(t)\big)

with :math:`\alpha` the **association** (log hazard ratio per latent logit of current
disability; with ``[event] association = "value_and_slope"`` the log hazard also has
:math:`\alpha_{\mathrm{slope}}\,\eta_i'(t)`, the current rate of change in logit per year,
constant between treatment starts), :math:`h_0` a Weibull (or piecewise-constant) baseline
at latent disability 0 (about the cohort's median score), :math:`w` the hospitals' log
frailties (pooled), :math:`z_i` standardised covariates and :math:`n_{i,\mathrm{rtx}}(t)`
the rituximab courses started by :math:`t`. A patient is at risk from their first visit with
the score to their end of follow-up; a death known only to lie between two contacts is
interval-censored, other ends of follow-up are censoring times
(:mod:`magbayes.models.joint.events`). The cumulative hazard is integrated by Gauss-Legendre
quadrature on each stretch between treatment starts.

An unknown early-sural status changes both parts. The likelihood is factorised as
:math:`p(\mathrm{scores})\,p(\mathrm{end} \mid \mathrm{scores})`: ``score`` is the progression
model's (the status summed out with the prevalence), and ``end_of_follow_up`` sums it out with
the status's probability given the patient's scores. So ``score``'s pointwise log-likelihood is
the progression model's, comparable with it by PSIS-LOO on the same cohort, and the sum of both
is the patient's joint log-likelihood.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.models import blocks, progression, survival
from magbayes.models.base import Design, shipped_defaults
from magbayes.models.joint.events import (
    EVENT,
    EVENT_IN_INTERVAL,
    EventArrays,
    entry_years,
    event_arrays,
)
from magbayes.spec import Spec

NAME = "joint"

#: Every key of the spec with its default: the spec file ``models/joint.toml``.
DEFAULTS: dict[str, Any] = shipped_defaults(NAME)

#: Baseline hazards of the event (``[event] baseline``).
BASELINES = ("weibull", "piecewise")

#: What of the trajectory the log hazard follows (``[event] association``).
ASSOCIATIONS = ("value", "value_and_slope")


def has_slope_association(spec: Spec) -> bool:
    """Whether the log hazard follows the latent disability's current rate of change too."""
    return spec.section("event")["association"] == "value_and_slope"


def _prior(spec: Spec, key: str) -> float:
    return blocks.prior_from_spec(spec.section("priors"), key, DEFAULTS["priors"][key])


def hazard_grid(spec: Spec) -> np.ndarray | None:
    """The piecewise baseline's boundaries (years since onset, last ``inf``); None for Weibull."""
    event = spec.section("event")
    if event["baseline"] == "piecewise":
        return survival.make_grid(event["grid_years"])
    return None


def make_design(cohort: Cohort, spec: Spec) -> Design:
    """Arrays of the joint model: the progression model's, and the event part's.

    Parameters
    ----------
    cohort : Cohort
        With end of follow-up for every patient (``end_years``/``end_date``, ``end_reason``).
    spec : Spec
        Resolved joint spec.

    Returns
    -------
    Design
        The progression design's arrays, plus per patient ``event_entry_years``,
        ``event_end_years``, ``event_lower_years`` and ``event_outcome``, and per hazard row
        (quadrature nodes, then the event times of exact events) the patient, time,
        quadrature weight and the exposures of the trajectory and of the hazard.
    """
    base = progression.make_design(cohort, spec)
    event = spec.section("event")
    patient_ids = list(base.coords["patient"])
    covariates = list(base.coords["covariate"])
    hazard_covariates = list(event["covariates"])
    unknown_cov = [c for c in hazard_covariates if c not in covariates]
    if unknown_cov:
        raise SpecError(
            f"[event] covariates {unknown_cov} are not among the model's covariates "
            f"({', '.join(covariates) or 'none'}: [covariates] baseline, and the cohort's columns)"
        )
    arrays = event_arrays(
        cohort,
        patient_ids,
        entry_years(cohort, patient_ids, str(base.counts["score"])),
        kind=str(event["kind"]),
        breaks=hazard_grid(spec),
        n_nodes=int(event["quadrature_nodes"]),
    )
    data = dict(base.data)
    data.update(event_part_data(cohort, base, spec, arrays))
    data["hazard_covariate_index"] = np.asarray(
        [covariates.index(c) for c in hazard_covariates], int
    )
    dims = dict(base.dims)
    dims.update(
        {
            "event_entry_years": ("patient",),
            "event_end_years": ("patient",),
            "event_lower_years": ("patient",),
            "event_outcome": ("patient",),
        }
    )
    coords = dict(base.coords)
    coords["event_covariate"] = hazard_covariates
    grid = hazard_grid(spec)
    if grid is not None:
        coords["event_hazard_piece"] = survival.piece_labels(grid)
    counts = dict(base.counts)
    counts["event"] = str(event["kind"])
    counts["events (exact)"] = int((arrays.outcome == EVENT).sum())
    counts["events (between two contacts)"] = int((arrays.outcome == EVENT_IN_INTERVAL).sum())
    counts["censored at the end of follow-up"] = int((arrays.outcome == 0).sum())
    counts["years at risk"] = round(float((arrays.end - arrays.entry).sum()), 1)
    return Design(NAME, coords, data, dims, counts, base.standardisation, base.left_out_covariates)


def event_part_data(
    cohort: Cohort, base: Design, spec: Spec, arrays: EventArrays
) -> dict[str, np.ndarray]:
    """The design keys of the event part for these event arrays.

    The hazard's rows are the quadrature nodes, then the exact events' times
    (:func:`hazard_rows`); with each patient's entry, end, lower bound and outcome, and the
    nodes' weights. :func:`make_design` takes the cohort's; SBC those of drawn times.
    """
    exact = np.nonzero(arrays.outcome == EVENT)[0]
    out = hazard_rows(
        cohort,
        base,
        spec,
        np.concatenate([arrays.node_patient, exact]).astype(int),
        np.concatenate([arrays.node_years, arrays.end[exact]]),
    )
    out.update(
        {
            "event_entry_years": arrays.entry,
            "event_end_years": arrays.end,
            "event_lower_years": arrays.lower,
            "event_outcome": arrays.outcome,
            "hazard_node_weight": arrays.node_weight,
            "hazard_node_after_lower": arrays.node_after_lower,
        }
    )
    return out


def hazard_rows(
    cohort: Cohort, base: Design, spec: Spec, row_patient: np.ndarray, row_years: np.ndarray
) -> dict[str, np.ndarray]:
    """What the log hazard reads at each row (a patient at a time), by design key.

    Parameters
    ----------
    cohort : Cohort
        The cohort (its treatment courses).
    base : Design
        The progression design of the cohort (patients, treatments, early-sural statuses).
    spec : Spec
        Resolved joint spec (``[treatments]``).
    row_patient : numpy.ndarray of int
        Patient index of each row.
    row_years : numpy.ndarray
        Time of each row (years since onset).

    Returns
    -------
    dict
        ``hazard_row_patient``, ``hazard_row_years``; ``hazard_exposure`` and
        ``hazard_exposure_per_year`` (row, coefficient): the trajectory's exposures and
        their derivatives in time; ``hazard_rituximab_years``, ``hazard_rituximab_started``.
    """
    patient_ids = list(base.coords["patient"])
    courses = cohort.treatments[cohort.treatments["patient_id"].isin(set(patient_ids))]
    exposure = progression._course_exposure(
        courses,
        np.asarray(patient_ids, dtype=object)[row_patient],
        np.asarray(row_years, float),
        base.coords["treatment"],
    )
    known = base.data["sural_known"].astype(bool)
    reduced_known = (known & (base.data["sural_reduced"] == 1)).astype(float)[row_patient]
    n_treatments = len(base.coords["treatment"])
    tspec = spec.section("treatments")
    return {
        "hazard_row_patient": np.asarray(row_patient, int),
        "hazard_row_years": np.asarray(row_years, float),
        "hazard_exposure": progression.exposure_matrix(
            exposure, reduced_known, n_treatments, tspec
        ),
        "hazard_exposure_per_year": progression.exposure_matrix(
            progression.exposure_per_year(exposure), reduced_known, n_treatments, tspec
        ),
        "hazard_rituximab_years": np.asarray(exposure["rituximab_years"], float),
        "hazard_rituximab_started": np.asarray(exposure["rituximab_started"], float),
    }


def event_inputs(data: dict[str, np.ndarray], spec: Spec) -> dict[str, np.ndarray]:
    """The event part's model data (``pm.Data`` name -> value) from a design's arrays.

    ``data`` holds the design keys of :func:`make_design` (those of :func:`hazard_rows`,
    ``hazard_node_weight``, ``hazard_node_after_lower``, ``event_outcome``,
    ``sural_known``): the rows are the quadrature nodes, then the exact events' times.
    The model (:func:`build_model`) reads exactly these, so a cohort of the same structure
    (or SBC's redrawn event times) only swaps them.
    """
    row_patient = np.asarray(data["hazard_row_patient"], int)
    n_nodes = len(data["hazard_node_weight"])
    known = np.asarray(data["sural_known"]).astype(bool)
    out = {
        name: np.asarray(data[name], float)
        for name in (
            "hazard_row_years",
            "hazard_exposure",
            "hazard_rituximab_started",
            "hazard_rituximab_years",
            "hazard_node_weight",
            "hazard_node_after_lower",
        )
    }
    out.update(
        {
            "hazard_row_patient": row_patient,
            "hazard_node_patient": row_patient[:n_nodes],
            "hazard_event_patient": row_patient[n_nodes:],
            "event_unknown_sural_patient": np.nonzero(~known)[0],
            "hazard_unknown_sural_row": np.nonzero(~known[row_patient])[0],
            "event_patient_index": np.arange(len(known)),
            "event_outcome_observed": np.asarray(data["event_outcome"], "int64"),
        }
    )
    if has_slope_association(spec):
        out["hazard_exposure_per_year"] = np.asarray(data["hazard_exposure_per_year"], float)
    grid = hazard_grid(spec)
    if grid is not None:
        piece = np.searchsorted(grid, out["hazard_row_years"], side="right") - 1
        out["hazard_row_piece"] = piece
    return out


class _Points:
    """Times at which a survival baseline gives its log hazard (its segment-end interface).

    The model's data of the rows' times, and of their baseline pieces (piecewise only).
    """

    def __init__(self, years: Any, piece: Any):
        self.segment_stop = years
        self.segment_piece = piece


def build_model(design: Design, spec: Spec) -> pm.Model:
    """The PyMC joint model for a design.

    Returns
    -------
    pymc.Model
        Observed ``score`` (the progression model's) and ``end_of_follow_up`` (per patient:
        0 censored, 1 event, 2 event between two contacts), each with a per-patient
        log-likelihood.
    """
    with pm.Model(coords=progression.model_coords(design)) as model:
        trajectory = progression.add_trajectory(design, spec)
        progression.add_score(design, trajectory)
        # the event part reads the scores as the score variable, not as its data: where
        # the scores are drawn (prior and posterior predictive, SBC), the early-sural
        # status of an unknown patient is weighed by the scores drawn with it
        _add_event(design, spec, trajectory, model["score"], model)
    return model


def _add_event(
    design: Design,
    spec: Spec,
    trajectory: progression.Trajectory,
    score: Any,
    model: pm.Model,
) -> None:
    """The event part, in the current model (``score``: the observed score variable).

    Every array of the cohort enters as ``pm.Data`` (:func:`event_inputs`: times,
    quadrature weights, the rows' patients, which patients' early-sural status is
    unknown), so the compiled model depends on the cohort's structure only and the compile
    cache serves every cohort of it.
    """
    event = spec.section("event")
    inputs = {name: pm.Data(name, value) for name, value in event_inputs(design.data, spec).items()}
    any_unknown = bool(len(inputs["event_unknown_sural_patient"].get_value()))
    years = inputs["hazard_row_years"]
    patient = inputs["hazard_row_patient"]
    eta = (
        trajectory.level[patient]
        + trajectory.rate[patient] * years
        + pt.dot(inputs["hazard_exposure"], trajectory.coefficient)
    )
    association = pm.Normal("association", 0.0, _prior(spec, "association_sd"))
    baseline = survival.baseline_from_priors(
        str(event["baseline"]),
        log_hazard_mean=float(spec.section("priors")["event_log_hazard_mean"]),
        log_hazard_sd=_prior(spec, "event_log_hazard_sd"),
        shape_sd=_prior(spec, "weibull_shape_sd"),
        log_scale_mean=float(spec.section("priors")["weibull_log_scale_mean"]),
        log_scale_sd=_prior(spec, "weibull_log_scale_sd"),
        piece_dim="event_hazard_piece",
    )
    points = _Points(years, inputs.get("hazard_row_piece"))
    log_h0 = baseline.log_hazard_at_segment_end(points, slice(None))
    frailty = blocks.site_effect(
        "event_site_frailty",
        model["site_of_patient"],
        pooling=spec.section("sites")["pooling"],
        scale=_prior(spec, "event_site_sd"),
    )
    per_patient = frailty
    if len(design.coords["event_covariate"]):
        if trajectory.covariates is None:
            raise SpecError("[event] covariates need covariates in the trajectory")
        beta = pm.Normal(
            "event_beta_covariate", 0.0, _prior(spec, "event_covariate_sd"), dims="event_covariate"
        )
        columns = np.asarray(design.data["hazard_covariate_index"], int)
        per_patient = per_patient + pt.dot(trajectory.covariates[:, columns], beta)
    event_rituximab = pm.Normal("event_rituximab", 0.0, _prior(spec, "event_rituximab_sd"))
    rituximab_started = inputs["hazard_rituximab_started"]
    log_hazard = (
        log_h0 + per_patient[patient] + event_rituximab * rituximab_started + association * eta
    )
    # under "reduced", for the rows of patients whose early-sural status is unknown
    unknown_patient = inputs["event_unknown_sural_patient"]
    unknown_row = inputs["hazard_unknown_sural_row"]
    shift = (
        trajectory.rate_sural * years[unknown_row]
        + trajectory.gamma_x * inputs["hazard_rituximab_years"][unknown_row]
    )
    log_hazard_reduced = log_hazard[unknown_row] + association * shift
    if has_slope_association(spec):
        # the latent disability's rate of change at each row (logit per year), constant
        # on each stretch between course starts
        association_slope = pm.Normal(
            "association_slope", 0.0, _prior(spec, "association_slope_sd")
        )
        slope = trajectory.rate[patient] + pt.dot(
            inputs["hazard_exposure_per_year"], trajectory.coefficient
        )
        log_hazard = log_hazard + association_slope * slope
        slope_shift = trajectory.rate_sural + trajectory.gamma_x * rituximab_started[unknown_row]
        log_hazard_reduced = log_hazard_reduced + association_slope * (
            slope[unknown_row] + slope_shift
        )
    if any_unknown:
        if_chosen, if_reduced = progression.score_loglik_by_status(
            trajectory.family,
            trajectory.layout,
            score,
            trajectory.anchor,
            trajectory.visit_rate,
            trajectory.coefficient,
            trajectory.rate_sural,
            trajectory.gamma_x,
            trajectory.param,
            True,
        )
        prevalence = trajectory.prevalence
        a = pt.log(prevalence) + if_reduced
        b = pt.log1p(-prevalence) + if_chosen[unknown_patient]
        total = pt.logaddexp(a, b)
        log_w_reduced, log_w_preserved = a - total, b - total
    else:
        log_w_reduced = log_w_preserved = pt.zeros(0)

    pm.CustomDist(
        "end_of_follow_up",
        inputs["event_patient_index"],  # the output's length
        log_hazard,
        log_hazard_reduced,
        log_w_reduced,
        log_w_preserved,
        inputs["hazard_node_weight"],
        inputs["hazard_node_after_lower"],
        inputs["hazard_node_patient"],
        inputs["hazard_event_patient"],
        unknown_patient,
        unknown_row,
        logp=_event_logp if any_unknown else _event_logp_all_known,
        random=_event_random,
        signature="(p),(r),(u),(q),(q),(n),(n),(n),(e),(q),(u)->(p)",
        observed=inputs["event_outcome_observed"],
        dims=("patient",),
        dtype="int64",
    )


def _per_patient(value, log_hazard, node_weight, after_lower, node_patient, event_patient, lib):
    """Log-likelihood of each patient's outcome given the log hazard at every row.

    Rows are the quadrature nodes (``node_weight``, ``after_lower`` 1 for the nodes after a
    death's ``end_lower``, ``node_patient``) followed by the exact events' times
    (``event_patient``). With ``lib`` numpy and no ``value``: each patient's cumulative
    hazard over the time at risk.
    """
    n_patients = value.shape[0]
    n_nodes = node_weight.shape[0]
    hazard = node_weight * lib.exp(log_hazard[:n_nodes])
    if lib is not pt:
        total = np.zeros(n_patients)
        np.add.at(total, node_patient, hazard)
        return total
    zeros = pt.zeros(n_patients)
    h_before = pt.inc_subtensor(zeros[node_patient], hazard * (1.0 - after_lower))
    h_after = pt.inc_subtensor(zeros[node_patient], hazard * after_lower)
    at_event = pt.inc_subtensor(zeros[event_patient], log_hazard[n_nodes:])
    interval = pt.log(-pt.expm1(-pt.maximum(h_after, 1e-300)))
    return (
        -h_before
        + pt.switch(pt.eq(value, EVENT_IN_INTERVAL), interval, -h_after)
        + pt.switch(pt.eq(value, EVENT), at_event, 0.0)
    )


class _EventInputs(NamedTuple):
    """The inputs of ``end_of_follow_up``'s distribution, in the order of its signature."""

    patients: Any
    log_hazard: Any
    log_hazard_reduced: Any
    log_w_reduced: Any
    log_w_preserved: Any
    node_weight: Any
    after_lower: Any
    node_patient: Any
    event_patient: Any
    unknown_patient: Any
    unknown_row: Any

    def per_patient(self, value, log_hazard, lib):
        """:func:`_per_patient` with these rows."""
        layout = (self.node_weight, self.after_lower, self.node_patient, self.event_patient)
        return _per_patient(value, log_hazard, *layout, lib)


def _event_logp(value, *inputs):
    """Per-patient log-likelihood of the end of follow-up (early-sural status summed out)."""
    e = _EventInputs(*inputs)
    ll = e.per_patient(value, e.log_hazard, pt)
    reduced = pt.set_subtensor(e.log_hazard[e.unknown_row], e.log_hazard_reduced)
    ll_reduced = e.per_patient(value, reduced, pt)[e.unknown_patient]
    mixed = pt.logaddexp(e.log_w_reduced + ll_reduced, e.log_w_preserved + ll[e.unknown_patient])
    return pt.set_subtensor(ll[e.unknown_patient], mixed)


def _event_logp_all_known(value, *inputs):
    """Per-patient log-likelihood of the end of follow-up when every status is known."""
    e = _EventInputs(*inputs)
    return e.per_patient(value, e.log_hazard, pt)


def with_drawn_status(
    log_hazard: np.ndarray,
    log_hazard_reduced: np.ndarray,
    log_w_reduced: np.ndarray,
    row_patient: np.ndarray,
    unknown_patient: np.ndarray,
    unknown_row: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The log hazard at every row, each unknown early-sural status drawn.

    A patient whose status is unknown is "reduced" with probability
    ``exp(log_w_reduced)`` (given their scores); their rows (``unknown_row``) then take
    ``log_hazard_reduced``. Used by the predictive draws and by SBC's event times.
    """
    log_hazard = np.array(log_hazard, float)
    unknown_patient = np.asarray(unknown_patient, int)
    unknown_row = np.asarray(unknown_row, int)
    if len(unknown_patient):
        reduced = rng.random(len(unknown_patient)) < np.exp(np.asarray(log_w_reduced))
        slot = np.searchsorted(unknown_patient, np.asarray(row_patient, int)[unknown_row])
        log_hazard[unknown_row] = np.where(
            reduced[slot], np.asarray(log_hazard_reduced), log_hazard[unknown_row]
        )
    return log_hazard


def _event_random(*inputs, rng=None, size=None):
    """Events over each patient's observed time at risk (Poisson counts).

    Their mean is the cumulative hazard from entry to the end of follow-up. Follow-up
    that ended with the event is cut at it, so drawing "event or not" over the observed
    time at risk would predict too few events for a model that is right; the cumulative
    hazards, summed, are the number of events the model expects (the observed-against-
    expected check of survival models). So the predictive draws are counts, not outcome
    codes.
    """
    e = _EventInputs(*(np.asarray(x) for x in inputs))
    row_patient = np.concatenate([e.node_patient, e.event_patient]).astype(int)
    log_hazard = with_drawn_status(
        e.log_hazard,
        e.log_hazard_reduced,
        e.log_w_reduced,
        row_patient,
        e.unknown_patient,
        e.unknown_row,
        rng,
    )
    e = e._replace(
        node_patient=e.node_patient.astype(int), event_patient=e.event_patient.astype(int)
    )
    cumulative = e.per_patient(e.patients, log_hazard, np)
    # a prior draw can put a hazard far beyond any cohort's (numpy refuses a mean of
    # 1e19 or more): at 1e12 expected events the count says "certain" as well
    return rng.poisson(np.minimum(cumulative, 1e12)).astype("int64")


def finalise(tree: xr.DataTree, design: Design) -> xr.DataTree:
    """The progression model's layout of the scores; the end of follow-up keeps its patients."""
    tree = progression.finalise(tree, design)
    for group in ("posterior_predictive", "log_likelihood", "observed_data"):
        if group in tree.children and "end_of_follow_up" in tree[group].data_vars:
            ds = tree[group].to_dataset()
            ds = ds.assign_coords(patient=design.coords["patient"])
            tree[group] = xr.DataTree(ds)
    return tree


def plot_event_check(result: Any, path: Any) -> str:
    """Posterior predictive check of the event part: events observed against expected.

    Left: the predictive distribution of the number of events over the observed time at
    risk (:meth:`_EventLayout.random`), with the observed number. Right: patients in thirds
    of their expected number of events; in each, the observed events against the predictive
    94% interval.

    Returns
    -------
    str
        The caption.
    """
    from matplotlib.figure import Figure

    predicted = result.posterior["posterior_predictive"]["end_of_follow_up"]
    observed = np.asarray(result.posterior["observed_data"]["end_of_follow_up"].values) > 0
    draws = np.asarray(predicted.values).reshape(-1, observed.size)
    totals = draws.sum(axis=1)
    thirds = np.array_split(np.argsort(draws.mean(axis=0), kind="stable"), 3)
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.hist(totals, bins=np.arange(totals.min(), totals.max() + 2) - 0.5, color="#9ecae1")
    left.axvline(observed.sum(), color="black", lw=2, label=f"observed: {observed.sum()}")
    left.set_xlabel("events over the observed time at risk (posterior predictive)")
    left.set_ylabel("draws")
    left.legend()
    for k, members in enumerate(thirds):
        low, high = np.quantile(draws[:, members].sum(axis=1), [0.03, 0.97])
        right.plot([k, k], [low, high], color="#3182bd", lw=6, alpha=0.5)
        right.plot(k, observed[members].sum(), "o", color="black")
    right.set_xticks(range(3), ["lowest third", "middle third", "highest third"])
    right.set_xlabel("patients by expected number of events")
    right.set_ylabel("events")
    fig.savefig(path, dpi=110)
    return (
        f"Observed events ({int(observed.sum())} of {observed.size} patients) against those "
        "the model expects over the observed time at risk: the total (left) and in thirds "
        "of the patients by their expected events (right: dots observed, bars 94% predictive "
        "intervals). Events outside the bars point to a hazard the model does not capture."
    )
