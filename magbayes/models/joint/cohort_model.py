r"""Joint model of a cohort: the progression model's trajectory and the death that follows it.

The disability score follows the progression model (:mod:`magbayes.models.progression`:
the same variables, built by the same code): patient :math:`i` has latent disability
:math:`\eta_i(t)` at :math:`t` years since onset. The event (death, or death or loss to
follow-up) has hazard

.. math::

    h_i(t) = h_0(t)\,\exp\big(\alpha\,\eta_i(t) + w_{s(i)} + z_i^\top\beta_{\mathrm{event}}
        + \beta_{\mathrm{rtx}}\,n_{i,\mathrm{rtx}}(t)\big)

with :math:`\alpha` the **association** (log hazard ratio per latent logit of current
disability), :math:`h_0` a Weibull (or piecewise-constant) baseline at latent disability 0
(about the cohort's median score), :math:`w` the hospitals' log frailties (pooled),
:math:`z_i` standardised covariates and :math:`n_{i,\mathrm{rtx}}(t)` the rituximab courses
started by :math:`t`. A patient is at risk from their first visit with the score to their
end of follow-up; a death known only to lie between two contacts is interval-censored, other
ends of follow-up are censoring times (:mod:`magbayes.models.joint.events`). The cumulative
hazard is integrated by Gauss-Legendre quadrature on each stretch between treatment starts.

An unknown early-sural status changes both parts. The likelihood is factorised as
:math:`p(\mathrm{scores})\,p(\mathrm{end} \mid \mathrm{scores})`: ``score`` is the progression
model's (the status summed out with the prevalence), and ``end_of_follow_up`` sums it out with
the status's probability given the patient's scores. So ``score``'s pointwise log-likelihood is
the progression model's, comparable with it by PSIS-LOO on the same cohort, and the sum of both
is the patient's joint log-likelihood.
"""

from __future__ import annotations

from typing import Any

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
    entry_years,
    event_arrays,
)
from magbayes.spec import Spec

NAME = "joint"

#: Every key of the spec with its default: the spec file ``models/joint.toml``.
DEFAULTS: dict[str, Any] = shipped_defaults(NAME)

