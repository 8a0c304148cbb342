"""The likelihood of visit-interval outcomes: the one likelihood of the survival models.

The observed value of a subject is the index of the visit interval in which the event
happened, ``(t_{v-1}, t_v]``, or 0 when none was seen by the last visit (see
:class:`~magbayes.models.survival.data.VisitIntervalData`). With ``eta`` the log relative
hazard on each segment and a baseline
(:mod:`magbayes.models.survival.baselines`):

1. :func:`interval_hazards` gives the integrated hazard of each visit interval, padded
   (subject, interval), and :func:`visit_log_hazard` the hazard at each visit;
2. :func:`visit_interval_log_likelihood` is the per-subject log-likelihood of an observed
   index (interval- or right-censored, or dated exactly at the visit), and
   :func:`draw_visit_interval` draws the index from the same hazards;
3. :func:`subject_log_likelihood` is the same for a counting-process table (exact,
   right- and interval-censored times, left truncation, time-varying covariates), through
   :func:`~magbayes.models.survival.data.visit_intervals_of`.

The worsening model and the generic model (:mod:`magbayes.models.survival.model`) both
build their likelihood from these functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt

from magbayes.models.survival.baselines import PiecewiseBaseline, WeibullBaseline
from magbayes.models.survival.data import (
    OBSERVED,
    RIGHT,
    CountingProcessData,
    VisitIntervalData,
    visit_intervals_of,
)


def interval_hazards(
    data: VisitIntervalData,
    eta: Any,
    baseline: PiecewiseBaseline | WeibullBaseline,
    *,
    integrated_baseline: Any | None = None,
) -> pt.TensorVariable:
    """Integrated hazard of each visit interval, padded: ``D[i, k] = H_i(t_k, t_{k+1})``.

    Parameters
    ----------
    data : VisitIntervalData
        From :func:`visit_interval_arrays`.
    eta : pytensor.tensor.TensorVariable or numpy.ndarray
        Shape (segment,): log relative hazard on each segment.
    baseline : PiecewiseBaseline or WeibullBaseline
        The baseline hazard.
    integrated_baseline : pytensor.tensor.TensorVariable, optional
        ``baseline.integrated(data)`` when already computed.

    Returns
    -------
    pytensor.tensor.TensorVariable
        Shape (subject, max_intervals): expected number of events (dimensionless) in
        each interval, 0 after a subject's last interval, so the cumulative hazard at
        each visit is a cumulative sum along the last axis.
    """
    h0 = baseline.integrated(data) if integrated_baseline is None else integrated_baseline
    contribution = h0 * pt.exp(pt.as_tensor_variable(eta))
    # sizes from the arrays, so that data held as model inputs (``as_data``) work alike
    n_subjects, width = pt.as_tensor_variable(data.interval_end_segment).shape
    # one flat scatter-add (cheaper than a two-index one, and so is its gradient)
    cell = data.segment_subject * width + data.segment_interval
    flat = pt.inc_subtensor(pt.zeros(n_subjects * width)[cell], contribution)
    return flat.reshape((n_subjects, width))


def visit_log_hazard(
    data: VisitIntervalData, eta: Any, baseline: PiecewiseBaseline | WeibullBaseline
) -> pt.TensorVariable:
    """Log hazard at each interval's closing visit, ``log h_i(t_k)``, padded with 0.

    ``log h0`` at the visit (left limit: the piece that ends there) plus ``eta`` of the
    segment that ends at the visit. Shape (subject, max_intervals), log events per unit
    time. Used only to date an event exactly at the visit that detected it.
    """
    eta = pt.as_tensor_variable(eta)
    pointer = pt.as_tensor_variable(data.interval_end_segment)
    closes = pt.ge(pointer, 0)
    segments = pt.switch(closes, pointer, 0)  # padding reads segment 0, then is set to 0
    log_h = baseline.log_hazard_at_segment_end(data, segments) + eta[segments]
    return pt.switch(closes, log_h, 0.0)


def visit_interval_log_likelihood(
    value: Any,
    interval_hazard: Any,
    visit_log_hazard: Any | None = None,
    *,
    exact: np.ndarray | None = None,
) -> pt.TensorVariable:
    """Per-subject log-likelihood of the visit interval in which the event was seen.

    With ``D[i, k]`` the integrated hazard of interval ``k`` (:func:`interval_hazards`,
    0-based columns) and ``v`` the observed value:

    - ``v = 0`` (no event by the last visit ``t_J``): ``log S(t_J) = -sum_k D[i, k]``;
    - ``v >= 1`` (event in ``(t_{v-1}, t_v]``): ``log(S(t_{v-1}) - S(t_v)) =
      -sum_{k<v} D[i, k] + log1mexp(-D[i, v])`` (1-based ``k``, ``v``);
    - with ``visit_log_hazard`` (event dated exactly at the visit ``t_v``: an exact event
      time, or the detecting visit of a worsening, a biased shortcut kept to show its
      bias): ``log h(t_v) - sum_{k<=v} D[i, k]``.

    A value beyond a subject's last interval has probability 0 (log-likelihood -inf).

    Parameters
    ----------
    value : pytensor.tensor.TensorVariable or numpy.ndarray of int
        Shape (subject,): 0, or the 1-based interval of the event.
    interval_hazard : pytensor.tensor.TensorVariable
        Shape (subject, max_intervals).
    visit_log_hazard : pytensor.tensor.TensorVariable, optional
        Shape (subject, max_intervals), from :func:`visit_log_hazard`.
    exact : numpy.ndarray of bool, optional
        With ``visit_log_hazard``: per subject, whether an event is dated exactly at its
        visit (the others are interval-censored). Default: every subject's.

    Returns
    -------
    pytensor.tensor.TensorVariable
        Shape (subject,).
    """
    hazard = pt.as_tensor_variable(interval_hazard)
    value = pt.as_tensor_variable(value)
    total = pt.sum(hazard, axis=-1)
    seen = value > 0
    column = (pt.maximum(value, 1) - 1)[..., None]
    interval = pt.arange(hazard.shape[-1])
    # H(t_{v-1}), the cumulative hazard up to the visit that opens interval v, and D[v]
    before_v = pt.sum(pt.where(interval < column, hazard, 0.0), axis=-1)
    within_v = pt.sum(pt.where(pt.eq(interval, column), hazard, 0.0), axis=-1)
    # censored subjects get a harmless placeholder, so no inf or nan reaches the gradient
    in_interval = -before_v + pt.log1mexp(-pt.switch(seen, within_v, 1.0))
    if visit_log_hazard is None:
        return pt.switch(seen, in_interval, -total)
    log_h = pt.sum(pt.where(pt.eq(interval, column), visit_log_hazard, 0.0), axis=-1)
    # padding (a value beyond the last interval) has no hazard: impossible there too
    at_visit = pt.switch(within_v > 0, log_h - before_v - within_v, -np.inf)
    if exact is not None:
        at_visit = pt.where(np.asarray(exact, bool), at_visit, in_interval)
    return pt.switch(seen, at_visit, -total)


def draw_visit_interval(interval_hazard: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw the visit interval of the event from interval hazards (0: none by the last visit).

    Per subject, ``E ~ Exponential(1)`` and the value is the first (1-based) interval
    ``k`` whose cumulative hazard ``sum_{j<=k} D[i, j]`` reaches ``E``, else 0: the
    distribution whose log-probability is :func:`visit_interval_log_likelihood` (without
    ``visit_log_hazard``).

    Parameters
    ----------
    interval_hazard : numpy.ndarray
        Shape (..., subject, max_intervals), from :func:`interval_hazards` (padding 0).
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray of int64
        Shape (..., subject).
    """
    hazard = np.asarray(interval_hazard, float)
    threshold = rng.exponential(size=hazard.shape[:-1])
    reached = np.cumsum(hazard, axis=-1) >= threshold[..., None]
    first = np.argmax(reached, axis=-1) + 1
    return np.where(reached.any(axis=-1), first, 0).astype("int64")


