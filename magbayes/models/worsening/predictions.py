r"""Predictions of the worsening model: a patient's worsening-free probability under a strategy.

For patient :math:`i` the model's hazard of confirmed worsening at :math:`t` years since
onset (:mod:`magbayes.models.worsening`) is

.. math::

    h_i(t) = h_0(t)\,\exp\big(u_{s(i)} + x_i^\top\beta_{\mathrm{cov}}
        + \beta_{\mathrm{sural}}\,\mathrm{sural}_i + \sum_k n_{ik}(t)\,\beta_k
        + n_{i,\mathrm{rtx}}(t)\,(\beta_{\mathrm{rtx}}
        + \beta_{\mathrm{rtx}\times\mathrm{sural}}\,\mathrm{sural}_i)\big)

with :math:`n_{ik}(t)` the courses of treatment :math:`k` started by :math:`t`. A
*treatment history* (the patient's own, or one a strategy makes) fixes the
:math:`n_{ik}(t)`, which change only at course starts, so the cumulative hazard is exact:
on each stretch between starts, the linear predictor is constant and the baseline's
cumulative hazard :math:`H_0` is closed-form (piecewise-constant or Weibull). The
prediction is the probability of remaining free of confirmed worsening from the patient's
baseline visit :math:`e` (the first visit with the score; onset for a patient without
one), :math:`S_i(t) = \exp(-\int_e^t h_i)`, 1 before :math:`e`.

The model has no patient-level random effect: what a patient's own visits tell about them
is their early-sural status where it is unknown (and, weakly, their missing covariates and
an unseen site's frailty). Per posterior draw:

- a **fitted patient** takes their site's frailty and their imputed covariates from the
  posterior; an unknown status is drawn from its posterior given the parameters, i.e.
  with odds prevalence / (1 - prevalence) times the likelihood ratio of their observed
  outcome (worsening in :math:`(L, R]`, or none by :math:`C`) under each status;
- a **new patient** is sampled-importance-resampled: :data:`PARTICLES` candidates per
  draw (an unknown status from the prevalence, missing covariates from the imputation
  model, an unseen site's frailty from its spread), weighted by the likelihood of their
  outcome so far, one kept. Without time at risk yet, the weights are equal: the
  population's predictive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import expit, logsumexp

from magbayes.errors import SpecError
from magbayes.models import survival
from magbayes.models.patient_context import (
    binary_covariates,
    first_rituximab,
    fitted_covariates,
    flat,
    new_covariates,
    new_patient,
    new_site_offsets,
    new_sural_status,
)
from magbayes.models.worsening.design import hazard_grid
from magbayes.models.worsening.events import worsening_outcomes

#: Candidate patients per posterior draw for a new patient (importance sampling).
PARTICLES = 32


class Baseline:
    r"""The baseline hazard's draws: cumulative :math:`H_0(t)` and :math:`\log h_0(t)`.

    Parameters
    ----------
    params : dict of numpy.ndarray
        Population draws ``(sample, ...)``: ``baseline_log_hazard`` (piecewise) or
        ``weibull_shape`` and ``weibull_log_scale``.
    grid : numpy.ndarray or None
        Piece boundaries (years since onset, last ``inf``); ``None`` for Weibull.
    """

    def __init__(self, params: dict[str, np.ndarray], grid: np.ndarray | None):
        self.grid = grid
        if grid is not None:
            self.log_hazard = params["baseline_log_hazard"]
            self.hazard = np.exp(self.log_hazard)
            widths = np.diff(grid[:-1])
            self.at_piece_start = np.concatenate(
                [np.zeros((len(self.hazard), 1)), np.cumsum(self.hazard[:, :-1] * widths, axis=1)],
                axis=1,
            )
        else:
            self.shape = params["weibull_shape"]
            self.log_scale = params["weibull_log_scale"]

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        """:math:`H_0(t)` from onset at times ``t`` of shape ``(sample, ...)``, years."""
        t = np.asarray(t, float)
        if self.grid is not None:
            # the pieces before t's in full, then t's own piece up to t
            t = np.maximum(t, 0.0)
            piece = np.clip(np.searchsorted(self.grid, t, side="right") - 1, 0, None)
            rows = np.arange(len(self.hazard)).reshape(-1, *([1] * (t.ndim - 1)))
            since = t - self.grid[piece]
            return self.at_piece_start[rows, piece] + self.hazard[rows, piece] * since
        shape = self.shape.reshape(-1, *([1] * (t.ndim - 1)))
        log_scale = self.log_scale.reshape(-1, *([1] * (t.ndim - 1)))
        positive = np.where(t > 0, t, 1.0)
        return np.where(t > 0, np.exp(shape * (np.log(positive) - log_scale)), 0.0)

    def log_hazard_at(self, t: np.ndarray) -> np.ndarray:
        r""":math:`\log h_0(t)` per draw at times ``t`` of shape ``(sample, ...)``, years."""
        t = np.asarray(t, float)
        if self.grid is not None:
            piece = np.clip(np.searchsorted(self.grid, t, side="right") - 1, 0, None)
            rows = np.arange(len(self.log_hazard)).reshape(-1, *([1] * (t.ndim - 1)))
            return self.log_hazard[rows, piece]
        shape = self.shape.reshape(-1, *([1] * (t.ndim - 1)))
        log_scale = self.log_scale.reshape(-1, *([1] * (t.ndim - 1)))
        return np.log(shape) - shape * log_scale + (shape - 1.0) * np.log(np.maximum(t, 1e-12))


def treatment_stretches(
    courses: pd.DataFrame, treatments: list[str], exposure: str
) -> tuple[np.ndarray, np.ndarray]:
    """A treatment history as stretches of constant exposure.

    Parameters
    ----------
    courses : pandas.DataFrame
        ``treatment`` and ``start_years`` (years since onset) of each course.
    treatments : list of str
        The fit's modelled non-rituximab treatments (the order of ``beta_treatment``).
    exposure : {"courses_started", "ever"}
        The spec's ``[treatments] exposure``.

    Returns
    -------
    starts : numpy.ndarray
        ``(stretch,)``: where each stretch starts (0, then each distinct course start).
    counts : numpy.ndarray
        ``(stretch, treatment + 1)``: the exposure on each stretch, rituximab last.
    """
    names = [*treatments, "rituximab"]
    kept = courses[courses["treatment"].isin(names)]
    start_years = kept["start_years"].to_numpy(float)
    starts = np.unique(np.r_[0.0, start_years[start_years > 0]])
    counts = np.zeros((len(starts), len(names)))
    for k, name in enumerate(names):
        s = np.sort(start_years[kept["treatment"].to_numpy() == name])
        counts[:, k] = np.searchsorted(s, starts, side="right")
    if exposure == "ever":
        counts = np.minimum(counts, 1.0)
    return starts, counts


class Hazard:
    """One patient's hazard per draw under one treatment history.

    Parameters
    ----------
    params : dict of numpy.ndarray
        Population draws.
    baseline : Baseline
    patient_lp : numpy.ndarray
        ``(sample,)``: site frailty + covariates (no status, no treatment).
    reduced : numpy.ndarray
        ``(sample,)``: the early-sural status, 0 or 1.
    starts, counts : numpy.ndarray
        From :func:`treatment_stretches`.
    """

    def __init__(self, params, baseline, patient_lp, reduced, starts, counts):
        self.baseline = baseline
        n_trt = counts.shape[1] - 1
        lp = patient_lp + reduced * params["beta_sural_reduced"]
        rtx = params["beta_rituximab"] + reduced * params["beta_rituximab_x_sural"]
        per_stretch = lp[:, None] + counts[None, :, n_trt] * rtx[:, None]
        if n_trt:
            per_stretch = per_stretch + params["beta_treatment"] @ counts[:, :n_trt].T
        self.log_relative = per_stretch  # (sample, stretch)
        self.starts = starts

    def from_onset(self, t: np.ndarray) -> np.ndarray:
        r""":math:`\int_0^t h` at times ``t`` of shape ``(sample, ...)``, years since onset.

        On the stretch :math:`m` that holds :math:`t`: the stretches before it in full,
        then :math:`e^{\mathrm{lp}_m}(H_0(t) - H_0(\mathrm{start}_m))`; :math:`H_0` is
        evaluated once at the times and once at the stretch starts.
        """
        t = np.asarray(t, float)
        n = self.log_relative.shape[0]
        at_starts = self.baseline.cumulative(np.broadcast_to(self.starts, (n, len(self.starts))))
        weight = np.exp(self.log_relative)
        full = weight[:, :-1] * np.diff(at_starts, axis=1)
        before = np.concatenate([np.zeros((n, 1)), np.cumsum(full, axis=1)], axis=1)
        stretch = np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, None)
        flat_t = t.reshape(n, -1)
        flat_m = stretch.reshape(n, -1)
        rows = np.arange(n)[:, None]
        value = before[rows, flat_m] + weight[rows, flat_m] * (
            self.baseline.cumulative(flat_t) - at_starts[rows, flat_m]
        )
        return value.reshape(t.shape)

    def cumulative(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r""":math:`\int_a^b h`, years since onset, ``a <= b``; shapes ``(sample, ...)``."""
        return self.from_onset(b) - self.from_onset(a)

    def log_at(self, t: np.ndarray) -> np.ndarray:
        r""":math:`\log h(t)` per draw at ``t`` of shape ``(sample,)``."""
        stretch = np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, None)
        rows = np.arange(len(t))
        return self.baseline.log_hazard_at(t) + self.log_relative[rows, stretch]


def outcome_log_likelihood(hazard: Hazard, outcome: dict[str, float]) -> np.ndarray:
    r"""Log-likelihood per draw of one patient's observed outcome (the model's, in closed form).

    ``outcome``: ``entry_years``, ``kind`` (an event code of
    :mod:`magbayes.models.survival`), ``lower_years``, ``upper_years``. Worsening in
    :math:`(L, R]`: :math:`-H(e, L) + \log(1 - e^{-H(L, R)})`; none by :math:`C`:
    :math:`-H(e, C)`; dated at :math:`R`: :math:`-H(e, R) + \log h(R)`.
    """
    n = hazard.log_relative.shape[0]
    entry = np.full(n, outcome["entry_years"])
    lower, upper = np.full(n, outcome["lower_years"]), np.full(n, outcome["upper_years"])
    kind = int(outcome["kind"])
    if kind == survival.RIGHT:
        return -hazard.cumulative(entry, upper)
    if kind == survival.OBSERVED:
        return -hazard.cumulative(entry, upper) + hazard.log_at(upper)
    inside = np.maximum(hazard.cumulative(lower, upper), 1e-300)
    return -hazard.cumulative(entry, lower) + np.log(-np.expm1(-inside))


class WorseningPredictor:
    """Predictions of a worsening fit for the patients of a cohort.

    Parameters
    ----------
    result : FitResult
        A worsening fit (reloaded or in memory).
    cohort : Cohort
        The patients to predict for: patients of the fit (by id) use their own posterior,
        the others are new patients.
    seed : int
        Random seed of the status draws and the new patients' candidates.
    """

    def __init__(self, result: Any, cohort: Any, seed: int = 0):
        spec = result.spec
        sural = spec.section("early_sural")
        self.cohort = cohort.with_sural_definition(
            float(sural["threshold_uv"]), float(sural["window_years"])
        )
        self.outcome = dict(spec.section("outcome"))
        self.score = str(self.outcome["score"])
        self.exposure = str(spec.section("treatments")["exposure"])
        posterior = result.posterior["posterior"].to_dataset()
        self.shape = (int(posterior.sizes["chain"]), int(posterior.sizes["draw"]))
        self.params = {
            str(n): flat(v)
            for n, v in posterior.data_vars.items()
            if not {"missing_covariate", "site_log_frailty_raw"} & set(v.dims)
        }
        self.n = self.shape[0] * self.shape[1]
        self.baseline = Baseline(self.params, hazard_grid(spec))
        self.constant = c = result.posterior["constant_data"].to_dataset()
        self.treatments = [str(t) for t in c["treatment"].values] if "treatment" in c else []
        self.sites = (
            [str(s) for s in posterior["site"].values] if "site" in posterior.coords else []
        )
        self.standardisation = result.standardisation
        self.binary = binary_covariates(c, self.standardisation)
        self.rng = np.random.default_rng(seed)
        fitted = [str(p) for p in c["patient"].values]
        self._fitted = {pid: i for i, pid in enumerate(fitted)}
        self._covariates = (
            fitted_covariates(posterior, c, self.binary) if "covariate" in c.coords else None
        )
        self._cache: dict[str, dict[str, Any]] = {}
        self._outcomes: dict[str, dict[str, float] | None] = {}

    # ------------------------------------------------------------------ one patient
    def is_fitted(self, patient_id: str) -> bool:
        """True when the patient was in the fit."""
        return patient_id in self._fitted

    def courses(self, patient_id: str) -> pd.DataFrame:
        """The patient's observed treatment courses."""
        t = self.cohort.treatments
        return t[t["patient_id"] == patient_id]

    def visits(self, patient_id: str) -> pd.DataFrame:
        """The patient's visits."""
        v = self.cohort.visits
        return v[v["patient_id"] == patient_id]

    def now(self, patient_id: str) -> float:
        """When the prediction is made: the patient's last visit (0 without visits)."""
        years = self.visits(patient_id)["years_since_onset"]
        return float(years.max()) if len(years) else 0.0

    def observed_outcome(self, patient_id: str) -> dict[str, float] | None:
        """The patient's outcome so far (``None``: no time at risk yet)."""
        if patient_id not in self._outcomes:
            self._outcomes[patient_id] = self._outcome(patient_id)
        return self._outcomes[patient_id]

    def _outcome(self, patient_id: str) -> dict[str, float] | None:
        if patient_id in self._fitted:
            i, c = self._fitted[patient_id], self.constant
            names = ("entry_years", "lower_years", "upper_years", "end_of_follow_up_years")
            out = {k: float(c[k].values[i]) for k in names}
            out["kind"] = int(c["event_type"].values[i])
            return out
        table = worsening_outcomes(self.visits(patient_id), self.outcome)
        if patient_id not in table.index:
            return None
        row = table.loc[patient_id]
        codes = {"right": survival.RIGHT, "observed": survival.OBSERVED}
        return {
            "entry_years": float(row["entry_years"]),
            "lower_years": float(row["lower_years"]),
            "upper_years": float(row["upper_years"]),
            "end_of_follow_up_years": float(row["end_of_follow_up_years"]),
            "kind": codes.get(str(row["kind"]), survival.INTERVAL),
        }

    def entry(self, patient_id: str) -> float:
        """Start of the time at risk: the baseline visit (first scored; onset without one)."""
        outcome = self.observed_outcome(patient_id)
        if outcome is not None:
            return outcome["entry_years"]
        v = self.visits(patient_id)
        scored = v.loc[v[self.score].notna(), "years_since_onset"]
        return float(scored.min()) if len(scored) else 0.0

    def context(self, patient_id: str) -> dict[str, Any]:
        """The patient's draws: ``patient_lp`` and ``reduced`` ``(sample,)``, ``ess``."""
        if patient_id in self._cache:
            return self._cache[patient_id]
        outcome = self.observed_outcome(patient_id)
        starts, counts = treatment_stretches(
            self.courses(patient_id), self.treatments, self.exposure
        )
        if patient_id in self._fitted:
            out = self._fitted_context(patient_id, outcome, starts, counts)
        else:
            out = self._new_context(patient_id, outcome, starts, counts)
        self._cache[patient_id] = out
        return out

    def _fitted_context(self, patient_id, outcome, starts, counts) -> dict[str, Any]:
        i, c, p = self._fitted[patient_id], self.constant, self.params
        site = str(self.sites[int(c["site_of_patient"].values[i])]) if self.sites else None
        if site is not None and site != str(self.cohort.patients.loc[patient_id, "site"]):
            raise SpecError(
                f"patient {patient_id} of the cohort is not the fit's patient {patient_id} "
                f"(site {self.cohort.patients.loc[patient_id, 'site']}, fitted at {site}): "
                "give new patients ids the fit does not have"
            )
        lp = np.zeros(self.n)
        if "site_log_frailty" in p:
            lp = lp + p["site_log_frailty"][:, int(c["site_of_patient"].values[i])]
        if self._covariates is not None and "beta_covariate" in p:
            lp = lp + np.einsum("sc,sc->s", self._covariates[:, i], p["beta_covariate"])
        if bool(c["sural_known"].values[i]):
            reduced = np.full(self.n, float(c["sural_reduced"].values[i]))
        else:
            prevalence = np.clip(p["sural_reduced_prevalence"], 1e-12, 1 - 1e-12)
            log_odds = np.log(prevalence) - np.log1p(-prevalence)
            ones = np.ones(self.n)
            for status, sign in ((ones, 1.0), (0.0 * ones, -1.0)):
                hazard = Hazard(p, self.baseline, lp, status, starts, counts)
                log_odds = log_odds + sign * outcome_log_likelihood(hazard, outcome)
            reduced = (self.rng.random(self.n) < expit(log_odds)).astype(float)
        return {"patient_lp": lp, "reduced": reduced, "ess": float("nan"), "fitted": True}

    def _new_context(self, patient_id, outcome, starts, counts) -> dict[str, Any]:
        p, c = self.params, self.constant
        patient = new_patient(
            self.cohort, patient_id, c, self.standardisation, self.binary, self.sites
        )
        shape = (self.n, PARTICLES)
        lp = new_site_offsets(p, "site_log_frailty", patient.site, shape, self.rng)
        if "beta_covariate" in p and len(patient.covariates):
            x = new_covariates(patient, shape, self.rng)
            lp = lp + np.einsum("skc,sc->sk", x, p["beta_covariate"])
        reduced = new_sural_status(patient, p, shape, self.rng)
        logw = np.zeros(shape)
        if outcome is not None:
            # every candidate of every draw at once: the draws repeated PARTICLES times
            repeated = {k: np.repeat(v, PARTICLES, axis=0) for k, v in p.items()}
            hazard = Hazard(
                repeated,
                Baseline(repeated, self.baseline.grid),
                lp.reshape(-1),
                reduced.reshape(-1),
                starts,
                counts,
            )
            logw = outcome_log_likelihood(hazard, outcome).reshape(shape)
        weights = np.exp(logw - logsumexp(logw, axis=1, keepdims=True))
        ess = float(np.mean(1.0 / np.sum(weights**2, axis=1)))
        pick = (np.cumsum(weights, axis=1) < self.rng.random((self.n, 1))).sum(axis=1)
        rows, pick = np.arange(self.n), pick.clip(max=PARTICLES - 1)
        return {
            "patient_lp": lp[rows, pick],
            "reduced": reduced[rows, pick],
            "ess": ess,
            "fitted": False,
        }

    def worsening_free(
        self, patient_id: str, strategy: Any, years: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """``S(t)`` per draw ``(sample, time)`` under a strategy, and its rituximab start."""
        from magbayes.predict.strategies import apply_strategy

        courses = apply_strategy(
            strategy,
            self.courses(patient_id),
            self.visits(patient_id),
            now=self.now(patient_id),
            patient_id=patient_id,
        )
        ctx = self.context(patient_id)
        starts, counts = treatment_stretches(courses, self.treatments, self.exposure)
        hazard = Hazard(
            self.params, self.baseline, ctx["patient_lp"], ctx["reduced"], starts, counts
        )
        entry = self.entry(patient_id)
        times = np.broadcast_to(np.maximum(years, entry), (self.n, len(years)))
        integrated = hazard.cumulative(np.full_like(times, entry), times)
        return np.exp(-integrated), first_rituximab(courses)


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
    """Predictions of a worsening fit for a cohort's patients under treatment strategies.

    Parameters
    ----------
    result : FitResult
        A worsening fit.
    cohort : Cohort
        The patients to predict for (fitted or new).
    years : numpy.ndarray
        Years since onset to predict at.
    strategies : list of Strategy
        Treatment strategies (:mod:`magbayes.predict.strategies`); not ``on_rise``,
        which needs a model of the scores.
    threshold : None
        Not used by this model (worsening is the spec's ``[outcome]``); giving one is an
        error.
    patients : list of str, optional
        Which patients (default every patient of ``cohort``).
    seed : int
        Random seed.

    Returns
    -------
    xarray.Dataset
        Dims ``patient``, ``strategy``, ``time`` (years since onset): ``worsening_free``
        (posterior mean probability of no confirmed worsening from the baseline visit to
        ``time``), ``worsening_free_hdi_low`` / ``_high`` (its HDI over draws),
        ``rituximab_start`` (patient, strategy; years since onset), and per patient
        ``at_risk_from`` (the baseline visit, years since onset), ``worsening_seen_by``
        (the visit that first showed a confirmed worsening, NaN: none so far), ``fitted``
        and ``importance_ess``.

    Raises
    ------
    SpecError
        For a threshold, or a strategy on an INCAT rise.
    """
    import arviz as az

    if threshold is not None:
        raise SpecError(
            "the worsening model predicts the probability of remaining free of confirmed "
            "worsening (as its spec's [outcome] defines it): a score threshold does not apply"
        )
    on_rise = [s.name for s in strategies if s.kind == "on_rise"]
    if on_rise:
        raise SpecError(
            f"strategy {', '.join(on_rise)}: starting rituximab on an INCAT rise needs the "
            "future scores, which the worsening model does not predict; use the progression "
            "model, or a strategy at a year or at the next visit"
        )
    predictor = WorseningPredictor(result, cohort, seed=seed)
    ids = list(patients) if patients is not None else [str(p) for p in cohort.patient_ids]
    years = np.asarray(years, float)
    mean, low, high, starts = [], [], [], []
    for pid in ids:
        curves, start_row = [], []
        for strategy in strategies:
            free, start = predictor.worsening_free(pid, strategy, years)
            curves.append(free.reshape(*predictor.shape, len(years)))
            start_row.append(start)
        draws = xr.DataArray(np.stack(curves), dims=("strategy", "chain", "draw", "time"))
        hdi = az.hdi(draws, prob=result.hdi_prob)
        mean.append(draws.mean(("chain", "draw")).values)
        low.append(hdi.sel(ci_bound="lower").transpose("strategy", "time").values)
        high.append(hdi.sel(ci_bound="upper").transpose("strategy", "time").values)
        starts.append(start_row)
    seen = []
    for pid in ids:
        outcome = predictor.observed_outcome(pid)
        worsened = outcome is not None and outcome["kind"] != survival.RIGHT
        seen.append(outcome["upper_years"] if worsened else np.nan)
    dims3 = ("patient", "strategy", "time")
    out = xr.Dataset(
        {
            "worsening_free": (dims3, np.asarray(mean)),
            "worsening_free_hdi_low": (dims3, np.asarray(low)),
            "worsening_free_hdi_high": (dims3, np.asarray(high)),
            "rituximab_start": (("patient", "strategy"), np.asarray(starts, float)),
            "at_risk_from": (("patient",), np.array([predictor.entry(p) for p in ids])),
            "worsening_seen_by": (("patient",), np.asarray(seen, float)),
            "fitted": (("patient",), np.array([predictor.is_fitted(p) for p in ids])),
            "importance_ess": (
                ("patient",),
                np.array([predictor.context(p)["ess"] for p in ids]),
            ),
        },
        coords={"patient": ids, "strategy": [s.name for s in strategies], "time": years},
    )
    out.attrs.update(
        {
            "model": "worsening",
            "score": predictor.score,
            "worsening": f"{predictor.score.upper()} at least "
            f"{float(predictor.outcome['change']):g} worse than baseline, confirmed "
            f"({predictor.outcome['confirmation']})",
            "strategies": [s.describe() for s in strategies],
            "hdi_prob": result.hdi_prob,
        }
    )
    return out