#: Baseline hazards of the event (``[event] baseline``).
BASELINES = ("weibull", "piecewise")


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
    exact = np.nonzero(arrays.outcome == EVENT)[0]
    row_patient = np.concatenate([arrays.node_patient, exact]).astype(int)
    row_years = np.concatenate([arrays.node_years, arrays.end[exact]])
    pos = set(patient_ids)
    courses = cohort.treatments[cohort.treatments["patient_id"].isin(pos)]
    exposure = progression._course_exposure(
        courses,
        np.asarray(patient_ids, dtype=object)[row_patient],
        row_years,
        base.coords["treatment"],
    )
    known = base.data["sural_known"].astype(bool)
    reduced_known = (known & (base.data["sural_reduced"] == 1)).astype(float)
    matrix = progression.exposure_matrix(
        exposure,
        reduced_known[row_patient],
        len(base.coords["treatment"]),
        spec.section("treatments"),
    )
    data = dict(base.data)
    data.update(
        {
            "event_entry_years": arrays.entry,
            "event_end_years": arrays.end,
            "event_lower_years": arrays.lower,
            "event_outcome": arrays.outcome,
            "hazard_row_patient": row_patient,
            "hazard_row_years": row_years,
            "hazard_node_weight": arrays.node_weight,
            "hazard_node_after_lower": arrays.node_after_lower,
            "hazard_exposure": matrix,
            "hazard_rituximab_years": np.asarray(exposure["rituximab_years"], float),
            "hazard_rituximab_started": np.asarray(exposure["rituximab_started"], float),
            "hazard_covariate_index": np.asarray(
                [covariates.index(c) for c in hazard_covariates], int
            ),
        }
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


class _Points:
    """Times at which a survival baseline gives its log hazard (its segment-end interface)."""

    def __init__(self, years: np.ndarray, grid: np.ndarray | None):
        self.segment_stop = np.asarray(years, float)
        if grid is None:
            self.segment_piece = np.zeros(len(years), int)
        else:
            self.segment_piece = np.searchsorted(grid, self.segment_stop, side="right") - 1


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
        observed_score = progression.add_score(design, trajectory)
        _add_event(design, spec, trajectory, observed_score, model)
    return model


def _add_event(
    design: Design,
    spec: Spec,
    trajectory: progression.Trajectory,
    observed_score: Any,
    model: pm.Model,
) -> None:
    """The event part, in the current model."""
    d = design.data
    event = spec.section("event")
    grid = hazard_grid(spec)
    row_patient = np.asarray(d["hazard_row_patient"], int)
    row_years = np.asarray(d["hazard_row_years"], float)
    n_nodes = len(d["hazard_node_weight"])
    known = d["sural_known"].astype(bool)
    unknown_patient = np.nonzero(~known)[0]
    unknown_row = np.nonzero(~known[row_patient])[0]

    years = pm.Data("hazard_row_years", row_years)
    patient = pm.Data("hazard_row_patient", row_patient)
    eta = (
        trajectory.level[patient]
        + trajectory.rate[patient] * years
        + pt.dot(
            pm.Data("hazard_exposure", np.asarray(d["hazard_exposure"], float)),
            trajectory.coefficient,
        )
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
    points = _Points(row_years, grid)
    log_h0 = baseline.log_hazard_at_segment_end(points, np.arange(len(row_years)))
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
        columns = np.asarray(d["hazard_covariate_index"], int)
        per_patient = per_patient + pt.dot(trajectory.covariates[:, columns], beta)
    event_rituximab = pm.Normal("event_rituximab", 0.0, _prior(spec, "event_rituximab_sd"))
    rituximab_started = pm.Data(
        "hazard_rituximab_started", np.asarray(d["hazard_rituximab_started"], float)
    )
    log_hazard = (
        log_h0 + per_patient[patient] + event_rituximab * rituximab_started + association * eta
    )
    # under "reduced", for the rows of patients whose early-sural status is unknown
    shift = (
        trajectory.rate_sural * row_years[unknown_row]
        + trajectory.gamma_x * np.asarray(d["hazard_rituximab_years"], float)[unknown_row]
    )
    log_hazard_reduced = log_hazard[unknown_row] + association * shift
    if len(unknown_patient):
        if_chosen, if_reduced = progression.score_loglik_by_status(
            trajectory.family,
            trajectory.layout,
            observed_score,
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

    layout = _EventLayout(
        n_patients=len(design.coords["patient"]),
        n_nodes=n_nodes,
        row_patient=row_patient,
        node_weight=np.asarray(d["hazard_node_weight"], float),
        node_after_lower=np.asarray(d["hazard_node_after_lower"], bool),
        unknown_patient=unknown_patient,
        unknown_row=unknown_row,
    )
    pm.CustomDist(
        "end_of_follow_up",
        pm.Data("event_patient_index", np.arange(layout.n_patients)),  # the output's length
        log_hazard,
        log_hazard_reduced,
        log_w_reduced,
        log_w_preserved,
        logp=layout.logp,
        random=layout.random,
        signature="(p),(r),(u),(q),(q)->(p)",
        observed=pm.Data("event_outcome_observed", np.asarray(d["event_outcome"], "int64")),
        dims=("patient",),
        dtype="int64",
    )


class _EventLayout:
    """Per-patient log-likelihood of the end of follow-up from the log hazard at each row."""

    def __init__(
        self,
        *,
        n_patients: int,
        n_nodes: int,
        row_patient: np.ndarray,
        node_weight: np.ndarray,
        node_after_lower: np.ndarray,
        unknown_patient: np.ndarray,
        unknown_row: np.ndarray,
    ):
        self.n_patients = n_patients
        self.n_nodes = n_nodes
        self.row_patient = row_patient
        self.node_patient = row_patient[:n_nodes]
        self.event_patient = row_patient[n_nodes:]
        self.node_weight = node_weight
        self.node_after_lower = node_after_lower
        self.unknown_patient = unknown_patient
        self.unknown_row = unknown_row

    def _per_patient(self, value, log_hazard, lib):
        """Log-likelihood of each patient's outcome given the log hazard at every row."""
        hazard = self.node_weight * lib.exp(log_hazard[: self.n_nodes])
        before = np.where(~self.node_after_lower)[0]
        after = np.where(self.node_after_lower)[0]
        if lib is pt:
            zeros = pt.zeros(self.n_patients)
            h_before = pt.inc_subtensor(zeros[self.node_patient[before]], hazard[before])
            h_after = pt.inc_subtensor(zeros[self.node_patient[after]], hazard[after])
            at_event = pt.inc_subtensor(zeros[self.event_patient], log_hazard[self.n_nodes :])
            interval = pt.log(-pt.expm1(-pt.maximum(h_after, 1e-300)))
            return (
                -h_before
                + pt.switch(pt.eq(value, EVENT_IN_INTERVAL), interval, -h_after)
                + pt.switch(pt.eq(value, EVENT), at_event, 0.0)
            )
        h_total = np.zeros(self.n_patients)
        np.add.at(h_total, self.node_patient, hazard)
        return h_total

    def logp(self, value, patients, log_hazard, log_hazard_reduced, log_w_reduced, log_w_preserved):
        ll = self._per_patient(value, log_hazard, pt)
        if not len(self.unknown_patient):
            return ll
        reduced = pt.set_subtensor(log_hazard[self.unknown_row], log_hazard_reduced)
        ll_reduced = self._per_patient(value, reduced, pt)[self.unknown_patient]
        mixed = pt.logaddexp(log_w_reduced + ll_reduced, log_w_preserved + ll[self.unknown_patient])
        return pt.set_subtensor(ll[self.unknown_patient], mixed)

    def random(
        self,
        patients,
        log_hazard,
        log_hazard_reduced,
        log_w_reduced,
        log_w_preserved,
        rng=None,
        size=None,
    ):
        """Events over each patient's observed time at risk (Poisson counts).

        Their mean is the cumulative hazard from entry to the end of follow-up. Follow-up
        that ended with the event is cut at it, so drawing "event or not" over the observed
        time at risk would predict too few events for a model that is right; the cumulative
        hazards, summed, are the number of events the model expects (the observed-against-
        expected check of survival models). So the predictive draws are counts, not outcome
        codes.
        """
        log_hazard = np.array(log_hazard, float)
        if len(self.unknown_patient):
            reduced = rng.random(len(self.unknown_patient)) < np.exp(np.asarray(log_w_reduced))
            slot = np.searchsorted(self.unknown_patient, self.row_patient[self.unknown_row])
            log_hazard[self.unknown_row] = np.where(
                reduced[slot], np.asarray(log_hazard_reduced), log_hazard[self.unknown_row]
            )
        cumulative = self._per_patient(None, log_hazard, np)
        return rng.poisson(cumulative).astype("int64")


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