def exact_event_mask(data: CountingProcessData) -> np.ndarray | None:
    """The ``exact`` argument of :func:`visit_interval_log_likelihood` for a table.

    Per subject, whether its event was observed at an exact time (the others are
    interval-censored); None when every subject with an event has an exact time (the
    function's default).
    """
    exact = data.event_type == OBSERVED
    return None if exact[data.event_type != RIGHT].all() else exact


def subject_log_likelihood(
    data: CountingProcessData, eta: Any, baseline: PiecewiseBaseline | WeibullBaseline
) -> pt.TensorVariable:
    """Per-subject log-likelihood of a proportional-hazards model of a counting-process table.

    The hazard of subject ``i`` on segment ``j`` is ``h0(t) * exp(eta[j])``. With
    ``H(a, b)`` its integral from ``a`` to ``b`` and ``e`` the subject's entry (later entry
    is left truncation):

    - observed at ``T``: ``log h0(T) + eta[j_T] - H(e, T)``;
    - right-censored at ``C``: ``-H(e, C)``;
    - interval-censored in ``(L, R]``: ``log(S(L) - S(R)) = -H(e, L) + log1mexp(-H(L, R))``
      (stable when ``H(L, R)`` is small or large).

    Computed as the visit-interval likelihood of :func:`visit_intervals_of`'s outcome
    (:func:`interval_hazards`, :func:`visit_log_hazard`, :func:`visit_interval_log_likelihood`).

    Parameters
    ----------
    data : CountingProcessData
        From :func:`~magbayes.models.survival.data.counting_process_arrays`.
    eta : pytensor.tensor.TensorVariable or numpy.ndarray
        Shape (segment,): log relative hazard on each segment of ``data`` (covariates,
        frailty).
    baseline : PiecewiseBaseline or WeibullBaseline
        The baseline hazard.

    Returns
    -------
    pytensor.tensor.TensorVariable
        Shape (subject,).
    """
    intervals, value, segment_of = visit_intervals_of(data)
    eta = pt.as_tensor_variable(eta)[segment_of]
    hazard = interval_hazards(intervals, eta, baseline)
    if not (data.event_type == OBSERVED).any():
        return visit_interval_log_likelihood(value, hazard)
    log_h = visit_log_hazard(intervals, eta, baseline)
    return visit_interval_log_likelihood(value, hazard, log_h, exact=exact_event_mask(data))
