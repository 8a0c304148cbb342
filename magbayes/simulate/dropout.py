"""End of follow-up: death and loss to follow-up that depend on the current disability.

Used only with ``simulate_cohort(..., end_of_follow_up=True)``. For patient ``i``, on the
years-since-onset axis, with ``eta_i(t)`` the latent disability of
:mod:`magbayes.simulate.trajectories` (:func:`~magbayes.simulate.trajectories.latent_path`)::

    death:  h_i(t) = h0(t) * exp(death_alpha * (eta_i(t) - disability_reference))
            h0(t)  = (shape / scale) * (t / scale) ** (shape - 1)        (Weibull)
    lost:   l_i(t) = lost_hazard * exp(lost_alpha * (eta_i(t) - disability_reference))

``scale`` is set so that a patient at the reference disability dies between 5 and 6 years
after onset with probability ``death_hazard`` (:func:`weibull_scale_years`). A patient is
at risk of both from the first visit (delayed entry: alive when first seen) to the last
visit of the schedule (the study's end for that patient); the two are independent
competing risks given ``eta``. Each time is drawn exactly by thinning
(:func:`draw_event_time`): ``eta`` is linear between course starts, so on each cell of a
grid holding those starts the hazard is bounded by its values at the cell's ends.

What is written (:func:`end_of_follow_up`):

- death first: the visits after it are removed; ``end_reason`` ``death`` at the death
  time, or, for a share ``interval_censored_share`` of deaths, known only to lie between
  the last visit before it (``end_lower_years``) and the next scheduled visit
  (``end_years``);
- loss first: the visits after it are removed; ``lost_to_follow_up`` at the last visit
  before it (the last contact);
- neither: ``study_end`` at the last scheduled visit.

A last visit with mRS 6 (dead, from the scores) is a death at that visit, known exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from magbayes.simulate.trajectories import latent_path

#: Years since onset at which ``death_hazard`` is the annual mortality (year 5 to 6).
MORTALITY_AT_YEARS: float = 5.0

#: Width of the thinning cells (years); course starts split cells further.
CELL_YEARS: float = 1.0

#: Decimals of the written times (as the visit times: 0.001 year, about 9 hours).
TIME_DECIMALS: int = 3

DEATH, LOST, STUDY_END = "death", "lost_to_follow_up", "study_end"


def weibull_scale_years(
    annual_mortality: float, shape: float, at_years: float = MORTALITY_AT_YEARS
) -> float:
    """Weibull scale (years) giving ``annual_mortality`` between ``at_years`` and one year on.

    ``1 - exp(-(H0(at + 1) - H0(at))) = annual_mortality`` with ``H0(t) = (t / scale) **
    shape``.

    Parameters
    ----------
    annual_mortality : float
        Probability of dying within that year, given alive at its start (0 to 1).
    shape : float
        Weibull shape (> 1: hazard rising with time since onset, as with age).
    at_years : float
        Start of the year (years since onset).
    """
    increment = -math.log1p(-annual_mortality)
    return ((at_years + 1.0) ** shape - at_years**shape) ** (1.0 / shape) / increment ** (
        1.0 / shape
    )


def weibull_hazard(t: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """``h0(t) = (shape / scale) * (t / scale) ** (shape - 1)`` (per year; t in years)."""
    t = np.asarray(t, float)
    return (shape / scale) * (t / scale) ** (shape - 1.0)


def weibull_cumulative(t: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """``H0(t) = (t / scale) ** shape`` (t in years since onset)."""
    return (np.asarray(t, float) / scale) ** shape


def draw_event_time(
    rng: np.random.Generator,
    hazard: Callable[[np.ndarray], np.ndarray],
    start: float,
    stop: float,
    breaks: np.ndarray,
) -> float:
    """An exact draw of the first event of a hazard on ``(start, stop]``; ``inf`` if none.

    Thinning (Lewis and Shedler 1979) on cells of at most :data:`CELL_YEARS`, split at
    ``breaks``: on each cell the hazard must be bounded by the larger of its values at the
    cell's two ends, which holds for ``h0(t) * exp(alpha * eta(t))`` with ``h0`` monotone
    and ``eta`` linear on the cell.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream.
    hazard : callable
        Hazard (per year) at an array of times (years since onset).
    start, stop : float
        The time at risk (years since onset).
    breaks : numpy.ndarray
        Times where the hazard's log-linear form changes (course starts).
    """
    if not stop > start:
        return math.inf
    n_cells = max(1, math.ceil((stop - start) / CELL_YEARS))
    edges = np.linspace(start, stop, n_cells + 1)
    inside = np.asarray(breaks, float)
    inside = inside[(inside > start) & (inside < stop)]
    edges = np.unique(np.concatenate([edges, inside]))
    ends = hazard(edges)
    for a, b, ha, hb in zip(edges[:-1], edges[1:], ends[:-1], ends[1:], strict=True):
        bound = max(ha, hb)
        if not bound > 0:
            continue
        t = a
        while True:
            t += rng.exponential(1.0 / bound)
            if t >= b:
                break
            if rng.random() * bound <= float(hazard(np.array([t]))[0]):
                return float(t)
    return math.inf


def proportional_hazard(
    baseline: Callable[[np.ndarray], np.ndarray],
    alpha: float,
    eta: Callable[[np.ndarray], np.ndarray],
    reference: float,
) -> Callable[[np.ndarray], np.ndarray]:
    """``t -> baseline(t) * exp(alpha * (eta(t) - reference))`` (per year).

    Parameters
    ----------
    baseline : callable
        Baseline hazard (per year) at times in years since onset.
    alpha : float
        Log hazard ratio per latent logit of disability.
    eta : callable
        The patient's latent disability at times (latent logit).
    reference : float
        Latent disability at which the hazard is the baseline.
    """
    if alpha == 0.0:
        return baseline

    def hazard(t: np.ndarray) -> np.ndarray:
        return baseline(t) * np.exp(alpha * (eta(t) - reference))

    return hazard


def end_of_follow_up(
    rng: np.random.Generator,
    visits: pd.DataFrame,
    patient_ids: list[str],
    level: np.ndarray,
    rate: np.ndarray,
    covariate_effect: np.ndarray,
    courses: pd.DataFrame,
    dropout: dict[str, Any],
) -> pd.DataFrame:
    """Draw each patient's death and loss to follow-up, and what the cohort then records.

    Parameters
    ----------
    rng : numpy.random.Generator
        The ``end_of_follow_up`` random stream.
    visits : pandas.DataFrame
        Every scheduled visit: ``patient_id``, ``years_since_onset`` and ``mrs`` (complete
        true scores).
    patient_ids : list of str
        Order of ``level``, ``rate`` and ``covariate_effect``.
    level, rate, covariate_effect : numpy.ndarray
        As for :func:`magbayes.simulate.trajectories.latent_path`.
    courses : pandas.DataFrame
        ``patient_id``, ``start_years`` and ``gamma`` of every course.
    dropout : dict
        The ``dropout`` section of the parameters.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id``: ``end_years``, ``end_reason``, ``end_lower_years``
        (what patients.csv records; times rounded to 0.001 year), ``last_contact_years``
        (visits after it are removed), ``death_years`` and ``lost_years`` (the true times
        drawn; ``inf`` when none within the time at risk), ``death_from`` (``"hazard"``,
        ``"mrs_6"`` or ``None``), ``at_risk_from_years``, ``at_risk_until_years`` and
        ``latent_at_entry`` (``eta`` at the first visit).
    """
    shape = dropout["death_shape"]
    scale = weibull_scale_years(dropout["death_hazard"], shape)
    alpha, lost_alpha = dropout["death_alpha"], dropout["lost_alpha"]
    reference, lost_rate = dropout["disability_reference"], dropout["lost_hazard"]
    by_patient = {pid: own for pid, own in visits.groupby("patient_id", sort=False)}
    course_of = {pid: own for pid, own in courses.groupby("patient_id", sort=False)}
    empty = courses.iloc[0:0]
    paths, windows = [], []
    for i, pid in enumerate(patient_ids):
        own = course_of.get(pid, empty)
        starts = own["start_years"].to_numpy(float)
        gamma = own["gamma"].to_numpy(float)

        def eta(t, i=i, starts=starts, gamma=gamma):
            return latent_path(t, level[i], rate[i], covariate_effect[i], starts, gamma)

        times = by_patient[pid]["years_since_onset"].to_numpy(float)
        paths.append((eta, starts))
        windows.append((float(times.min()), float(times.max())))

    def death_baseline(t: np.ndarray) -> np.ndarray:
        return weibull_hazard(t, shape, scale)

    def lost_baseline(t: np.ndarray) -> np.ndarray:
        return np.full(np.shape(t), lost_rate)

    death = np.full(len(patient_ids), math.inf)
    for i, ((eta, starts), (start, stop)) in enumerate(zip(paths, windows, strict=True)):
        hazard = proportional_hazard(death_baseline, alpha, eta, reference)
        death[i] = draw_event_time(rng, hazard, start, stop, starts)
    lost = np.full(len(patient_ids), math.inf)
    for i, ((eta, starts), (start, stop)) in enumerate(zip(paths, windows, strict=True)):
        if lost_rate > 0.0:
            hazard = proportional_hazard(lost_baseline, lost_alpha, eta, reference)
            lost[i] = draw_event_time(rng, hazard, start, stop, starts)
    interval = rng.random(len(patient_ids)) < dropout["interval_censored_share"]

    rows = []
    for i, pid in enumerate(patient_ids):
        own = by_patient[pid]
        times = own["years_since_onset"].to_numpy(float)
        start, stop = windows[i]
        entry = {
            "patient_id": pid,
            "death_years": death[i],
            "lost_years": lost[i],
            "death_from": None,
            "at_risk_from_years": start,
            "at_risk_until_years": stop,
            "latent_at_entry": float(paths[i][0](np.array([start]))[0]),
            "end_lower_years": math.nan,
        }
        dead_at_visit = times[own["mrs"].to_numpy(float) == 6]
        if death[i] <= lost[i] and math.isfinite(death[i]):
            entry |= _death(times, death[i], bool(interval[i]))
        elif math.isfinite(lost[i]):
            contact = float(times[times <= lost[i]].max())
            entry |= {"end_years": contact, "end_reason": LOST, "last_contact_years": contact}
        else:
            entry |= {"end_years": stop, "end_reason": STUDY_END, "last_contact_years": stop}
        if dead_at_visit.size and dead_at_visit.min() <= entry["last_contact_years"]:
            at = float(dead_at_visit.min())
            entry |= {
                "end_years": at,
                "end_reason": DEATH,
                "end_lower_years": math.nan,
                "last_contact_years": at,
                "death_from": "mrs_6",
            }
        rows.append(entry)
    table = pd.DataFrame(rows).set_index("patient_id")
    for column in ("end_years", "end_lower_years"):
        table[column] = table[column].round(TIME_DECIMALS)
    return table


def _death(times: np.ndarray, when: float, interval: bool) -> dict[str, Any]:
    """What is recorded of a death at ``when`` between the visits ``times``."""
    before = float(times[times < when].max())
    if not interval:
        return {
            "end_years": when,
            "end_reason": DEATH,
            "last_contact_years": before,
            "death_from": "hazard",
        }
    after = times[times >= when]
    upper = float(after.min()) if after.size else when
    return {
        "end_years": upper,
        "end_reason": DEATH,
        "end_lower_years": before,
        "last_contact_years": before,
        "death_from": "hazard",
    }


def truncate(
    visits: pd.DataFrame, courses: pd.DataFrame, ends: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Which visits and courses remain once follow-up ends, and the courses' new stops.

    Visits after a patient's last contact are removed, and courses that start after it;
    a course still running after it becomes ongoing (no stop), as when a death shows in
    the scores.

    Parameters
    ----------
    visits : pandas.DataFrame
        ``patient_id``, ``years_since_onset``.
    courses : pandas.DataFrame
        ``patient_id``, ``start_years``, ``stop_years``.
    ends : pandas.DataFrame
        From :func:`end_of_follow_up`.

    Returns
    -------
    keep_visits, keep_courses : numpy.ndarray of bool
        Masks over the rows of ``visits`` and ``courses``.
    stop_years : pandas.Series
        The stop of every course (NaN = ongoing), indexed like ``courses``.
    """
    contact = ends["last_contact_years"]
    keep_visits = visits["years_since_onset"].to_numpy(float) <= visits["patient_id"].map(
        contact
    ).to_numpy(float)
    kept = visits[keep_visits]
    last = kept.groupby("patient_id")["years_since_onset"].max()
    course_last = courses["patient_id"].map(last).to_numpy(float)
    keep_courses = courses["start_years"].to_numpy(float) <= course_last
    stop = courses["stop_years"].astype(float).copy()
    stop[stop.to_numpy(float) > course_last] = np.nan
    return keep_visits, keep_courses, stop


