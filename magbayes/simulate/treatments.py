"""Treatment courses: which treatment at which line, when it starts and stops.

Treatment decisions are drawn independently of the latent disability (no confounding by
indication; an assumption that keeps the true effects identifiable). A patient never
receives the same treatment twice, so courses of the same treatment never overlap;
courses of different treatments may (a new line can start while IVIg continues).
Only courses that start by the patient's last visit are kept; a course still running at
the last visit has no stop time (ongoing).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

COURSE_COLUMNS: tuple[str, ...] = ("patient_id", "treatment", "line", "start_years", "stop_years")


def draw_courses(
    rng: np.random.Generator,
    patient_ids: list[str],
    first_visit_years: np.ndarray,
    last_visit_years: np.ndarray,
    treatments: dict[str, Any],
) -> pd.DataFrame:
    """Treatment courses of every patient.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream for this stage.
    patient_ids : list of str
        Patients, in table order.
    first_visit_years, last_visit_years : numpy.ndarray
        First and last visit of each patient (years since onset).
    treatments : dict
        The ``treatments`` section of the parameters.

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``treatment``, ``line`` (1, 2, ...), ``start_years`` and
        ``stop_years`` (years since onset, 0.001; NaN = ongoing at the last visit), sorted
        by patient and line.
    """
    rows: list[dict[str, Any]] = []
    for i, pid in enumerate(patient_ids):
        plan = _plan_lines(rng, treatments)
        start = first_visit_years[i] + rng.exponential(treatments["first_line_delay_mean_years"])
        shape = treatments["line_gap_shape"]
        for line, treatment in enumerate(plan, start=1):
            if line > 1:
                start += rng.gamma(shape, treatments["line_gap_mean_years"] / shape)
            start_years = round(float(start), 3)
            duration = _duration(rng, treatment, treatments)
            if start_years > last_visit_years[i]:
                break
            stop_years = round(start_years + max(duration, 0.001), 3)
            if stop_years > last_visit_years[i]:
                stop_years = np.nan
            rows.append(
                {
                    "patient_id": pid,
                    "treatment": treatment,
                    "line": line,
                    "start_years": start_years,
                    "stop_years": stop_years,
                }
            )
    frame = pd.DataFrame(rows, columns=list(COURSE_COLUMNS))
    return frame.astype({"line": int, "start_years": float, "stop_years": float})


def _plan_lines(rng: np.random.Generator, treatments: dict[str, Any]) -> list[str]:
    """The sequence of treatments a patient would receive with unlimited follow-up."""
    if rng.random() >= treatments["any_immunotherapy"]:
        return []
    line_p = treatments["rituximab_line_probabilities"]
    choice = list(line_p)[rng.choice(len(line_p), p=_normalised(line_p.values()))]
    if choice == "none":
        extra_p = treatments["extra_lines_probabilities"]
        extra = int(list(extra_p)[rng.choice(len(extra_p), p=_normalised(extra_p.values()))])
        n_lines, rituximab_line = 1 + extra, 0
    else:
        rituximab_line = int(choice)
        n_lines = rituximab_line + int(rng.random() < treatments["line_after_rituximab"])
    plan: list[str] = []
    for line in range(1, n_lines + 1):
        if line == rituximab_line:
            plan.append("rituximab")
            continue
        weights = treatments["first_line_probabilities" if line == 1 else "later_line_weights"]
        options = [t for t in weights if t not in plan and weights[t] > 0]
        if not options:
            if "other" in plan:
                break
            plan.append("other")
            continue
        p = _normalised([weights[t] for t in options])
        plan.append(options[rng.choice(len(options), p=p)])
    return plan


def _duration(rng: np.random.Generator, treatment: str, treatments: dict[str, Any]) -> float:
    """Length of a course (years): gamma around the treatment's mean duration.

    Rituximab courses (2-4 infusions) are tightly spread (shape 8); the others vary more
    (shape 2).
    """
    mean = treatments["duration_mean_years"][treatment]
    shape = 8.0 if treatment == "rituximab" else 2.0
    return float(rng.gamma(shape, mean / shape))


def _normalised(weights) -> np.ndarray:
    values = np.asarray(list(weights), float)
    return values / values.sum()
