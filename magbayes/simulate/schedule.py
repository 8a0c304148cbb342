"""When each patient is seen: first visit near diagnosis, then every 6-12 months.

Follow-up ends at a planned time (dropout) or at the cohort's maximum follow-up,
whichever comes first. Times are years since symptom onset, rounded to 0.001 years
(about 9 hours) so that the tables hold exactly what is written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def draw_visit_times(
    rng: np.random.Generator,
    patients: pd.DataFrame,
    max_follow_up_years: float,
    visits: dict[str, Any],
) -> pd.DataFrame:
    """Visit times of every patient.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream for this stage.
    patients : pandas.DataFrame
        True patients (``patient_id``, ``first_ncs_years``).
    max_follow_up_years : float
        No visit later than this (years since onset).
    visits : dict
        The ``visits`` section of the parameters.

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``years_since_onset`` (float, 0.001) and ``visit`` (0 = baseline,
        the first visit), sorted by patient and time. Every patient has at least one
        visit; the first is shortly after the first nerve conduction study (diagnosis).
    """
    n = len(patients)
    lag = rng.exponential(visits["first_visit_lag_mean_years"], n)
    first = np.round(patients["first_ncs_years"].to_numpy(float) + lag, 3)
    first = np.minimum(first, max_follow_up_years)
    shape = visits["follow_up_shape"]
    planned = first + rng.gamma(shape, visits["follow_up_mean_years"] / shape, n)
    end = np.minimum(planned, max_follow_up_years)

    ids, times, numbers = [], [], []
    log_median = np.log(visits["interval_median_years"])
    for i, pid in enumerate(patients["patient_id"]):
        t, k = float(first[i]), 0
        while True:
            ids.append(pid)
            times.append(t)
            numbers.append(k)
            step = np.exp(rng.normal(log_median, visits["interval_log_sd"]))
            step = float(np.clip(step, visits["interval_min_years"], visits["interval_max_years"]))
            t = round(t + step, 3)
            k += 1
            if t > end[i]:
                break
    return pd.DataFrame({"patient_id": ids, "years_since_onset": times, "visit": numbers})