def truth_section(ends: pd.DataFrame, dropout: dict[str, Any]) -> dict[str, Any]:
    """The ``end_of_follow_up`` section of ``truth.json``.

    Parameters
    ----------
    ends : pandas.DataFrame
        From :func:`end_of_follow_up`.
    dropout : dict
        The ``dropout`` parameters.
    """
    shape = dropout["death_shape"]
    patients = {}
    for pid, row in ends.iterrows():
        patients[str(pid)] = {
            "end_years": row["end_years"],
            "end_reason": row["end_reason"],
            "end_lower_years": row["end_lower_years"],
            "death_years": row["death_years"],
            "death_from": row["death_from"],
            "lost_years": row["lost_years"],
            "at_risk_from_years": row["at_risk_from_years"],
            "at_risk_until_years": row["at_risk_until_years"],
            "latent_at_entry": row["latent_at_entry"],
        }
    return {
        "association": {
            "death_alpha": dropout["death_alpha"],
            "lost_alpha": dropout["lost_alpha"],
            "disability_reference": dropout["disability_reference"],
            "scale": "log hazard ratio per latent logit of disability above the reference",
        },
        "death_baseline": {
            "distribution": "weibull",
            "shape": shape,
            "scale_years": weibull_scale_years(dropout["death_hazard"], shape),
            "annual_mortality": dropout["death_hazard"],
            "annual_mortality_at_years": MORTALITY_AT_YEARS,
            "hazard": "h0(t) = (shape / scale) (t / scale)^(shape - 1), t years since onset",
        },
        "lost_baseline": {"hazard_per_year": dropout["lost_hazard"]},
        "interval_censored_share": dropout["interval_censored_share"],
        "at_risk": "from the first visit (delayed entry) to the last scheduled visit",
        "patients": patients,
    }
