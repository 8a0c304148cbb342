r"""Predictions of the joint model: disability and the probability of remaining event-free.

The trajectory is the progression model's (:mod:`magbayes.models.progression.predictions`:
the same latent disability :math:`\eta_i(t)` under a treatment history, the same scores).
The event (death, or death or loss to follow-up) has the joint model's hazard
(:mod:`magbayes.models.joint.cohort_model`)

.. math::

    h_i(t) = h_0(t)\,\exp\big(\alpha\,\eta_i(t) + w_{s(i)} + z_i^\top\beta_{\mathrm{event}}
        + \beta_{\mathrm{rtx}}\,n_{i,\mathrm{rtx}}(t)\big),

so the event depends on the trajectory that each strategy gives (current-value association;
with ``[event] association = "value_and_slope"`` the log hazard also has
:math:`\alpha_{\mathrm{slope}}\,\eta_i'(t)`, as in the fit). The prediction is the
probability of being event-free at :math:`t` given event-free at the time of prediction
:math:`t_0` (the patient's last visit, or their end of follow-up when it came later without
the event),

.. math::

    S_i(t \mid t_0) = \exp\big(-(H_i(t) - H_i(t_0))\big), \qquad
    H_i(t) = \int^t h_i(u)\,du,

per posterior draw, 1 at and before :math:`t_0`. :math:`H` is integrated by
Gauss-Legendre quadrature on each stretch between treatment starts, the baseline's piece
boundaries and the prediction times, with the fit's own node placement
(:func:`magbayes.models.joint.events.stretch_nodes`) and number of nodes.

Where each patient's draws come from:

- a **fitted patient**: their own posterior draws; an unknown early-sural status is drawn
  per draw from its posterior given their scores *and* their end of follow-up;
- a **new patient**: sampling-importance-resampling over the posterior draws
  (:func:`~magbayes.models.progression.predictions.resample_new_patient`), weighted by the
  likelihood of their scores and of their being event-free from their first visit with
  the score to :math:`t_0` (their hospital's frailty, or an unseen hospital's drawn
  from the frailties' spread).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from magbayes.models.joint.cohort_model import hazard_grid
from magbayes.models.joint.events import (
    CENSORED,
    EVENT,
    EVENT_IN_INTERVAL,
    EVENT_REASONS,
    entry_years,
    stretch_nodes,
)
from magbayes.models.patient_context import fitted_covariates, new_site_offsets
from magbayes.models.progression import predictions as progression
from magbayes.models.progression.predictions import Exposure, Population, latent, latent_rate
from magbayes.models.worsening.predictions import Baseline


class JointPredictor(progression.Predictor):
    """Predictions of a joint fit for the patients of a cohort: trajectory and event.

    Parameters
    ----------
    result : FitResult
        A joint fit (reloaded or in memory).
    cohort : Cohort
        The patients to predict for: patients of the fit (by id) use their own posterior,
        the others are new patients conditioned on their visits and on being event-free
        up to their last visit, or up to a later end of follow-up without the event.
    seed : int
        Random seed.
    """

    def __init__(self, result: Any, cohort: Any, seed: int = 0):
        super().__init__(result, cohort, seed=seed)
        event = self.spec.section("event")
        self.kind = str(event["kind"])
        self.n_nodes = int(event["quadrature_nodes"])
        self.grid = hazard_grid(self.spec)
        self._follow_up: pd.DataFrame | None = None  # the cohort's, read when first needed
        posterior = result.posterior["posterior"].to_dataset()
        c = self.constant
        names = [str(x) for x in c["covariate"].values] if "covariate" in c.coords else []
        hazard = (
            [str(x) for x in posterior["event_covariate"].values]
            if "event_beta_covariate" in posterior
            else []
        )
        self._columns = np.asarray([names.index(x) for x in hazard], int)
        self._covariates = (
            fitted_covariates(posterior, c, self.binary) if len(self._columns) else None
        )
        self._histories: dict[tuple, tuple] = {}

    # ------------------------------------------------------------------ the hazard
    def _hazard_offset(
        self, population: Population, frailty: np.ndarray, covariates: np.ndarray | None
    ) -> np.ndarray:
        """Hospital frailty plus covariates of the log hazard, ``(sample, [candidate])``."""
        if covariates is None or not len(self._columns):
            return frailty
        beta = population.params["event_beta_covariate"]
        x = covariates[..., self._columns]
        return frailty + np.einsum("s...c,sc->s...", x, beta)

    def hazard_offset(self, patient_id: str) -> np.ndarray:
        """The patient's frailty plus covariates of the log hazard, ``(sample,)``."""
        p = self.population
        if patient_id in self._fitted:
            i = self._fitted[patient_id]
            site = self.site_index(patient_id)
            frailty = (
                p.params["event_site_frailty"][:, site]
                if "event_site_frailty" in p.params
                else np.zeros(p.n_samples)
            )
            covariates = None if self._covariates is None else self._covariates[:, i]
            return self._hazard_offset(p, frailty, covariates)
        context = self.draws(patient_id).context
        return self._hazard_offset(p, context["event_frailty"], context.get("covariates"))

    def _log_hazard(
        self,
        population: Population,
        offset: np.ndarray,
        trajectory: tuple[np.ndarray, np.ndarray, np.ndarray],
        years: np.ndarray,
        exposure: Exposure,
    ) -> np.ndarray:
        """``log h(t)`` at ``years`` (sample, [candidate,] time).

        ``trajectory`` is ``(level, rate, reduced)``, each ``(sample, [candidate])``: the
        latent disability at ``years`` (and, with ``[event] association =
        "value_and_slope"``, its rate of change) comes from them and ``exposure``.
        """
        p = population
        eta = latent(p, *trajectory, years, exposure)
        extra = eta.ndim - 2
        n = p.n_samples

        def per_draw(values: np.ndarray) -> np.ndarray:
            return np.asarray(values).reshape(n, *([1] * (extra + 1)))

        log_h0 = Baseline(p.params, self.grid).log_hazard_at(
            np.broadcast_to(years, (n, len(years)))
        )
        log_h0 = log_h0.reshape(n, *([1] * extra), len(years))
        return (
            log_h0
            + np.asarray(offset)[..., None]
            + per_draw(p.get("event_rituximab")) * exposure.rituximab_started
            + per_draw(p.params["association"]) * eta
            + self._slope_term(p, trajectory, exposure, per_draw)
        )

    @staticmethod
    def _slope_term(population, trajectory, exposure, per_draw) -> np.ndarray | float:
        """``association_slope`` times the latent rate of change; 0 without that option."""
        if "association_slope" not in population.params:
            return 0.0
        level, rate, reduced = trajectory
        slope = latent_rate(population, rate, reduced, exposure)
        return per_draw(population.params["association_slope"]) * slope

    def stretch_hazards(
        self,
        population: Population,
        draws: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        courses: pd.DataFrame,
        start: float,
        stop: float,
        cuts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The cumulative hazard on each stretch of ``[start, stop]`` under a history.

        Parameters
        ----------
        population : Population
            Population draws.
        draws : tuple
            ``(level, rate, reduced, offset)``, ``(sample, [candidate])`` each.
        courses : pandas.DataFrame
            The treatment history (every course start cuts a stretch, as in the fit).
        start, stop : float
            Years since onset.
        cuts : numpy.ndarray
            Further cuts (prediction times, an interval's lower bound).

        Returns
        -------
        edges : numpy.ndarray
            ``(stretch + 1,)``, years since onset.
        hazards : numpy.ndarray
            ``(sample, [candidate,] stretch)``: the integral of the hazard on each.
        """
        level, rate, reduced, offset = draws
        starts = courses["start_years"].to_numpy(float)
        edges, years, weight = stretch_nodes(
            start, stop, np.concatenate([starts, np.asarray(cuts, float)]), self.grid, self.n_nodes
        )
        if not years.size:
            return edges, np.zeros((*np.shape(level), 0))
        at = years.ravel()
        exposure = Exposure.of(courses, at, population.treatments)
        log_h = self._log_hazard(population, offset, (level, rate, reduced), at, exposure)
        per_node = np.exp(log_h) * weight.ravel()
        return edges, per_node.reshape(*per_node.shape[:-1], *years.shape).sum(axis=-1)

    def event_log_likelihood(
        self,
        population: Population,
        draws: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        courses: pd.DataFrame,
        outcome: dict[str, float],
    ) -> np.ndarray:
        r"""Log-likelihood per draw of an end of follow-up (the fit's, term by term).

        ``outcome``: ``entry``, ``end``, ``lower`` (years since onset; ``lower`` NaN
        unless the event lies in ``(lower, end]``) and ``outcome`` (:data:`CENSORED`,
        :data:`EVENT`, :data:`EVENT_IN_INTERVAL`). Censored: :math:`-H(e, T)`; event at
        :math:`T`: :math:`\log h(T) - H(e, T)`; in :math:`(L, T]`:
        :math:`-H(e, L) + \log(1 - e^{-H(L, T)})`.
        """
        entry, end, lower = outcome["entry"], outcome["end"], outcome["lower"]
        kind = int(outcome["outcome"])
        edges, hazards = self.stretch_hazards(population, draws, courses, entry, end, [lower])
        after = np.isfinite(lower) & (edges[:-1] >= lower)
        before = hazards[..., ~after].sum(axis=-1)
        if kind == EVENT_IN_INTERVAL:
            within = np.maximum(hazards[..., after].sum(axis=-1), 1e-300)
            return -before + np.log(-np.expm1(-within))
        ll = -before - hazards[..., after].sum(axis=-1)
        if kind == EVENT:
            level, rate, reduced, offset = draws
            at = np.array([end])
            exposure = Exposure.of(courses, at, population.treatments)
            trajectory = (level, rate, reduced)
            ll = ll + self._log_hazard(population, offset, trajectory, at, exposure)[..., 0]
        return ll

    # ------------------------------------------------------------------ fitted patients
    def fitted_outcome(self, patient_id: str) -> dict[str, float]:
        """A fitted patient's time at risk and end of follow-up, as the fit saw them."""
        i, c = self._fitted[patient_id], self.constant
        return {
            "entry": float(c["event_entry_years"].values[i]),
            "end": float(c["event_end_years"].values[i]),
            "lower": float(c["event_lower_years"].values[i]),
            "outcome": int(c["event_outcome"].values[i]),
        }

    def _fitted_event_log_likelihood(self, patient_id: str, reduced: np.ndarray) -> np.ndarray:
        i = self._fitted[patient_id]
        p = self.population
        draws = (self._level[:, i], self._rate[:, i], reduced, self.hazard_offset(patient_id))
        return self.event_log_likelihood(
            p, draws, self.courses(patient_id), self.fitted_outcome(patient_id)
        )

    def status_evidence(
        self, patient_id: str, level: np.ndarray, rate: np.ndarray
    ) -> np.ndarray | None:
        """The end of follow-up's log-likelihood ratio, reduced against preserved, per draw."""
        ones = np.ones(self.population.n_samples)
        return self._fitted_event_log_likelihood(
            patient_id, ones
        ) - self._fitted_event_log_likelihood(patient_id, 0.0 * ones)

    def fitted_end_of_follow_up_log_likelihood(self, patient_id: str) -> np.ndarray:
        """A fitted patient's log-likelihood of their end of follow-up per draw ``(sample,)``.

        The fit's ``end_of_follow_up`` term: for an unknown early-sural status, the two
        statuses' likelihoods weighted by the status's probability given the scores and
        the prevalence.
        """
        p = self.population
        ones = np.ones(p.n_samples)
        status = self._status[patient_id]
        if status is not None:
            return self._fitted_event_log_likelihood(patient_id, status * ones)
        i = self._fitted[patient_id]
        visits = self.visits(patient_id)
        years = visits["years_since_onset"].to_numpy(float)
        observed = self._observed(visits)
        exposure = Exposure.of(self.courses(patient_id), years, p.treatments)
        level, rate = self._level[:, i], self._rate[:, i]
        prevalence = p.get("sural_reduced_prevalence", 0.5)
        score = {
            s: progression.log_likelihood(
                p, latent(p, level, rate, s * ones, years, exposure), observed
            )
            for s in (0.0, 1.0)
        }
        a = np.log(prevalence) + score[1.0]
        b = np.log1p(-prevalence) + score[0.0]
        total = np.logaddexp(a, b)
        return np.logaddexp(
            a - total + self._fitted_event_log_likelihood(patient_id, ones),
            b - total + self._fitted_event_log_likelihood(patient_id, 0.0 * ones),
        )

    # ------------------------------------------------------------------ new patients
    def at_risk_from(self, patient_id: str) -> float:
        """Start of the time at risk: the first visit with the score (the fit's rule)."""
        return float(entry_years(self.cohort, [patient_id], self.score)[0])

    def new_patient_likelihood(self, patient_id: str) -> Any:
        """Being event-free from the first visit with the score to :meth:`event_free_until`."""
        entry, stop = self.at_risk_from(patient_id), self.event_free_until(patient_id)
        courses = self.courses(patient_id)

        def for_candidates(candidates: Any):
            p = candidates.population
            frailty = new_site_offsets(
                p.params, "event_site_frailty", candidates.patient.site, candidates.shape, self.rng
            )
            candidates.context["event_frailty"] = frailty
            offset = self._hazard_offset(p, frailty, candidates.context.get("covariates"))

            def log_lik(level: np.ndarray, rate: np.ndarray) -> np.ndarray:
                if stop <= entry:
                    return np.zeros(candidates.shape)
                draws = (level, rate, candidates.reduced, offset)
                return -self.stretch_hazards(p, draws, courses, entry, stop, [])[1].sum(axis=-1)

            return log_lik

        return for_candidates

    # ------------------------------------------------------------------ predictions
    def histories_under(self, patient_id: str, strategy: Any, years: np.ndarray):
        """The progression model's histories, kept: the trajectory and the event share them."""
        key = (patient_id, strategy, tuple(np.asarray(years, float)))
        if key not in self._histories:
            self._histories[key] = super().histories_under(patient_id, strategy, years)
        return self._histories[key]

    def event_free(self, patient_id: str, strategy: Any, years: np.ndarray) -> np.ndarray:
        """``S(t | t0)`` per draw ``(sample, time)`` under a strategy (1 at and before t0)."""
        years = np.asarray(years, float)
        p, draws = self.population, self.draws(patient_id)
        t0 = self.event_free_until(patient_id)
        out = np.ones((p.n_samples, len(years)))
        later = years > t0
        if not later.any():
            return out
        offset = self.hazard_offset(patient_id)
        histories, _ = self.histories_under(patient_id, strategy, years)
        for chosen, courses in histories:
            rows = np.nonzero(chosen)[0]
            sub = p.subset(rows) if len(rows) < p.n_samples else p
            mine = (draws.level[rows], draws.rate[rows], draws.reduced[rows], offset[rows])
            edges, hazards = self.stretch_hazards(
                sub, mine, courses, t0, float(years.max()), years[later]
            )
            cumulative = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(hazards, -1)], -1)
            at = np.searchsorted(edges, years[later])
            out[np.ix_(rows, np.nonzero(later)[0])] = np.exp(-cumulative[:, at])
        return out

    def event_free_until(self, patient_id: str) -> float:
        """Until when the patient is known to be event-free (years since onset): ``t0``.

        Their last visit, or their end of follow-up when it came later without the event
        (alive at the study's end, or lost to follow-up when the event is death): the fit's
        end of the time at risk for a patient of the fit, the cohort's ``end_years`` for a
        new one.
        """
        last_visit = self.now(patient_id)
        if self.is_fitted(patient_id):
            outcome = self.fitted_outcome(patient_id)
            if outcome["outcome"] == CENSORED:
                return max(last_visit, outcome["end"])
            return last_visit
        row = self._recorded_end(patient_id)
        if row is None or str(row["end_reason"]) in EVENT_REASONS[self.kind]:
            return last_visit
        end = float(row["end_years"])
        return last_visit if np.isnan(end) else max(last_visit, end)

    def _recorded_end(self, patient_id: str) -> pd.Series | None:
        """The cohort's end of follow-up of a patient (``Cohort.follow_up``), if it has one."""
        if "end_years" not in self.cohort.patients.columns:
            return None
        if self._follow_up is None:
            self._follow_up = self.cohort.follow_up
        return self._follow_up.loc[patient_id]

    def event_seen_at(self, patient_id: str) -> float:
        """When the cohort records the patient's event (years since onset; NaN: none).

        For an event known only to lie between two contacts, the later one.
        """
        row = self._recorded_end(patient_id)
        if row is not None and str(row["end_reason"]) in EVENT_REASONS[self.kind]:
            return float(row["end_years"])
        return float("nan")


def predict(
    result: Any,
    cohort: Any,
    *,
    years: np.ndarray,
    strategies: list[Any],
    threshold: float | None = None,
    patients: list[str] | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Predictions of a joint fit: the progression model's, and the event-free probability.

    Parameters
    ----------
    result : FitResult
        A joint fit.
    cohort : Cohort
        The patients to predict for (fitted or new).
    years : numpy.ndarray
        Years since onset to predict at.
    strategies : list of Strategy
        Treatment strategies (:mod:`magbayes.predict.strategies`), ``on_rise`` included.
    threshold : float, optional
        The score counted as disabled (the progression model's default).
    patients : list of str, optional
        Which patients (default every patient of ``cohort``).
    seed : int
        Random seed.

    Returns
    -------
    xarray.Dataset
        The progression model's variables
        (:func:`magbayes.models.progression.predictions.predict`), and ``event_free``
        (patient, strategy, time): the posterior mean probability of being free of the
        event (the spec's ``[event] kind``) at ``time`` given event-free at
        ``event_free_from``, with ``event_free_hdi_low`` / ``event_free_hdi_high`` (its
        HDI over draws); per patient ``event_free_from`` (the time of prediction: the
        last visit, years since onset) and ``event_seen_at`` (when the cohort records the
        patient's event, NaN: none recorded).
    """
    import arviz as az

    predictor = JointPredictor(result, cohort, seed=seed)
    out = progression.predict(
        result,
        cohort,
        years=years,
        strategies=strategies,
        threshold=threshold,
        patients=patients,
        seed=seed,
        predictor=predictor,
    )
    ids = [str(p) for p in out["patient"].values]
    years = np.asarray(years, float)
    shape = predictor.population.shape
    mean, low, high = [], [], []
    for pid in ids:
        curves = [
            predictor.event_free(pid, s, years).reshape(*shape, len(years)) for s in strategies
        ]
        draws = xr.DataArray(np.stack(curves), dims=("strategy", "chain", "draw", "time"))
        hdi = az.hdi(draws, prob=result.hdi_prob)
        mean.append(draws.mean(("chain", "draw")).values)
        low.append(hdi.sel(ci_bound="lower").transpose("strategy", "time").values)
        high.append(hdi.sel(ci_bound="upper").transpose("strategy", "time").values)
    dims3 = ("patient", "strategy", "time")
    out["event_free"] = (dims3, np.asarray(mean))
    out["event_free_hdi_low"] = (dims3, np.asarray(low))
    out["event_free_hdi_high"] = (dims3, np.asarray(high))
    out["event_free_from"] = (
        ("patient",),
        np.array([predictor.event_free_until(p) for p in ids]),
    )
    out["event_seen_at"] = (("patient",), np.array([predictor.event_seen_at(p) for p in ids]))
    event = predictor.kind.replace("_", " ")
    out.attrs.update(
        {
            "model": "joint",
            "event": event,
            "event_free": f"probability of no {event} by the time, given none by "
            "event_free_from (the last visit, or a later end of follow-up without it)",
        }
    )
    return out


def timing_contrast(result: Any, cohort: Any, *, seed: int = 0) -> xr.Dataset:
    """Prompt against delayed rituximab on the joint fit's trajectory, per posterior draw.

    The progression model's answer (:func:`magbayes.models.progression.predictions.
    timing_contrast`: expected score and P(disabled) at its horizon, prompt minus delayed,
    by early-sural group) from the joint posterior, whose trajectory is corrected for
    informative dropout, with unknown early-sural statuses drawn given the scores and the
    end of follow-up.
    """
    return progression.timing_contrast(result, cohort, seed=seed, predictor_type=JointPredictor)
