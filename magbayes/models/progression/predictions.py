r"""Predictions of the progression model: a patient's score over time under a treatment history.

For patient :math:`i` with early-sural status :math:`s` the model's latent disability at
:math:`t` years since onset is

.. math::

    \eta_i(t \mid s) = \ell_i + (r_i + \delta s)\,t + \sum_k \gamma_{\mathrm{trt}(k)} (t - t_k)_+
        + (\gamma_{\mathrm{rtx}} + \gamma_{\mathrm{rtx}\times\mathrm{sural}}\, s)
          \sum_{k\ \mathrm{rtx}} (t - t_k)_+
        + \gamma_{\mathrm{later}} \sum_{k:\ \mathrm{line}_k \ge 2} (t - t_k)_+
        \; [+ \text{level steps}]

(:mod:`magbayes.models.progression`), and the score follows the ordered logistic in
:math:`\eta` (or the Beta, I-RODS). A *treatment history* is any table of courses (the
patient's own, or one a strategy makes), so the same code predicts under "as observed",
"never", "rituximab at year X", ...

Where each patient's level :math:`\ell_i` and rate :math:`r_i` come from, per posterior draw:

- a **fitted patient**: their own posterior draws (sampled in the fit, or rebuilt from the
  non-centred coordinates); an unknown early-sural status is drawn per posterior draw from
  its posterior given the patient's scores and the estimated prevalence;
- a **new patient** (not in the fit): sampling-importance-resampling. For each population
  draw, :data:`PARTICLES` candidate patients are drawn (unknown status, missing covariates
  and an unseen site's offsets from the population model; level and rate from a normal
  proposal adapted in :data:`ADAPTATION_ROUNDS` rounds, on a subset of the draws, to the
  scores seen so far, mixed with the population model), weighted by prior x likelihood /
  proposal, and one is kept. With no
  scores, the candidates come from the population model itself: the population's
  predictive.

:func:`score_distribution` turns latent draws into P(score = k) (exactly, no noise draws),
the expected score and P(score >= threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from scipy.special import expit, logsumexp

from magbayes.models import scores
from magbayes.models.patient_context import (
    NewPatient,
    binary_covariates,
    first_rituximab,
    fitted_covariates,
    flat,
    new_covariates,
    new_patient,
    new_site_offsets,
    new_sural_status,
)
from magbayes.spec import Spec

#: Candidate patients per posterior draw for a new patient (importance sampling): the
#: proposal is adapted to the patient first, so few are needed (effective about 5 of 16 in
#: benchmarks/bench_predict.py).
PARTICLES = 16


@dataclass
class Population:
    """Posterior draws of the population-level parameters, flattened to ``(sample, ...)``.

    Attributes
    ----------
    family : str
        ``"ordered_logistic"`` or ``"beta"``.
    treatments : list of str
        Modelled treatments (the coefficients' order).
    later_line : bool
        The spec has a later-line change in rate.
    level_change : bool
        Treatments also shift the level at their start.
    params : dict of numpy.ndarray
        Each parameter's draws.
    """

    family: str
    treatments: list[str]
    later_line: bool
    level_change: bool
    params: dict[str, np.ndarray]
    shape: tuple[int, int]

    @classmethod
    def from_fit(cls, posterior: xr.Dataset, spec: Spec, family: str) -> Population:
        """Read the population draws of a progression fit."""
        treatments = (
            [str(t) for t in posterior["treatment"].values]
            if "treatment" in (posterior.coords)
            else []
        )
        # the population-level draws: every variable without a per-patient dimension
        params = {
            str(n): flat(v)
            for n, v in posterior.data_vars.items()
            if not {"patient", "missing_covariate_continuous"} & set(v.dims)
        }
        shape = (int(posterior.sizes["chain"]), int(posterior.sizes["draw"]))
        tspec = spec.section("treatments")
        return cls(
            family,
            treatments,
            bool(tspec["later_line_effect"]),
            bool(tspec["level_change"]),
            params,
            shape,
        )

    @property
    def n_samples(self) -> int:
        """Number of posterior draws (chains x draws)."""
        return self.shape[0] * self.shape[1]

    def subset(self, draws: np.ndarray) -> Population:
        """The same population with only some of its draws (indices into the samples)."""
        params = {k: v[draws] for k, v in self.params.items()}
        return Population(
            self.family,
            self.treatments,
            self.later_line,
            self.level_change,
            params,
            (len(draws), 1),
        )

    def get(self, name: str, default: float = 0.0) -> np.ndarray:
        """A parameter's draws, or ``default`` for every draw when the model has none."""
        if name in self.params:
            return self.params[name]
        return np.full(self.n_samples, default)


@dataclass(frozen=True)
class Exposure:
    """A treatment history as seen at some times (years since onset).

    Attributes
    ----------
    rate_columns : numpy.ndarray
        (time, treatment): years since each modelled treatment's courses started, summed.
    rituximab_years : numpy.ndarray
        (time,): years since rituximab courses started, summed.
    later_line_years : numpy.ndarray
        (time,): the same for courses given in line 2 or later.
    started : numpy.ndarray
        (time, treatment): courses of each treatment started by then.
    rituximab_started : numpy.ndarray
        (time,): rituximab courses started by then.
    later_line_started : numpy.ndarray
        (time,): courses of line 2 or later started by then.
    """

    rate_columns: np.ndarray
    rituximab_years: np.ndarray
    later_line_years: np.ndarray
    started: np.ndarray
    rituximab_started: np.ndarray
    later_line_started: np.ndarray

    def per_year(self) -> Exposure:
        """The exposures' derivatives in time (per year; ``progression.exposure_per_year``).

        With it, :func:`latent` at ``level`` 0 and ``years`` 1 is the latent disability's
        rate of change (logit per year) between course starts.
        """
        from magbayes.models.progression import exposure_per_year

        return Exposure.from_columns(
            exposure_per_year(
                {
                    "treatment_started": self.started,
                    "rituximab_started": self.rituximab_started,
                    "later_line_started": self.later_line_started,
                }
            )
        )

    @classmethod
    def from_columns(cls, out: dict[str, np.ndarray]) -> Exposure:
        """From the columns of ``progression._course_exposure`` (or their derivatives)."""
        return cls(
            out["treatment_years"],
            out["rituximab_years"],
            out["later_line_years"],
            out["treatment_started"],
            out["rituximab_started"],
            out["later_line_started"],
        )

    @classmethod
    def of(cls, courses: pd.DataFrame, years: np.ndarray, treatments: list[str]) -> Exposure:
        """The exposure of one patient's courses at ``years`` (the fit's own function)."""
        from magbayes.models.progression import _course_exposure

        years = np.asarray(years, float)
        return cls.from_columns(_course_exposure(courses, None, years, treatments))


def latent(
    population: Population,
    level: np.ndarray,
    rate: np.ndarray,
    reduced: np.ndarray,
    years: np.ndarray,
    exposure: Exposure,
) -> np.ndarray:
    """Latent disability ``(sample, [particle,] time)`` of one patient.

    Parameters
    ----------
    population : Population
        Population draws.
    level, rate : numpy.ndarray
        (sample,) or (sample, particle): the patient's level at onset and untreated rate
        (sural-preserved units: the early-sural change in rate is added from ``reduced``).
    reduced : numpy.ndarray
        Same shape: 1 where the patient is sural-reduced, else 0.
    years : numpy.ndarray
        Years since onset.
    exposure : Exposure
        The treatment history at ``years``.
    """
    p = population
    extra = np.ndim(level) - 1

    def per_draw(values: np.ndarray) -> np.ndarray:
        """(sample,) or (sample, time) laid out against (sample, [particle,] time)."""
        values = np.asarray(values)
        if values.ndim == 1:
            return values.reshape(-1, *([1] * extra), 1)
        return values.reshape(values.shape[0], *([1] * extra), values.shape[1])

    t = np.asarray(years, float)
    s = np.asarray(reduced, float)[..., None]
    eta = level[..., None] + (rate[..., None] + per_draw(p.get("rate_sural_reduced")) * s) * t
    rtx = per_draw(p.get("gamma_rituximab")) + per_draw(p.get("gamma_rituximab_x_sural")) * s
    eta = eta + rtx * exposure.rituximab_years
    if p.treatments:
        eta = eta + per_draw(p.params["gamma_treatment"] @ exposure.rate_columns.T)
    if p.later_line:
        eta = eta + per_draw(p.get("gamma_later_line")) * exposure.later_line_years
    if p.level_change:
        if p.treatments:
            eta = eta + per_draw(p.params["delta_treatment"] @ exposure.started.T)
        eta = eta + per_draw(p.get("delta_rituximab")) * exposure.rituximab_started
    return eta


def latent_rate(
    population: Population,
    rate: np.ndarray,
    reduced: np.ndarray,
    exposure: Exposure,
) -> np.ndarray:
    """Rate of change of the latent disability ``(sample, [particle,] time)``, logit per year.

    The derivative in time of :func:`latent` between course starts: the patient's rate
    (``rate``, ``reduced`` as there) plus what the courses started by each time add.
    """
    ones = np.ones(len(exposure.rituximab_years))
    return latent(population, np.zeros_like(rate), rate, reduced, ones, exposure.per_year())


def cumulative_probabilities(population: Population, eta: np.ndarray) -> np.ndarray:
    """P(score <= k) of an ordinal score for k = 0 .. K-2: ``(sample, time, cutpoint)``.

    In single precision (probabilities to about 1e-7), half the memory and time.
    """
    cuts = population.params["cutpoints"].astype(np.float32)  # (sample, category - 1)
    return expit(cuts[:, None, :] - eta.astype(np.float32)[:, :, None])


def log_likelihood(population: Population, eta: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Log-likelihood of observed scores given latent draws ``(sample, [particle,] visit)``."""
    extra = eta.ndim - 2
    if population.family == "ordered_logistic":
        cuts = population.params["cutpoints"]
        edge = np.full((cuts.shape[0], 1), 500.0)
        extended = np.concatenate([-edge, cuts, edge], axis=1)
        k = np.asarray(observed, int)
        shape = (extended.shape[0], *([1] * extra), len(k))
        upper = extended[:, k + 1].reshape(shape)
        lower = extended[:, k].reshape(shape)
        probability = expit(upper - eta) - expit(lower - eta)
        return np.log(np.clip(probability, 1e-300, None)).sum(axis=-1)
    precision = population.params["irods_precision"].reshape(-1, *([1] * (extra + 1)))
    mean = expit(-eta)
    value = scores.centile_to_unit(observed)
    return stats.beta.logpdf(value, mean * precision, (1.0 - mean) * precision).sum(axis=-1)


def fitted_patient_effects(
    posterior: xr.Dataset, constant: xr.Dataset, population: Population, binary: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each fitted patient's level at onset and untreated rate, ``(sample, patient)``.

    Sampled in the fit (``patient_level``, ``patient_rate``) in its centred forms; rebuilt
    from ``patient_z`` in the non-centred one (level = intercept + site offset + covariates
    + sd x z, as :func:`magbayes.models.progression.build_model` writes it).
    """
    if "patient_level" in posterior and "patient_rate" in posterior:
        return flat(posterior["patient_level"]), flat(posterior["patient_rate"])
    p = population
    z = flat(posterior["patient_z"].transpose(..., "patient", "patient_effect"))
    site = np.asarray(constant["site_of_patient"].values, int)
    level_mean = p.get("level_intercept")[:, None] + _site(p, "site_level", site)
    if "beta_covariate" in p.params:
        level_mean = level_mean + np.einsum(
            "spc,sc->sp",
            fitted_covariates(posterior, constant, binary),
            p.params["beta_covariate"],
        )
    sd, corr = p.params["patient_sd"], p.get("patient_corr")[:, None]
    level = level_mean + sd[:, None, 0] * z[..., 0]
    rate = (
        p.get("slope")[:, None]
        + _site(p, "site_slope", site)
        + sd[:, None, 1] * (corr * z[..., 0] + np.sqrt(1.0 - corr**2) * z[..., 1])
    )
    return level, rate


def _site(population: Population, name: str, site: np.ndarray) -> np.ndarray:
    if name not in population.params:
        return np.zeros((population.n_samples, len(site)))
    return population.params[name][:, site]


def unknown_status_draws(
    population: Population,
    level: np.ndarray,
    rate: np.ndarray,
    years: np.ndarray,
    exposure: Exposure,
    observed: np.ndarray,
    rng: np.random.Generator,
    evidence: np.ndarray | None = None,
) -> np.ndarray:
    """Draws of an unknown early-sural status given the patient's scores: ``(sample,)`` 0/1.

    ``evidence``: a further log-likelihood ratio, reduced against preserved, per draw (the
    joint model's end of follow-up).
    """
    prevalence = np.clip(population.get("sural_reduced_prevalence", 0.5), 1e-12, 1 - 1e-12)
    log_odds = np.log(prevalence) - np.log1p(-prevalence)
    if evidence is not None:
        log_odds = log_odds + evidence
    if len(observed):
        ones = np.ones(population.n_samples)
        reduced = log_likelihood(
            population, latent(population, level, rate, ones, years, exposure), observed
        )
        preserved = log_likelihood(
            population, latent(population, level, rate, 0 * ones, years, exposure), observed
        )
        log_odds = log_odds + reduced - preserved
    return (rng.random(population.n_samples) < expit(log_odds)).astype(float)


@dataclass
class NewPatientDraws:
    """A new patient's draws by sampling-importance-resampling (``(sample,)`` each).

    Attributes
    ----------
    level, rate, reduced : numpy.ndarray
        Level at onset, untreated rate (sural-preserved units) and early-sural status.
    ess : float
        Mean effective number of candidates per draw (out of the candidates drawn): low
        values mean the visits say much more than the population model, and the
        predictions rest on few candidates.
    context : dict of numpy.ndarray
        What else was drawn for the kept candidate: ``covariates`` (sample, covariate)
        when the model has covariates, and whatever a further likelihood (``extra`` of
        :func:`resample_new_patient`) stored on the candidates.
    """

    level: np.ndarray
    rate: np.ndarray
    reduced: np.ndarray
    ess: float
    context: dict[str, np.ndarray]


def resample_new_patient(
    population: Population,
    patient: NewPatient,
    years: np.ndarray,
    exposure: Exposure,
    observed: np.ndarray,
    rng: np.random.Generator,
    particles: int = PARTICLES,
    extra: Any = None,
) -> NewPatientDraws:
    """A new patient's draws given their scores so far (and any further data).

    Sampling-importance-resampling per posterior draw (module docstring): candidates are
    weighted by prior x likelihood / proposal and one is kept per draw.

    Parameters
    ----------
    population : Population
        Population draws.
    patient : NewPatient
        The patient in the fit's units.
    years, exposure, observed : numpy.ndarray, Exposure, numpy.ndarray
        The patient's scored visits (years since onset), their treatment exposure then,
        and the scores.
    rng : numpy.random.Generator
        Random numbers.
    particles : int
        Candidates per posterior draw.
    extra : callable, optional
        A further likelihood of the patient's data: ``extra(candidates)`` is called once
        per set of :class:`_Candidates` and returns a function of ``(level, rate)``
        (sample, candidate) giving the log-likelihood of each candidate; it may store
        draws of its own, ``(sample, candidate, ...)``, in ``candidates.context`` (they
        are resampled with the candidates). The joint model's end of follow-up.

    Returns
    -------
    NewPatientDraws
    """
    n = population.n_samples
    guess = None
    if len(observed):
        # adapt the proposal on a subset of the draws, with few candidates each: only the
        # pooled mean and covariance of (level, rate) are taken from these rounds
        some = rng.choice(n, size=min(n, ADAPTATION_DRAWS), replace=False)
        small = _Candidates(population.subset(some), patient, ADAPTATION_PARTICLES, rng, extra)
        level, rate = small.from_prior()
        logw = small.log_lik(level, rate, years, exposure, observed)
        for _ in range(ADAPTATION_ROUNDS):
            guess = _pooled_normal(level, rate, logw)
            level, rate, logw = small.from_proposal(guess, years, exposure, observed)
        guess = _pooled_normal(level, rate, logw)
    every = _Candidates(population, patient, particles, rng, extra)
    if guess is None:
        level, rate = every.from_prior()
        logw = every.log_lik(level, rate, years, exposure, observed)
    else:
        level, rate, logw = every.from_proposal(guess, years, exposure, observed)
    weights = np.exp(logw - logsumexp(logw, axis=1, keepdims=True))
    ess = float(np.mean(1.0 / np.sum(weights**2, axis=1)))
    cumulative = np.cumsum(weights, axis=1)
    pick = (cumulative < rng.random((n, 1))).sum(axis=1).clip(max=particles - 1)
    rows = np.arange(n)
    context = {k: v[rows, pick] for k, v in every.context.items()}
    return NewPatientDraws(
        level[rows, pick], rate[rows, pick], every.reduced[rows, pick], ess, context
    )


#: Rounds of adapting the importance proposal to a new patient's visits.
ADAPTATION_ROUNDS = 2
#: Posterior draws, and candidates per draw, of the adaptation rounds.
ADAPTATION_DRAWS = 500
ADAPTATION_PARTICLES = 16
#: Share of each proposal drawn from the population model itself (a defensive mixture:
#: the weights stay bounded when the adapted part misses).
PRIOR_SHARE = 0.1
#: Widening of the adapted part's covariance (its sd times 1.5).
WIDEN = 2.25


def _pooled_normal(level: np.ndarray, rate: np.ndarray, logw: np.ndarray):
    """Mean and widened covariance of (level, rate) over every weighted candidate, pooled."""
    w = np.exp(logw - logsumexp(logw)).reshape(-1)
    x = np.stack([level.reshape(-1), rate.reshape(-1)], axis=1)
    mean = w @ x
    centred = x - mean
    cov = (centred * w[:, None]).T @ centred * WIDEN + 1e-8 * np.eye(2)
    return mean, cov


class _Candidates:
    """Candidate new patients for each posterior draw of a population (importance sampling).

    The patient's context (an unknown status, missing covariates, an unseen site's
    offsets) is drawn once from the population model; level and rate from the population
    model (:meth:`from_prior`) or from a proposal (:meth:`from_proposal`).
    """

    def __init__(
        self, population: Population, patient: NewPatient, particles: int, rng, extra=None
    ):
        p = self.population = population
        self.rng = rng
        self.patient = patient
        shape = self.shape = (p.n_samples, particles)
        #: draws of the patient's context kept with each candidate, (sample, candidate, ...)
        self.context: dict[str, np.ndarray] = {}
        site_level = new_site_offsets(p.params, "site_level", patient.site, shape, rng)
        site_slope = new_site_offsets(p.params, "site_slope", patient.site, shape, rng)
        level_mean = p.get("level_intercept")[:, None] + site_level
        if "beta_covariate" in p.params and len(patient.covariates):
            x = self.context["covariates"] = new_covariates(patient, shape, rng)
            level_mean = level_mean + np.einsum("spc,sc->sp", x, p.params["beta_covariate"])
        self.level_mean = level_mean
        self.rate_mean = p.get("slope")[:, None] + site_slope
        sd = p.params["patient_sd"]
        self.sd_level, self.sd_rate = sd[:, None, 0], sd[:, None, 1]
        self.corr = p.get("patient_corr")[:, None]
        self.reduced = new_sural_status(patient, p.params, shape, rng)
        self.extra = None if extra is None else extra(self)

    def from_prior(self) -> tuple[np.ndarray, np.ndarray]:
        """Level and rate drawn from the population model."""
        z = self.rng.standard_normal((*self.shape, 2))
        level = self.level_mean + self.sd_level * z[..., 0]
        spread = self.corr * z[..., 0] + np.sqrt(1.0 - self.corr**2) * z[..., 1]
        return level, self.rate_mean + self.sd_rate * spread

    def log_prior(self, level: np.ndarray, rate: np.ndarray) -> np.ndarray:
        """Log density of (level, rate) under the population model."""
        z = (level - self.level_mean) / self.sd_level
        conditional_sd = self.sd_rate * np.sqrt(1.0 - self.corr**2)
        return stats.norm.logpdf(level, self.level_mean, self.sd_level) + stats.norm.logpdf(
            rate, self.rate_mean + self.corr * self.sd_rate * z, conditional_sd
        )

    def log_lik(self, level, rate, years, exposure, observed) -> np.ndarray:
        """Log-likelihood of the patient's scores (and the further data) for each candidate."""
        p = self.population
        out = np.zeros(self.shape)
        if len(observed):
            eta = latent(p, level, rate, self.reduced, years, exposure)
            out = out + log_likelihood(p, eta, observed)
        if self.extra is not None:
            out = out + self.extra(level, rate)
        return out

    def from_proposal(self, guess, years, exposure, observed):
        """Candidates from the normal ``guess`` mixed with the population model, weighted.

        Returns level, rate and the log weights prior x likelihood / proposal.
        """
        mean, cov = guess
        chol = np.linalg.cholesky(cov)
        proposed = mean + self.rng.standard_normal((*self.shape, 2)) @ chol.T
        prior_level, prior_rate = self.from_prior()
        use_prior = self.rng.random(self.shape) < PRIOR_SHARE
        level = np.where(use_prior, prior_level, proposed[..., 0])
        rate = np.where(use_prior, prior_rate, proposed[..., 1])
        prior = self.log_prior(level, rate)
        normal = stats.multivariate_normal(mean, cov).logpdf(np.stack([level, rate], axis=-1))
        proposal = np.logaddexp(np.log1p(-PRIOR_SHARE) + normal, np.log(PRIOR_SHARE) + prior)
        return level, rate, prior + self.log_lik(level, rate, years, exposure, observed) - proposal


def score_distribution(
    population: Population, eta: np.ndarray, score: str, threshold: float
) -> dict[str, np.ndarray]:
    """What the predictions report, from latent draws ``(sample, time)``.

    Returns
    -------
    dict
        ``p_category`` (time, category), P(score = k) averaged over the draws (ordinal
        scores only); ``expected`` (sample, time): the expected score in each draw
        (points, or centile for I-RODS); ``p_threshold`` (sample, time): P(score at or
        above ``threshold``; at or below for I-RODS, where lower is worse) in each draw;
        ``quantiles`` (time, 4): the 3%, 25%, 75% and 97% points of the predictive
        distribution of the score.
    """
    levels = np.array([0.03, 0.25, 0.75, 0.97])
    if population.family == "ordered_logistic":
        # everything follows from P(score <= k) = sigmoid(c_k - eta), never a full
        # (draw, time, category) array: E[score] = sum_k P(score > k)
        below = cumulative_probabilities(population, eta)
        expected = below.shape[-1] - below.sum(axis=-1)
        lowest = int(np.ceil(threshold))
        p_threshold = 1.0 - below[..., lowest - 1] if lowest >= 1 else np.ones(expected.shape)
        mean_below = below.mean(axis=0)
        ends = np.ones((*mean_below.shape[:-1], 1))
        cumulative = np.concatenate([mean_below, ends], axis=-1)
        mixture = np.clip(np.diff(cumulative, axis=-1, prepend=0.0), 0.0, 1.0)
        quantiles = np.stack(
            [(cumulative < q - 1e-12).sum(axis=-1) for q in levels], axis=-1
        ).astype(float)
        return {
            "p_category": mixture,
            "expected": expected,
            "p_threshold": p_threshold,
            "quantiles": quantiles,
        }
    precision = population.params["irods_precision"][:, None]
    mean = expit(-eta)
    a, b = mean * precision, (1.0 - mean) * precision
    p_threshold = stats.beta.cdf(threshold / 100.0, a, b)
    rng = np.random.default_rng(0)
    draws = rng.beta(a, b) * 100.0
    return {
        "p_category": None,
        "expected": mean * 100.0,
        "p_threshold": p_threshold,
        "quantiles": np.quantile(draws, levels, axis=0).T,
    }


# ----------------------------------------------------------------------------- the driver

#: Default thresholds of "disabled" per score (at or above; I-RODS: at or below).
THRESHOLDS: dict[str, float] = {
    "incat": 4,  # the prediction issue's INCAT >= 4
    "mrs": 3,  # CLINICAL.md: mRS >= 3 often used as "disabled"
    "onls": 4,  # an assumption: no published ONLS threshold in CLINICAL.md
    "irods": 50,  # an assumption: I-RODS centile at or below 50
}


@dataclass
class PatientDraws:
    """One patient's draws under the fit: level, rate and status (``(sample,)`` each).

    ``context``: a new patient's further draws (:attr:`NewPatientDraws.context`).
    """

    level: np.ndarray
    rate: np.ndarray
    reduced: np.ndarray
    fitted: bool
    ess: float
    context: dict[str, np.ndarray] = field(default_factory=dict)


class Predictor:
    """Predictions of a progression fit for the patients of a cohort.

    Parameters
    ----------
    result : FitResult
        A progression fit (reloaded or in memory).
    cohort : Cohort
        The cohort whose patients to predict for: patients of the fit (by id) use their own
        posterior, the others are new patients conditioned on their visits.
    seed : int
        Random seed of the status draws, the new patients' particles and simulated visits.
    """

    def __init__(self, result: Any, cohort: Any, seed: int = 0):
        spec = result.spec
        sural = spec.section("early_sural")
        self.cohort = cohort.with_sural_definition(
            float(sural["threshold_uv"]), float(sural["window_years"])
        )
        self.spec = spec
        self.score = str(result.design_counts.get("score", spec.section("outcome")["score"]))
        family = str(result.design_counts.get("likelihood", "ordered_logistic"))
        posterior = result.posterior["posterior"].to_dataset()
        self.constant = result.posterior["constant_data"].to_dataset()
        self.population = Population.from_fit(posterior, spec, family)
        self.standardisation = result.standardisation
        self.binary = binary_covariates(self.constant, self.standardisation)
        self.rng = np.random.default_rng(seed)
        fitted_ids = [str(p) for p in posterior["patient"].values]
        self._fitted = {pid: i for i, pid in enumerate(fitted_ids)}
        # the fit's sites, in the order of its site offsets (the posterior's coordinate:
        # the constant data has none, its site_of_patient indexes this one)
        self._sites = (
            [str(x) for x in posterior["site"].values] if "site" in posterior.coords else []
        )
        self._level, self._rate = fitted_patient_effects(
            posterior, self.constant, self.population, self.binary
        )
        known = np.asarray(self.constant["sural_known"].values, bool)
        reduced = np.asarray(self.constant["sural_reduced"].values, int)
        self._status = {
            pid: (float(reduced[i]) if known[i] else None) for pid, i in self._fitted.items()
        }
        self._cache: dict[str, PatientDraws] = {}

    # ------------------------------------------------------------------ one patient
    def visits(self, patient_id: str) -> pd.DataFrame:
        """The patient's visits with a score (``years_since_onset`` and the score)."""
        v = self.cohort.visits
        rows = v[(v["patient_id"] == patient_id) & v[self.score].notna()]
        return rows.sort_values("years_since_onset")

    def courses(self, patient_id: str) -> pd.DataFrame:
        """The patient's observed treatment courses."""
        t = self.cohort.treatments
        return t[t["patient_id"] == patient_id]

    def is_fitted(self, patient_id: str) -> bool:
        """True when the patient was in the fit."""
        return patient_id in self._fitted

    def draws(self, patient_id: str) -> PatientDraws:
        """The patient's level, rate and status draws (fitted, or by importance sampling)."""
        if patient_id in self._cache:
            return self._cache[patient_id]
        visits = self.visits(patient_id)
        years = visits["years_since_onset"].to_numpy(float)
        observed = self._observed(visits)
        exposure = Exposure.of(self.courses(patient_id), years, self.population.treatments)
        if patient_id in self._fitted:
            i = self._fitted[patient_id]
            self._check_same_patient(patient_id, i, visits)
            level, rate = self._level[:, i], self._rate[:, i]
            status = self._status[patient_id]
            if status is None:
                reduced = unknown_status_draws(
                    self.population,
                    level,
                    rate,
                    years,
                    exposure,
                    observed,
                    self.rng,
                    self.status_evidence(patient_id, level, rate),
                )
            else:
                reduced = np.full(self.population.n_samples, status)
            out = PatientDraws(level, rate, reduced, True, float("nan"))
        else:
            patient = new_patient(
                self.cohort,
                patient_id,
                self.constant,
                self.standardisation,
                self.binary,
                self._sites,
            )
            new = resample_new_patient(
                self.population,
                patient,
                years,
                exposure,
                observed,
                self.rng,
                extra=self.new_patient_likelihood(patient_id),
            )
            out = PatientDraws(new.level, new.rate, new.reduced, False, new.ess, new.context)
        self._cache[patient_id] = out
        return out

    def site_index(self, patient_id: str) -> int | None:
        """The patient's site among the fit's sites (``None``: a site the fit has not seen).

        A fitted patient's is their fitted site; a new patient at one of the fit's
        hospitals gets that hospital's site effects.
        """
        if patient_id in self._fitted:
            return int(self.constant["site_of_patient"].values[self._fitted[patient_id]])
        site = str(self.cohort.patients.loc[patient_id, "site"])
        return self._sites.index(site) if site in self._sites else None

    # ------------------------------------------------------------------ hooks of other models
    def status_evidence(
        self, patient_id: str, level: np.ndarray, rate: np.ndarray
    ) -> np.ndarray | None:
        """Log-likelihood ratio, reduced against preserved, of a fitted patient's other data.

        ``None`` here: the progression model has only the scores. A model with more of the
        patient's data (the joint model's end of follow-up) returns it per draw.
        """
        return None

    def new_patient_likelihood(self, patient_id: str) -> Any:
        """The ``extra`` likelihood of :func:`resample_new_patient` (``None``: scores only)."""
        return None

    def _check_same_patient(self, patient_id: str, index: int, visits: pd.DataFrame) -> None:
        """Refuse a cohort's patient who has a fitted patient's id but not their data.

        Same site, and every scored visit of the fit at the same time with the same score
        (later visits may be added: they are not conditioned on, the fit's posterior is).
        """
        from magbayes.errors import SpecError

        c = self.constant
        problems = []
        if self._sites:
            fitted_site = self._sites[int(c["site_of_patient"].values[index])]
            site = str(self.cohort.patients.loc[patient_id, "site"])
            if site != fitted_site:
                problems.append(f"site {site}, fitted at {fitted_site}")
        of_visit = np.asarray(c["patient_of_visit"].values, int) == index
        fitted_years = np.asarray(c["years_since_onset"].values, float)[of_visit]
        years = visits["years_since_onset"].to_numpy(float)
        matched = np.isclose(fitted_years[:, None], years[None, :], atol=1e-6).any(axis=1)
        if not matched.all():
            problems.append(
                f"{int((~matched).sum())} of its {len(fitted_years)} fitted visits are not in "
                "the cohort"
            )
        if problems:
            raise SpecError(
                f"patient {patient_id} of the cohort is not the fit's patient {patient_id} ("
                + "; ".join(problems)
                + "): give new patients ids the fit does not have"
            )

    def _observed(self, visits: pd.DataFrame) -> np.ndarray:
        values = visits[self.score].to_numpy(float)
        if self.population.family == "ordered_logistic":
            return values.astype(int)
        return values

    def now(self, patient_id: str) -> float:
        """When the prediction is made: the patient's last visit (0 without visits)."""
        v = self.cohort.visits
        years = v.loc[v["patient_id"] == patient_id, "years_since_onset"]
        return float(years.max()) if len(years) else 0.0

    def latent_under(
        self, patient_id: str, strategy: Any, years: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Latent draws ``(sample, time)`` under a strategy, and its rituximab start per draw.

        A strategy that starts rituximab on an observed rise (``on_rise``) reads the
        observed visits up to now and, after now, scores drawn from the model at the
        prediction times: each draw starts rituximab when its own scores rise.
        """
        histories, start = self.histories_under(patient_id, strategy, years)
        return self.latent_at(patient_id, histories, years), start

    def histories_under(
        self, patient_id: str, strategy: Any, years: np.ndarray
    ) -> tuple[list[tuple[np.ndarray, pd.DataFrame]], np.ndarray]:
        """The treatment histories a strategy gives the patient's draws, and its start.

        Returns
        -------
        histories : list of (numpy.ndarray of bool, pandas.DataFrame)
            Which draws (``(sample,)``) follow which courses: one history for every draw,
            except for a strategy on a rise (``on_rise``: one per start time, and one
            without rituximab for the draws whose scores do not rise by the last time).
        start : numpy.ndarray
            ``(sample,)``: each draw's rituximab start (years since onset; NaN: none).
        """
        from magbayes.predict.strategies import Strategy, apply_strategy, first_rise_years

        courses = self.courses(patient_id)
        visits = self.cohort.visits[self.cohort.visits["patient_id"] == patient_id]
        now = self.now(patient_id)
        p = self.population
        every = np.ones(p.n_samples, bool)

        def applied(chosen: Strategy) -> pd.DataFrame:
            return apply_strategy(chosen, courses, visits, now=now, patient_id=patient_id)

        if strategy.kind != "on_rise":
            changed = applied(strategy)
            return [(every, changed)], np.full(p.n_samples, first_rituximab(changed))
        draws = self.draws(patient_id)
        never = Strategy("never", "never")
        untreated = applied(never)
        seen = visits.sort_values("years_since_onset")
        seen = seen[seen["years_since_onset"] <= now]
        future = years[years > now]
        exposure = Exposure.of(untreated, future, p.treatments)
        eta_future = latent(p, draws.level, draws.rate, draws.reduced, future, exposure)
        simulated = self._draw_scores(eta_future)
        seen_years = seen["years_since_onset"].to_numpy(float)
        seen_incat = pd.to_numeric(seen["incat"], errors="coerce").to_numpy(float)
        all_years = np.concatenate([seen_years, future])
        incat = np.concatenate(
            [np.broadcast_to(seen_incat, (p.n_samples, len(seen_years))), simulated], axis=1
        )
        start = first_rise_years(all_years, incat, int(strategy.incat_rise))
        histories = []
        for when in np.unique(start[np.isfinite(start)]):
            at = Strategy("on rise", "at_year", years_since_onset=float(when))
            histories.append((start == when, applied(at)))
        chosen = ~np.isfinite(start)
        if chosen.any():
            histories.append((chosen, untreated))
        return histories, start

    def latent_at(
        self,
        patient_id: str,
        histories: list[tuple[np.ndarray, pd.DataFrame]],
        years: np.ndarray,
    ) -> np.ndarray:
        """Latent draws ``(sample, time)`` at ``years``, each draw under its history."""
        p, draws = self.population, self.draws(patient_id)
        eta = np.empty((p.n_samples, len(years)))
        for chosen, courses in histories:
            exposure = Exposure.of(courses, years, p.treatments)
            rows = np.nonzero(chosen)[0]
            eta[rows] = latent(
                p.subset(rows) if len(rows) < p.n_samples else p,
                draws.level[rows],
                draws.rate[rows],
                draws.reduced[rows],
                years,
                exposure,
            )
        return eta

    def _draw_scores(self, eta: np.ndarray) -> np.ndarray:
        """Scores drawn at each draw's latent values (INCAT points, for ``on_rise``)."""
        if self.population.family != "ordered_logistic":
            raise ValueError("a strategy on an INCAT rise needs a model of INCAT")
        noise = self.rng.logistic(size=eta.shape)
        cuts = self.population.params["cutpoints"]
        return ((eta + noise)[:, :, None] > cuts[:, None, :]).sum(axis=-1).astype(float)


def predict(
    result: Any,
    cohort: Any,
    *,
    years: np.ndarray,
    strategies: list[Any],
    threshold: float | None = None,
    patients: list[str] | None = None,
    seed: int = 0,
    predictor: Predictor | None = None,
) -> xr.Dataset:
    """Predictions of a progression fit for a cohort's patients under treatment strategies.

    Parameters
    ----------
    result : FitResult
        A progression fit.
    cohort : Cohort
        The patients to predict for (fitted or new).
    years : numpy.ndarray
        Years since onset to predict at.
    strategies : list of Strategy
        Treatment strategies (:mod:`magbayes.predict.strategies`).
    threshold : float, optional
        The score at or above which a patient counts as disabled (I-RODS: at or below);
        default :data:`THRESHOLDS` of the score.
    patients : list of str, optional
        Which patients (default every patient of ``cohort``).
    seed : int
        Random seed.
    predictor : Predictor, optional
        The predictor to use (default a :class:`Predictor` of ``result`` and ``cohort``
        with ``seed``): another model built on this trajectory passes its own (the joint
        model's, :mod:`magbayes.models.joint.predictions`).

    Returns
    -------
    xarray.Dataset
        Dims ``patient``, ``strategy``, ``time`` (years since onset), ``category`` (score
        values; ordinal scores) and ``quantile``: ``p_category`` P(score = k), ``mean``
        (expected score, averaged over the posterior), ``mean_hdi_low``/``mean_hdi_high``
        (its 94% interval over draws), ``band`` (3%, 25%, 75%, 97% of the predictive
        distribution: the 50% and 94% bands), ``p_disabled`` (P(score at or above the
        threshold)), ``rituximab_start`` (years since onset: the added or first course;
        its median over draws for a strategy on a rise), ``fitted`` and
        ``importance_ess`` per patient.
    """
    import arviz as az

    if predictor is None:
        predictor = Predictor(result, cohort, seed=seed)
    score = predictor.score
    threshold = float(THRESHOLDS.get(score, 4) if threshold is None else threshold)
    ids = list(patients) if patients is not None else [str(p) for p in cohort.patient_ids]
    years = np.asarray(years, float)
    shape = predictor.population.shape
    rows: dict[str, list] = {k: [] for k in ("p", "mean", "lo", "hi", "band", "dis", "start")}
    for pid in ids:
        per: dict[str, list] = {k: [] for k in rows}
        expected = []
        for strategy in strategies:
            eta, start = predictor.latent_under(pid, strategy, years)
            dist = score_distribution(predictor.population, eta, score, threshold)
            expected.append(dist["expected"].reshape(*shape, len(years)))
            per["p"].append(dist["p_category"])
            per["band"].append(dist["quantiles"])
            per["dis"].append(dist["p_threshold"].mean(axis=0))
            finite = start[np.isfinite(start)]
            per["start"].append(float(np.median(finite)) if len(finite) else float("nan"))
        # one HDI call per patient, over every strategy and time
        draws = xr.DataArray(np.stack(expected), dims=("strategy", "chain", "draw", "time"))
        hdi = az.hdi(draws, prob=result.hdi_prob)
        per["mean"] = list(draws.mean(("chain", "draw")).values)
        per["lo"] = list(hdi.sel(ci_bound="lower").transpose("strategy", "time").values)
        per["hi"] = list(hdi.sel(ci_bound="upper").transpose("strategy", "time").values)
        for key in rows:
            rows[key].append(per[key])
    coords = {
        "patient": ids,
        "strategy": [s.name for s in strategies],
        "time": years,
        "quantile": ["3%", "25%", "75%", "97%"],
    }
    dims3 = ("patient", "strategy", "time")
    data = {
        "mean": (dims3, np.asarray(rows["mean"])),
        "mean_hdi_low": (dims3, np.asarray(rows["lo"])),
        "mean_hdi_high": (dims3, np.asarray(rows["hi"])),
        "band": ((*dims3, "quantile"), np.asarray(rows["band"])),
        "p_disabled": (dims3, np.asarray(rows["dis"])),
        "rituximab_start": (("patient", "strategy"), np.asarray(rows["start"])),
        "fitted": (("patient",), np.array([predictor.is_fitted(p) for p in ids])),
        "importance_ess": (("patient",), np.array([predictor.draws(p).ess for p in ids])),
    }
    if predictor.population.family == "ordered_logistic":
        n_categories = scores.n_categories(score)
        coords["category"] = list(range(n_categories))
        data["p_category"] = ((*dims3, "category"), np.asarray(rows["p"]))
    out = xr.Dataset(data, coords=coords)
    out.attrs.update(
        {
            "model": "progression",
            "score": score,
            "threshold": threshold,
            "threshold_direction": "at or below" if score == "irods" else "at or above",
            "strategies": [s.describe() for s in strategies],
            "hdi_prob": result.hdi_prob,
        }
    )
    return out


# ----------------------------------------------------------------------------- timing

#: The horizon of the timing answer (years since onset).
TIMING_HORIZON_YEARS = 10.0


def timing_contrast(
    result: Any, cohort: Any, *, seed: int = 0, predictor_type: type | None = None
) -> xr.Dataset:
    """Prompt against delayed rituximab for the cohort's patients, per posterior draw.

    Every patient of the fit is predicted at :data:`TIMING_HORIZON_YEARS` since onset
    under the default ``prompt`` and ``delayed`` strategies (every other treatment as
    observed), and the difference prompt minus delayed of the expected score and of
    P(disabled) is averaged over the patients of each early-sural group
    (standardisation): a patient whose status is unknown counts in the group of their
    status drawn in each posterior draw.

    ``predictor_type``: the model's :class:`Predictor` (default this one); a model that
    shares the trajectory (the joint model) passes its own, which draws unknown
    early-sural statuses from what it also conditions on.

    Returns
    -------
    xarray.Dataset
        ``expected_score`` and ``p_disabled``, dims (chain, draw, group) with group
        ``sural_reduced`` and ``sural_preserved``: prompt minus delayed. Attributes name
        the strategies, their start times, the horizon, the threshold and which sign
        means that prompt is better.
    """
    from magbayes.predict.strategies import DEFAULT_STRATEGIES

    by_name = {s.name: s for s in DEFAULT_STRATEGIES}
    prompt, delayed = by_name["prompt"], by_name["delayed"]
    predictor = (predictor_type or Predictor)(result, cohort, seed=seed)
    score = predictor.score
    threshold = float(THRESHOLDS.get(score, 4))
    years = np.array([TIMING_HORIZON_YEARS])
    ids = [pid for pid in (str(p) for p in cohort.patient_ids) if predictor.is_fitted(pid)]
    p = predictor.population
    differences = {"expected_score": [], "p_disabled": []}
    reduced = []
    for pid in ids:
        values = {}
        for strategy in (prompt, delayed):
            eta, _ = predictor.latent_under(pid, strategy, years)
            dist = score_distribution(p, eta, score, threshold)
            values[strategy.name] = (dist["expected"][:, 0], dist["p_threshold"][:, 0])
        differences["expected_score"].append(values["prompt"][0] - values["delayed"][0])
        differences["p_disabled"].append(values["prompt"][1] - values["delayed"][1])
        reduced.append(predictor.draws(pid).reduced)
    status = np.asarray(reduced).T  # (sample, patient)
    out = {}
    for measure, rows in differences.items():
        diff = np.asarray(rows).T  # (sample, patient)
        groups = []
        for weight in (status, 1.0 - status):
            total = weight.sum(axis=1)
            groups.append(
                np.where(total > 0, (weight * diff).sum(axis=1) / np.maximum(total, 1), np.nan)
            )
        out[measure] = (("chain", "draw", "group"), np.stack(groups, -1).reshape(*p.shape, 2))
    lower_is_better = score != "irods"
    return xr.Dataset(
        out,
        coords={"group": ["sural_reduced", "sural_preserved"]},
        attrs={
            "prompt": prompt.describe(),
            "prompt_start_years": prompt.years_since_onset,
            "delayed": delayed.describe(),
            "delayed_start_years": delayed.years_since_onset,
            "horizon_years": TIMING_HORIZON_YEARS,
            "score": score,
            "threshold": threshold,
            "disabled": f"{score.upper()} {'at or above' if lower_is_better else 'at or below'} "
            f"{threshold:g}",
            "expected_score_prompt_better": "negative" if lower_is_better else "positive",
            "p_disabled_prompt_better": "negative",
            "patients": len(ids),
        },
    )
