r"""The event part of the joint model on a cohort: each patient's time at risk, as arrays.

A patient is at risk of the event (death, or death or loss to follow-up) from their first
visit with the score (they had to be alive to be seen: delayed entry) to their end of
follow-up (``end_years`` of patients.csv). Their outcome is one of

- ``CENSORED``: follow-up ended for another reason (``-H(entry, end)``);
- ``EVENT``: the event at ``end`` (``log h(end) - H(entry, end)``);
- ``EVENT_IN_INTERVAL``: the event in ``(end_lower, end]``
  (``-H(entry, lower) + log(1 - exp(-H(lower, end)))``).

The cumulative hazard :math:`H` is integrated by Gauss-Legendre quadrature on each segment
of the time at risk between the patient's treatment starts (where the latent disability's
slope changes), the baseline's piece boundaries and ``end_lower``: on each segment the
integrand is smooth, and the rule with :data:`DEFAULT_NODES` nodes integrates it to better
than 1e-8 relative on stretches of several years (``tests/test_joint.py`` compares it with
scipy's adaptive quadrature).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.models.joint.quadrature import gauss_legendre

#: Outcome codes of ``end_of_follow_up`` (per patient).
CENSORED, EVENT, EVENT_IN_INTERVAL = 0, 1, 2

#: What ends follow-up with the event, by ``[event] kind``.
EVENT_REASONS: dict[str, tuple[str, ...]] = {
    "death": ("death",),
    "death_or_dropout": ("death", "lost_to_follow_up"),
}

#: Gauss-Legendre nodes per segment of the time at risk.
DEFAULT_NODES = 7


@dataclass(frozen=True)
class EventArrays:
    """Time at risk and outcome of each patient, and the quadrature nodes over it.

    Attributes
    ----------
    entry, end, lower : numpy.ndarray
        Per patient (years since onset): start of the time at risk, end of follow-up, and
        the earlier bound of an event known only to lie in ``(lower, end]`` (NaN otherwise).
    outcome : numpy.ndarray of int
        Per patient: :data:`CENSORED`, :data:`EVENT` or :data:`EVENT_IN_INTERVAL`.
    node_patient, node_years, node_weight : numpy.ndarray
        Per quadrature node: patient index, time (years since onset) and weight (years).
    node_after_lower : numpy.ndarray of bool
        Per node: in ``(lower, end]`` of an interval-censored event.
    """

    entry: np.ndarray
    end: np.ndarray
    lower: np.ndarray
    outcome: np.ndarray
    node_patient: np.ndarray
    node_years: np.ndarray
    node_weight: np.ndarray
    node_after_lower: np.ndarray


def event_arrays(
    cohort: Cohort,
    patient_ids: list[str],
    entry: np.ndarray,
    *,
    kind: str = "death",
    breaks: np.ndarray | None = None,
    n_nodes: int = DEFAULT_NODES,
) -> EventArrays:
    """The event part's arrays for the patients of a design.

    Parameters
    ----------
    cohort : Cohort
        With end of follow-up (``cohort.has_end_of_follow_up``).
    patient_ids : list of str
        The design's patients, in its order.
    entry : numpy.ndarray
        Start of each patient's time at risk (years since onset).
    kind : {"death", "death_or_dropout"}
        Which ends of follow-up are events (:data:`EVENT_REASONS`).
    breaks : numpy.ndarray or None
        Times where the baseline hazard changes form (a piecewise baseline's boundaries).
    n_nodes : int
        Gauss-Legendre nodes per segment.

    Raises
    ------
    magbayes.errors.SpecError
        When the cohort has no end of follow-up, a patient of the design has none, or
        ``kind`` is unknown.
    """
    if kind not in EVENT_REASONS:
        raise SpecError(f"[event] kind must be one of {', '.join(EVENT_REASONS)}, not {kind!r}")
    if not cohort.has_end_of_follow_up:
        raise SpecError(
            "the joint model needs each patient's end of follow-up: end_years (or end_date) "
            "and end_reason in patients.csv (docs/cohort-format.md)"
        )
    follow = cohort.follow_up.reindex(patient_ids)
    missing = follow.index[follow["end_years"].isna()]
    if len(missing):
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise SpecError(
            f"patients.csv: {len(missing)} patient(s) without an end of follow-up "
            f"(end_years or end_date, end_reason): {shown}; the joint model needs every "
            "patient's"
        )
    end = follow["end_years"].to_numpy(float)
    entry = np.minimum(np.asarray(entry, float), end)
    reason = follow["end_reason"].astype(str).to_numpy()
    is_event = np.isin(reason, EVENT_REASONS[kind])
    lower = np.where(is_event, follow["end_lower_years"].to_numpy(float), np.nan)
    lower = np.where(np.isfinite(lower) & (lower > entry) & (lower < end), lower, np.nan)
    outcome = np.where(is_event, np.where(np.isfinite(lower), EVENT_IN_INTERVAL, EVENT), CENSORED)

    starts = course_starts(cohort.treatments, patient_ids)
    return arrays_from_times(entry, end, lower, outcome, starts, breaks=breaks, n_nodes=n_nodes)


def arrays_from_times(
    entry: np.ndarray,
    end: np.ndarray,
    lower: np.ndarray,
    outcome: np.ndarray,
    starts: dict[int, np.ndarray],
    *,
    breaks: np.ndarray | None = None,
    n_nodes: int = DEFAULT_NODES,
) -> EventArrays:
    """The event part's arrays from each patient's times.

    :func:`event_arrays` reads the times from a cohort; SBC gives drawn event times.

    Parameters
    ----------
    entry, end, lower : numpy.ndarray
        Per patient (years since onset): start of the time at risk, end of follow-up, and
        the earlier bound of an event in ``(lower, end]`` (NaN otherwise).
    outcome : numpy.ndarray of int
        Per patient: :data:`CENSORED`, :data:`EVENT` or :data:`EVENT_IN_INTERVAL`.
    starts : dict
        Patient index -> their treatment courses' starts (years since onset).
    breaks, n_nodes
        As for :func:`event_arrays`.
    """
    node_patient, node_years, node_weight, node_after = [], [], [], []
    for i in range(len(entry)):
        cuts = np.concatenate([starts.get(i, []), [lower[i]]])
        edges, years, weight = stretch_nodes(entry[i], end[i], cuts, breaks, n_nodes)
        node_years.append(years.ravel())
        node_weight.append(weight.ravel())
        node_patient.append(np.full(years.size, i))
        after = np.isfinite(lower[i]) & (edges[:-1] >= lower[i])
        node_after.append(np.repeat(after, n_nodes))
    if node_years:
        node_years_all = np.concatenate(node_years)
        node_weight_all = np.concatenate(node_weight)
        node_patient_all = np.concatenate(node_patient).astype(int)
        node_after_all = np.concatenate(node_after)
    else:
        node_years_all = node_weight_all = np.zeros(0)
        node_patient_all = np.zeros(0, int)
        node_after_all = np.zeros(0, bool)
    return EventArrays(
        entry=np.asarray(entry, float),
        end=np.asarray(end, float),
        lower=np.asarray(lower, float),
        outcome=np.asarray(outcome).astype(int),
        node_patient=node_patient_all,
        node_years=node_years_all,
        node_weight=node_weight_all,
        node_after_lower=node_after_all,
    )


def stretch_nodes(
    start: float,
    stop: float,
    cuts: np.ndarray,
    breaks: np.ndarray | None = None,
    n_nodes: int = DEFAULT_NODES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes on ``[start, stop]`` cut into stretches where the hazard bends.

    The fit (:func:`event_arrays`) and the predictions
    (:mod:`magbayes.models.joint.predictions`) place their nodes here, so that both
    integrate the same hazard the same way.

    Parameters
    ----------
    start, stop : float
        The range (years since onset), ``start <= stop``.
    cuts : numpy.ndarray
        Where the integrand changes form: treatment starts, the lower bound of an
        interval-censored event, prediction times (years since onset); those outside
        ``(start, stop)`` and non-finite ones are ignored.
    breaks : numpy.ndarray or None
        A piecewise baseline's boundaries (cut there too).
    n_nodes : int
        Nodes per stretch.

    Returns
    -------
    edges : numpy.ndarray
        ``(stretch + 1,)``: the stretches' bounds, increasing, ``start`` first and ``stop``
        last (``[start]`` alone, with no stretch, when ``start == stop``).
    years, weight : numpy.ndarray
        ``(stretch, node)``: node times (years since onset) and weights (years).
    """
    extra = np.asarray([] if breaks is None else breaks, float)
    cuts = np.concatenate([np.asarray(cuts, float).ravel(), extra])
    cuts = cuts[np.isfinite(cuts) & (cuts > start) & (cuts < stop)]
    edges = np.unique(np.concatenate([[start], cuts, [stop]]))
    x, w = gauss_legendre(n_nodes)
    a, b = edges[:-1, None], edges[1:, None]
    half = 0.5 * (b - a)
    return edges, a + half * (x + 1.0), half * w


def course_starts(treatments: pd.DataFrame, patient_ids: list[str]) -> dict[int, np.ndarray]:
    """Start of each patient's treatment courses (years since onset), by patient index."""
    pos = {pid: i for i, pid in enumerate(patient_ids)}
    courses = treatments[treatments["patient_id"].isin(pos)]
    return {
        pos[pid]: g["start_years"].to_numpy(float)
        for pid, g in courses.groupby("patient_id", sort=False)
    }


def entry_years(cohort: Cohort, patient_ids: list[str], score: str) -> np.ndarray:
    """Each patient's first visit with the score (years since onset; first visit without).

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    patient_ids : list of str
        Patients in the design's order.
    score : str
        The modelled score's column.
    """
    visits = cohort.visits
    scored = visits[visits[score].notna()].groupby("patient_id")["years_since_onset"].min()
    first = visits.groupby("patient_id")["years_since_onset"].min()
    out = scored.reindex(patient_ids).fillna(first.reindex(patient_ids))
    return out.fillna(0.0).to_numpy(float)
