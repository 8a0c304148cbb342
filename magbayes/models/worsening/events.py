"""Confirmed worsening of a disability score, from a patient's scored visits (CLINICAL.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from magbayes.cohort.tables import SCORES
from magbayes.errors import SpecError

#: Scores for which a *lower* value is worse (I-RODS centile: higher = less disability).
LOWER_IS_WORSE = {"irods"}


@dataclass(frozen=True)
class WorseningOutcome:
    """One patient's confirmed-worsening outcome, in years since onset.

    Attributes
    ----------
    entry_years : float
        Baseline visit: start of the time at risk.
    kind : str
        ``"interval"`` (worsening in ``(lower, upper]``), ``"right"`` (none by
        ``upper``) or ``"observed"`` (worsening dated at ``upper``, only with
        ``event_time = "detecting_visit"``).
    lower_years, upper_years : float
        Interval bounds (interval); both the censoring time (right); the detecting visit
        (observed).
    end_of_follow_up_years : float
        Last time a worsening could still have been seen and confirmed: the end of the
        time at risk if no worsening had happened (used for predictive checks).
    baseline_score : float
        The reference score of the first worsening checked (the baseline visit's score
        with the ``"first"`` rule).
    checked_visit_years : tuple of float
        The visits checked for worsening, ``t_0`` (baseline, = ``entry_years``) to
        ``t_J`` (= ``end_of_follow_up_years``): the design of the outcome.
    worsening_interval : int
        The outcome as an index: ``j`` (1..J) when the worsening was first seen at the
        ``j``-th checked visit after baseline, i.e. happened in ``(t_{j-1}, t_j]``; 0
        when no confirmed worsening was seen by ``t_J`` (right-censored).
    """

    entry_years: float
    kind: str
    lower_years: float
    upper_years: float
    end_of_follow_up_years: float
    baseline_score: float
    checked_visit_years: tuple[float, ...] = ()
    worsening_interval: int = 0


def confirmed_worsening(
    years: np.ndarray,
    values: np.ndarray,
    *,
    change: float = 1.0,
    lower_is_worse: bool = False,
    baseline: str = "first",
    confirmation: str = "next_visit",
    follow_up_ends: str = "last_confirmable_visit",
    event_time: str = "interval",
) -> WorseningOutcome | None:
    """Confirmed worsening of one patient from their scored visits.

    Parameters
    ----------
    years : numpy.ndarray
        Visit times (years since onset), increasing; only visits with the score.
    values : numpy.ndarray
        The score at those visits.
    change : float
        Points (score units) worse than the reference that count as worsening.
    lower_is_worse : bool
        True for I-RODS (a fall is a worsening).
    baseline : {"first", "best_so_far"}
        Reference score: the first visit's (fixed), or the best score at any earlier
        visit (a roving reference: worsening from the best state reached).
    confirmation : {"next_visit", "none"}
        ``next_visit``: the next scored visit must also be at least ``change`` worse than
        the same reference; ``none``: the first worse visit counts.
    follow_up_ends : {"last_confirmable_visit", "last_visit"}
        ``last_confirmable_visit`` (default): with confirmation, a worsening first seen at
        the last visit can never be confirmed, so every patient's time at risk ends at
        the last visit that could still be confirmed (the second-to-last one). An
        unconfirmed worsening at the last visit is thus censored at the previous visit,
        and so is a patient without worsening, which keeps censoring independent of the
        outcome. ``last_visit``: assume worsening persists; an unconfirmed worsening at
        the last visit counts as worsening between the last two visits, and patients
        without worsening are censored at the last visit.
    event_time : {"interval", "detecting_visit"}
        ``interval`` (correct): worsening happened in ``(previous visit, detecting
        visit]``. ``detecting_visit``: pretend it happened exactly at the detecting visit
        (the shortcut of many published analyses, kept to show its bias).

    Returns
    -------
    WorseningOutcome or None
        None when the patient has no time at risk (fewer than two scored visits, or
        three with confirmation and ``last_confirmable_visit``).
    """
    t = np.asarray(years, float)
    v = np.asarray(values, float)
    if baseline not in ("first", "best_so_far"):
        raise SpecError(f"[outcome] baseline must be 'first' or 'best_so_far', not {baseline!r}")
    if confirmation not in ("next_visit", "none"):
        raise SpecError(
            f"[outcome] confirmation must be 'next_visit' or 'none', not {confirmation!r}"
        )
    if follow_up_ends not in ("last_confirmable_visit", "last_visit"):
        raise SpecError(
            "[outcome] follow_up_ends must be 'last_confirmable_visit' or 'last_visit', "
            f"not {follow_up_ends!r}"
        )
    if event_time not in ("interval", "detecting_visit"):
        raise SpecError(
            f"[outcome] event_time must be 'interval' or 'detecting_visit', not {event_time!r}"
        )
    n = len(t)
    confirm = confirmation == "next_visit"
    last_checked = n - 2 if (confirm and follow_up_ends == "last_confirmable_visit") else n - 1
    if n < 2 or last_checked < 1:
        return None
    sign = -1.0 if lower_is_worse else 1.0
    worse_side = sign * v  # higher = worse
    if baseline == "first":
        reference = np.full(n, worse_side[0])
    else:
        reference = np.r_[worse_side[0], np.minimum.accumulate(worse_side)[:-1]]
    end = t[last_checked]
    checked = tuple(float(x) for x in t[: last_checked + 1])
    for j in range(1, last_checked + 1):
        if worse_side[j] - reference[j] < change:
            continue
        confirmed = (
            not confirm
            or (j + 1 < n and worse_side[j + 1] - reference[j] >= change)
            or (j == n - 1 and follow_up_ends == "last_visit")
        )
        if not confirmed:
            continue
        ref_score = sign * reference[j]
        if event_time == "detecting_visit":
            return WorseningOutcome(t[0], "observed", t[j], t[j], end, ref_score, checked, j)
        return WorseningOutcome(t[0], "interval", t[j - 1], t[j], end, ref_score, checked, j)
    return WorseningOutcome(
        t[0], "right", end, end, end, sign * reference[last_checked], checked, 0
    )


def worsening_outcomes(visits: pd.DataFrame, outcome: dict[str, Any]) -> pd.DataFrame:
    """Confirmed-worsening outcome of every patient with follow-up.

    Parameters
    ----------
    visits : pandas.DataFrame
        ``patient_id``, ``years_since_onset`` and the score column (visits without the
        score are skipped).
    outcome : dict
        The spec's ``[outcome]`` table.

    Returns
    -------
    pandas.DataFrame
        Indexed by patient id: ``entry_years``, ``kind``, ``lower_years``,
        ``upper_years``, ``end_of_follow_up_years``, ``baseline_score``,
        ``checked_visit_years`` (tuple), ``worsening_interval`` (0: none; ``j``: between
        the ``j-1``-th and ``j``-th checked visits after baseline), ``n_scored_visits``.
        Patients without time at risk are absent.
    """
    score = outcome.get("score", "incat")
    if score not in SCORES:
        raise SpecError(f"[outcome] score must be one of {', '.join(SCORES)}, not {score!r}")
    change = float(outcome.get("change", 1))
    if change <= 0:
        raise SpecError(f"[outcome] change must be positive, not {change}")
    scored = visits[visits[score].notna()].sort_values(
        ["patient_id", "years_since_onset"], kind="stable"
    )
    rows = {}
    for pid, g in scored.groupby("patient_id", sort=False):
        result = confirmed_worsening(
            g["years_since_onset"].to_numpy(float),
            g[score].to_numpy(float),
            change=change,
            lower_is_worse=score in LOWER_IS_WORSE,
            baseline=outcome.get("baseline", "first"),
            confirmation=outcome.get("confirmation", "next_visit"),
            follow_up_ends=outcome.get("follow_up_ends", "last_confirmable_visit"),
            event_time=outcome.get("event_time", "interval"),
        )
        if result is not None:
            rows[pid] = {**result.__dict__, "n_scored_visits": len(g)}
    columns = [*WorseningOutcome.__dataclass_fields__, "n_scored_visits"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)
