"""A simulated patient replayed under another treatment history: the true score distribution.

The simulator knows each patient's level, rate and covariates (``truth.json``), and a
treatment course changes the latent slope from its start (:mod:`~magbayes.simulate.trajectories`).
Given a patient's courses, their own or changed ones (rituximab removed, moved earlier,
lines renumbered), :func:`true_score_distribution` computes the true latent disability and
the true distribution of a score at any times, with the functions the simulator draws
with; :func:`true_contrast` averages it over a cohort's patients per treatment strategy.
These are the targets that a model's predictions under treatment strategies are checked
against.

What the replay leaves out of the simulator:

- In ``worsening_from="hazard"`` mode the written INCAT is the ordered-logistic draw
  capped or raised to agree with the true worsening time
  (:func:`magbayes.simulate.events.impose_worsening`). The replay gives the
  ordered-logistic (progression) distribution, which is then the model truth but not the
  distribution of the written INCAT; the result says so (``exact`` false). ONLS, mRS and
  I-RODS are exact in both modes, and INCAT is exact in ``scores`` mode.
- Follow-up ending at death (mRS 6) is not replayed: the distribution at a time is the one
  a patient alive and seen at that time would have.
- Everything else is deterministic given the truth: the latent disability has no noise
  beyond the scores' own draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from magbayes.cohort.tables import Cohort
from magbayes.simulate.parameters import COVARIATES
from magbayes.simulate.trajectories import (
    ORDINAL_SCORES,
    category_probabilities,
    covariate_effect,
    irods_beta_shapes,
    latent_with_courses,
)

#: Scores that can be replayed.
SCORES: tuple[str, ...] = (*ORDINAL_SCORES, "irods")

#: I-RODS is written to 0.1 centile: its categories are 0.0, 0.1, ..., 100.0.
IRODS_STEP: float = 0.1

#: Groups of :func:`true_contrast`, by the true early-sural status.
GROUPS: tuple[str, ...] = ("all", "sural_reduced", "sural_preserved")

#: Columns a courses table must have (the cohort's treatments-table names).
COURSE_COLUMNS: tuple[str, ...] = ("treatment", "line", "start_years")


def score_categories(score: str) -> np.ndarray:
    """The values a score takes: 0..K for INCAT, ONLS and mRS; 0.0..100.0 by 0.1 for I-RODS."""
    if score == "irods":
        return np.round(np.arange(int(round(100.0 / IRODS_STEP)) + 1) * IRODS_STEP, 1)
    return np.arange(ORDINAL_SCORES[score] + 1)


def true_score_distribution(
    truth: Mapping[str, Any],
    patient_id: str,
    courses: pd.DataFrame,
    years: float | np.ndarray,
    *,
    score: str = "incat",
) -> xr.Dataset:
    """The true distribution of a score over time for one patient and treatment history.

    Parameters
    ----------
    truth : dict
        A simulated cohort's truth (``SimulatedCohort.truth`` or ``truth.json`` read).
    patient_id : str
        The patient.
    courses : pandas.DataFrame
        The patient's treatment courses in the treatments-table columns: ``treatment``,
        ``line`` (1, 2, ...; a line of 2 or more adds ``gamma_later_line``) and
        ``start_years`` (years since onset); a ``patient_id`` column, if present, must
        name this patient. Other columns (``stop_years``, ``response``) are not used: a
        course changes the slope from its start onwards, also after it stops. An empty
        table means no treatment.
    years : float or array of float
        Times (years since onset).
    score : {"incat", "onls", "mrs", "irods"}
        The score.

    Returns
    -------
    xarray.Dataset
        Dims ``time`` (years since onset) and ``category`` (score values). ``p_category``
        (time, category): P(score = k), from the true latent disability and the true
        cutpoints (I-RODS: the Beta distribution's mass of each 0.1-centile bin), as the
        simulator draws scores; ``expected`` (time): the mean score; ``latent`` (time):
        the true latent disability (latent logit). Attributes: ``patient_id``, ``score``,
        ``true_sural_reduced`` (1 or 0) and ``exact`` (1, or 0 for INCAT of a
        ``hazard``-mode cohort, whose written INCAT also follows the worsening time; see
        the module docstring).

    Raises
    ------
    ValueError
        For an unknown patient or score, times that are not finite, or a courses table
        with missing columns, another patient, an unknown treatment, a line below 1 or a
        start that is not finite.
    """
    _check_score(score)
    times = np.atleast_1d(np.asarray(years, float))
    if times.ndim != 1 or times.size == 0 or not np.isfinite(times).all():
        raise ValueError(f"years must be finite years since onset, got {years!r}")
    table = _checked_courses(truth, patient_id, courses, where=f"patient {patient_id}")
    visits = pd.DataFrame({"patient_id": patient_id, "years_since_onset": times})
    eta = _latent(truth, [patient_id], visits, table)
    categories = score_categories(score)
    p = score_probabilities(eta, score, truth["progression"])
    return xr.Dataset(
        {
            "p_category": (("time", "category"), p),
            "expected": ("time", p @ categories),
            "latent": ("time", eta),
        },
        coords={"time": times, "category": categories},
        attrs={
            "patient_id": patient_id,
            "score": score,
            "true_sural_reduced": int(bool(truth["patients"][patient_id]["true_sural_reduced"])),
            "exact": int(_exact(truth, score)),
            "time_units": "years since onset",
            "latent_units": "latent logit of the ordered-logistic scores",
        },
    )


def true_contrast(
    truth: Mapping[str, Any],
    cohort: Cohort,
    strategies_courses: Mapping[str, Mapping[str, pd.DataFrame]],
    *,
    years: float = 10.0,
    threshold: float = 4,
    score: str = "incat",
) -> pd.DataFrame:
    """Cohort averages of the true expected score and P(score >= threshold), per strategy.

    The standardised (g-computation) target of a prediction under treatment strategies:
    each of the cohort's patients replayed under each strategy's courses
    (:func:`true_score_distribution`), averaged over all patients and over the
    sural-reduced and sural-preserved patients by the TRUE early-sural status
    (``truth["patients"][id]["true_sural_reduced"]``, defined for every patient).

    Parameters
    ----------
    truth : dict
        The simulated cohort's truth.
    cohort : Cohort
        The cohort whose patients are averaged over (``cohort.patients.index``).
    strategies_courses : dict
        ``{strategy name: {patient_id: courses DataFrame}}``, a courses table (as in
        :func:`true_score_distribution`) for every patient of the cohort.
    years : float
        Time of the contrast (years since onset).
    threshold : float
        Clinical threshold of the score (INCAT >= 4 by default).
    score : {"incat", "onls", "mrs", "irods"}
        The score.

    Returns
    -------
    pandas.DataFrame
        One row per strategy and group (``all``, ``sural_reduced``, ``sural_preserved``):
        ``strategy``, ``group``, ``n_patients``, ``expected`` (mean score) and
        ``p_at_or_above`` (mean P(score >= threshold)); NaN for a group without patients.
        ``attrs["exact"]`` is false for INCAT of a ``hazard``-mode cohort.

    Raises
    ------
    ValueError
        For a strategy that lacks courses for some of the cohort's patients, a patient
        unknown to the truth, or an invalid courses table (named by strategy and patient).
    """
    _check_score(score)
    if not np.isfinite(float(years)):
        raise ValueError(f"years must be finite years since onset, got {years!r}")
    patient_ids = [str(pid) for pid in cohort.patients.index]
    unknown = [pid for pid in patient_ids if pid not in truth["patients"]]
    if unknown:
        raise ValueError(f"patients not in the truth: {', '.join(unknown)}")
    reduced = np.array(
        [bool(truth["patients"][pid]["true_sural_reduced"]) for pid in patient_ids], bool
    )
    members = {"all": np.ones(len(patient_ids), bool), "sural_reduced": reduced}
    members["sural_preserved"] = ~reduced
    categories = score_categories(score)
    visits = pd.DataFrame({"patient_id": patient_ids, "years_since_onset": float(years)})
    rows = []
    for strategy, by_patient in strategies_courses.items():
        missing = [pid for pid in patient_ids if pid not in by_patient]
        if missing:
            raise ValueError(
                f"strategy {strategy!r} has no courses for patients {', '.join(missing)}"
            )
        table = pd.concat(
            [
                _checked_courses(
                    truth, pid, by_patient[pid], where=f"strategy {strategy!r}, patient {pid}"
                )
                for pid in patient_ids
            ],
            ignore_index=True,
        )
        eta = _latent(truth, patient_ids, visits, table)
        p = score_probabilities(eta, score, truth["progression"])
        expected = p @ categories
        at_or_above = p[:, categories >= threshold].sum(axis=1)
        for group in GROUPS:
            chosen = members[group]
            n = int(chosen.sum())
            rows.append(
                {
                    "strategy": strategy,
                    "group": group,
                    "n_patients": n,
                    "expected": float(expected[chosen].mean()) if n else np.nan,
                    "p_at_or_above": float(at_or_above[chosen].mean()) if n else np.nan,
                }
            )
    out = pd.DataFrame(
        rows, columns=["strategy", "group", "n_patients", "expected", "p_at_or_above"]
    )
    out.attrs.update(
        {
            "score": score,
            "years": float(years),
            "threshold": threshold,
            "exact": _exact(truth, score),
        }
    )
    return out


def score_probabilities(eta: np.ndarray, score: str, progression: Mapping[str, Any]) -> np.ndarray:
    """P(score = k) for each latent value (rows) and category (:func:`score_categories`).

    INCAT, ONLS, mRS: :func:`~magbayes.simulate.trajectories.category_probabilities` with
    the score's cutpoints. I-RODS: the simulator draws ``100 * Beta(a, b)`` rounded to 0.1
    (:func:`~magbayes.simulate.trajectories.irods_beta_shapes`), so category ``k`` has the
    Beta mass of ``[k - 0.05, k + 0.05]`` / 100, cut at 0 and 100.
    """
    eta = np.asarray(eta, float)
    if score in ORDINAL_SCORES:
        return category_probabilities(eta, progression["cutpoints"][score])
    a, b = irods_beta_shapes(eta, progression)
    categories = score_categories(score)
    edges = np.append(categories - IRODS_STEP / 2, 100.0 + IRODS_STEP / 2)
    edges = np.clip(edges, 0.0, 100.0) / 100.0
    cdf = stats.beta.cdf(edges[None, :], a[:, None], b[:, None])
    return np.diff(cdf, axis=1)


def _latent(
    truth: Mapping[str, Any], patient_ids: list[str], visits: pd.DataFrame, courses: pd.DataFrame
) -> np.ndarray:
    """True latent disability at ``visits`` (rows of ``patient_ids``) under ``courses``."""
    patients = truth["patients"]
    prog = truth["progression"]
    z = np.array(
        [[patients[pid]["covariates_standardised"][c] for c in COVARIATES] for pid in patient_ids],
        float,
    ).reshape(len(patient_ids), len(COVARIATES))
    _, eta = latent_with_courses(
        visits,
        patient_ids,
        np.array([patients[pid]["level"] for pid in patient_ids], float),
        np.array([patients[pid]["rate"] for pid in patient_ids], float),
        covariate_effect(z, prog["beta_covariate"]),
        courses,
        {pid: bool(patients[pid]["true_sural_reduced"]) for pid in patient_ids},
        prog,
    )
    return eta


def _checked_courses(
    truth: Mapping[str, Any], patient_id: str, courses: pd.DataFrame, *, where: str
) -> pd.DataFrame:
    """``patient_id``, ``treatment``, ``line``, ``start_years`` of valid courses, or ValueError."""
    if patient_id not in truth["patients"]:
        raise ValueError(f"{where}: no such patient in the truth")
    empty = pd.DataFrame(
        {
            "patient_id": pd.Series(dtype=object),
            "treatment": pd.Series(dtype=object),
            "line": pd.Series(dtype=int),
            "start_years": pd.Series(dtype=float),
        }
    )
    if len(courses) == 0:
        return empty
    absent = [c for c in COURSE_COLUMNS if c not in courses.columns]
    if absent:
        raise ValueError(f"{where}: courses lack the columns {', '.join(absent)}")
    if "patient_id" in courses.columns:
        others = sorted({str(p) for p in courses["patient_id"]} - {patient_id})
        if others:
            raise ValueError(f"{where}: courses of other patients ({', '.join(others)})")
    known = set(truth["progression"]["gamma_treatment"]) | {"rituximab"}
    rows = []
    for number, (treatment, line, start) in enumerate(
        zip(courses["treatment"], courses["line"], courses["start_years"], strict=True), start=1
    ):
        if treatment not in known:
            raise ValueError(
                f"{where}, course {number}: unknown treatment {treatment!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        if pd.isna(line) or float(line) != int(line) or int(line) < 1:
            raise ValueError(f"{where}, course {number}: line must be 1, 2, ..., not {line!r}")
        if pd.isna(start) or not np.isfinite(float(start)):
            raise ValueError(f"{where}, course {number}: start_years must be finite, not {start!r}")
        rows.append((patient_id, str(treatment), int(line), float(start)))
    return pd.DataFrame(rows, columns=list(empty.columns))


def _check_score(score: str) -> None:
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, not {score!r}")


def _exact(truth: Mapping[str, Any], score: str) -> bool:
    """Whether the replayed distribution is that of the written score (see module docstring)."""
    return score != "incat" or bool(truth["progression"]["exact_for_incat"])
