"""Rituximab started on observed worsening (confounding by indication).

By default the simulator draws every treatment course independently of the disability
(:mod:`magbayes.simulate.treatments`). With ``treatments.rituximab_trigger_incat_rise``
above 0 it behaves as clinicians do instead: rituximab starts ``rituximab_trigger_lag_years``
after the first visit whose INCAT has risen by at least that many points since the
patient's first visit, and never for a patient whose INCAT never rises that far.

The decision is taken on the scores as observed before rituximab, and the scores are then
drawn again from the same random numbers with rituximab in place. The rate changes only
after a course starts, so every visit up to the start keeps the score the decision saw:
treatment depends on the observed past only (sequential ignorability), which is what the
progression model assumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

RITUXIMAB = "rituximab"


def on_worsening(treatments: dict[str, Any]) -> bool:
    """Whether rituximab is started on observed worsening (the trigger is above 0)."""
    return float(treatments.get("rituximab_trigger_incat_rise", 0.0)) > 0.0


def without_rituximab(courses: pd.DataFrame) -> pd.DataFrame:
    """The courses with every rituximab course removed and lines renumbered 1, 2, ..."""
    kept = courses[courses["treatment"] != RITUXIMAB].copy()
    return _renumbered(kept)


def start_on_worsening(
    courses: pd.DataFrame,
    visits: pd.DataFrame,
    incat: np.ndarray,
    last_visit_years: dict[str, float],
    treatments: dict[str, Any],
) -> pd.DataFrame:
    """Add one rituximab course per patient, started after observed INCAT worsening.

    Parameters
    ----------
    courses : pandas.DataFrame
        Courses without rituximab (:func:`without_rituximab`).
    visits : pandas.DataFrame
        ``patient_id`` and ``years_since_onset`` of every visit, sorted by patient and time.
    incat : numpy.ndarray
        INCAT at each visit as drawn without rituximab (0-10).
    last_visit_years : dict
        Last visit of each patient (years since onset).
    treatments : dict
        The ``treatments`` parameters (trigger rise in INCAT points, lag in years, the
        mean rituximab course duration in years).

    Returns
    -------
    pandas.DataFrame
        The courses with rituximab added; its line is one more than the number of
        courses started before it, and later courses move one line down.
    """
    rise = float(treatments["rituximab_trigger_incat_rise"])
    lag = float(treatments["rituximab_trigger_lag_years"])
    duration = float(treatments["duration_mean_years"][RITUXIMAB])
    frame = pd.DataFrame(
        {
            "patient_id": visits["patient_id"].to_numpy(),
            "years": visits["years_since_onset"].to_numpy(float),
            "incat": np.asarray(incat, float),
        }
    )
    added = []
    for pid, rows in frame.groupby("patient_id", sort=False):
        risen = rows["incat"].to_numpy() - rows["incat"].iloc[0] >= rise
        if not risen.any():
            continue
        start = round(float(rows["years"].to_numpy()[np.argmax(risen)] + lag), 3)
        last = last_visit_years[pid]
        if start > last:
            continue
        stop = round(start + duration, 3)
        added.append(
            {
                "patient_id": pid,
                "treatment": RITUXIMAB,
                "line": 0,
                "start_years": start,
                "stop_years": stop if stop <= last else np.nan,
            }
        )
    if not added:
        return courses.reset_index(drop=True)
    merged = pd.concat([courses, pd.DataFrame(added)], ignore_index=True)
    return _renumbered(merged)


def _renumbered(courses: pd.DataFrame) -> pd.DataFrame:
    """Lines 1, 2, ... in order of start within each patient (ties keep table order)."""
    ordered = courses.sort_values(["patient_id", "start_years"], kind="stable").copy()
    ordered["line"] = ordered.groupby("patient_id", sort=False).cumcount() + 1
    return ordered.astype({"line": int}).reset_index(drop=True)
