"""Confirmed worsening: true event times from a proportional-hazards model.

Confirmed worsening is an INCAT at least one point above the baseline (first) visit,
confirmed at the next visit. With ``worsening_from="hazard"`` each patient's true time of
worsening ``T_i`` (years since onset) has hazard, per year::

    h_i(t) = h0(t) * exp(site_log_frailty[s]
                         + sum_c beta_covariate[c] * z_ic
                         + sum_{courses k with start s_k <= t} beta_k)

    beta_k = beta_treatment[treatment_k]                           (not rituximab)
           = beta_rituximab + beta_rituximab_x_sural * sural_reduced_i   (rituximab)

with ``h0`` piecewise constant on [0, 2, 4, 6, 8, 12, inf) years since onset and
``site_log_frailty[s] ~ Normal(0, site_frailty_sd)``. Patients are at risk from their
baseline visit (delayed entry): ``T_i`` is drawn given no worsening before it. INCAT is
then made consistent with ``T_i`` (:func:`impose_worsening`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from magbayes.simulate.parameters import COVARIATES, HAZARD_BREAKS_YEARS

#: Highest INCAT (0-10) at baseline when worsening is imposed, so that a one-point
#: worsening is always possible.
MAX_BASELINE_INCAT: int = 9


def draw_site_frailty(
    rng: np.random.Generator, sites: list[str], worsening: dict[str, Any]
) -> dict[str, float]:
    """``site_log_frailty[s] ~ Normal(0, site_frailty_sd)`` (log hazard ratio)."""
    values = rng.normal(0.0, worsening["site_frailty_sd"], len(sites))
    return {s: float(v) for s, v in zip(sites, values, strict=True)}


def course_log_hazard_ratios(
    courses: pd.DataFrame, sural_reduced: dict[str, bool], worsening: dict[str, Any]
) -> np.ndarray:
    """``beta_k`` of each course: log hazard ratio from its start onwards."""
    out = np.empty(len(courses))
    for k, (pid, treatment) in enumerate(
        zip(courses["patient_id"], courses["treatment"], strict=True)
    ):
        if treatment == "rituximab":
            out[k] = worsening["beta_rituximab"] + worsening["beta_rituximab_x_sural"] * float(
                sural_reduced[pid]
            )
        else:
            out[k] = worsening["beta_treatment"][treatment]
    return out


def draw_worsening_times(
    rng: np.random.Generator,
    patient_ids: list[str],
    entry_years: np.ndarray,
    fixed_log_hazard: np.ndarray,
    courses: pd.DataFrame,
    course_log_hr: np.ndarray,
    worsening: dict[str, Any],
) -> np.ndarray:
    """True time of worsening of each patient (years since onset, after entry).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream for this stage.
    patient_ids : list of str
        Patients in table order.
    entry_years : numpy.ndarray
        Baseline visit of each patient (start of the time at risk).
    fixed_log_hazard : numpy.ndarray
        Site frailty plus covariate terms of each patient (log hazard ratio).
    courses : pandas.DataFrame
        ``patient_id``, ``start_years``.
    course_log_hr : numpy.ndarray
        From :func:`course_log_hazard_ratios`.
    worsening : dict
        The ``worsening`` section of the parameters (``baseline_hazard`` per year).

    Returns
    -------
    numpy.ndarray
        ``T_i``; ``inf`` if the hazard is zero from some time on and the event never comes.
    """
    breaks = np.asarray(HAZARD_BREAKS_YEARS, float)
    log_h0 = np.log(np.maximum(np.asarray(worsening["baseline_hazard"], float), 1e-300))
    h0_zero = np.asarray(worsening["baseline_hazard"], float) <= 0
    by_patient = {
        pid: (g["start_years"].to_numpy(float), course_log_hr[g.index.to_numpy()])
        for pid, g in courses.reset_index(drop=True).groupby("patient_id", sort=False)
    }
    times = np.empty(len(patient_ids))
    for i, pid in enumerate(patient_ids):
        starts, log_hr = by_patient.get(pid, (np.zeros(0), np.zeros(0)))
        entry = float(entry_years[i])
        cuts = np.union1d(breaks[breaks > entry], starts[starts > entry])
        target = rng.exponential(1.0)
        lower = entry
        times[i] = np.inf
        for upper in [*cuts.tolist(), np.inf]:
            piece = int(np.searchsorted(breaks, lower, side="right") - 1)
            if h0_zero[piece]:
                hazard = 0.0
            else:
                hazard = float(
                    np.exp(log_h0[piece] + fixed_log_hazard[i] + log_hr[starts <= lower].sum())
                )
            mass = hazard * (upper - lower)
            if hazard > 0 and mass >= target:
                times[i] = lower + target / hazard
                break
            target -= mass
            lower = upper
    return times


def fixed_log_hazard(
    z: np.ndarray, site_of_patient: np.ndarray, site_log_frailty: dict[str, float], worsening
) -> np.ndarray:
    """Site frailty plus ``sum_c beta_covariate[c] * z_ic`` per patient."""
    beta = np.asarray([worsening["beta_covariate"][c] for c in COVARIATES], float)
    frailty = np.asarray([site_log_frailty[s] for s in site_of_patient], float)
    return frailty + z @ beta


def impose_worsening(
    visits: pd.DataFrame, incat: np.ndarray, worsening_time: dict[str, float]
) -> np.ndarray:
    """INCAT made consistent with the true worsening times.

    The baseline (first) visit keeps its draw, capped at :data:`MAX_BASELINE_INCAT`;
    visits before ``T_i`` are capped at the baseline value; visits after ``T_i`` are
    raised to at least baseline + 1. The first visit after ``T_i`` is thus the first that
    shows the worsening, and the next visit confirms it.

    Parameters
    ----------
    visits : pandas.DataFrame
        ``patient_id``, ``years_since_onset``, ``visit`` (0 = baseline), sorted by
        patient and time.
    incat : numpy.ndarray
        Ordered-logistic INCAT draws at those visits.
    worsening_time : dict
        ``{patient_id: T_i}``.
    """
    out = np.asarray(incat, int).copy()
    pids = visits["patient_id"]
    times = visits["years_since_onset"].to_numpy(float)
    is_baseline = visits["visit"].to_numpy() == 0
    out[is_baseline] = np.minimum(out[is_baseline], MAX_BASELINE_INCAT)
    baseline_of = dict(zip(pids[is_baseline], out[is_baseline], strict=True))
    base = pids.map(baseline_of).to_numpy(int)
    after = times > pids.map(worsening_time).to_numpy(float)
    later = ~is_baseline
    out[later & after] = np.maximum(out[later & after], base[later & after] + 1)
    out[later & ~after] = np.minimum(out[later & ~after], base[later & ~after])
    return out


def first_confirmed_worsening(
    visits: pd.DataFrame, score: str = "incat", min_increase: int = 1
) -> pd.Series:
    """Time of the first visit showing confirmed worsening, per patient.

    Parameters
    ----------
    visits : pandas.DataFrame
        ``patient_id``, ``years_since_onset`` and ``score``; visits where the score is
        missing are skipped.
    score : str
        The score (INCAT by default).
    min_increase : int
        Points above the baseline (the patient's first recorded score) that count.

    Returns
    -------
    pandas.Series
        Years since onset of the first visit with ``score >= baseline + min_increase``
        whose next recorded visit also has it; NaN when there is none. Indexed by
        patient id (every patient in ``visits``).
    """
    out = {}
    for pid, g in visits.sort_values(["patient_id", "years_since_onset"]).groupby(
        "patient_id", sort=False
    ):
        recorded = g[g[score].notna()]
        values = recorded[score].to_numpy(float)
        times = recorded["years_since_onset"].to_numpy(float)
        out[pid] = np.nan
        if len(values) < 3:
            continue  # a baseline, a worse visit and its confirmation are needed
        worse = values >= values[0] + min_increase
        for j in range(1, len(values) - 1):
            if worse[j] and worse[j + 1]:
                out[pid] = times[j]
                break
    return pd.Series(out, name=f"first_confirmed_worsening_{score}", dtype=float)
