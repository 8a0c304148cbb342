"""The event part of a joint model: a hazard that follows the subject's current value.

For subject ``i`` with latent trajectory ``m_i(t) = level_i + slope_i * t``
(:class:`~magbayes.models.joint.data.JointData`)::

    log h_i(t) = log h0(t) + x_i' beta + alpha * (m_i(t) - c)

with ``h0`` a baseline of the survival core (:class:`~magbayes.models.survival.baselines.
PiecewiseBaseline` or :class:`~magbayes.models.survival.baselines.WeibullBaseline`), ``x_i``
the event covariates (centred), ``alpha`` the association of the current value with the log
hazard, and ``c`` a fixed reference value (so ``h0`` is the hazard of a subject whose
trajectory is at ``c``; it does not change ``alpha``). The cumulative hazard
``H_i(a, b) = integral of h_i from a to b`` is a Gauss-Legendre sum
(:mod:`magbayes.models.joint.quadrature`), and each subject contributes

- right-censored at ``T``: ``log S(T) = -H_i(0, T)``;
- event at ``T``: ``log h_i(T) - H_i(0, T)``;
- event in ``(L, R]``: ``log(S(L) - S(R)) = -H_i(0, L) + log(1 - exp(-H_i(L, R)))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor.tensor as pt

from magbayes.models.joint.data import INTERVAL, OBSERVED, JointData
from magbayes.models.joint.quadrature import DEFAULT_NODES, QuadratureNodes, quadrature_nodes
from magbayes.models.survival.baselines import PiecewiseBaseline, WeibullBaseline

Baseline = PiecewiseBaseline | WeibullBaseline


@dataclass(frozen=True)
class _TimesAsSegments:
    """Times seen by a survival-core baseline as the ends of segments.

    The baselines give ``log h0`` at the end of segments (``segment_stop``, in piece
    ``segment_piece``); a joint model needs it at quadrature nodes and event times, which
    this presents as segments that end there.
    """

    segment_stop: np.ndarray
    segment_piece: np.ndarray


def baseline_log_hazard(
    baseline: Baseline, time: np.ndarray, piece: np.ndarray
) -> pt.TensorVariable:
    """``log h0(t)`` at given times (log events per unit time), same shape as ``time``.

    Parameters
    ----------
    baseline : PiecewiseBaseline or WeibullBaseline
        The survival core's baseline (times must be > 0 for a Weibull one).
    time : numpy.ndarray
        Times (time unit), any shape.
    piece : numpy.ndarray of int
        Piece of the piecewise grid holding each time (ignored by a Weibull baseline).
    """
    time = np.asarray(time, float)
    flat = _TimesAsSegments(time.ravel(), np.asarray(piece, int).ravel())
    value = baseline.log_hazard_at_segment_end(flat, np.arange(time.size))
    return pt.reshape(value, time.shape)


def piece_of(time: np.ndarray, grid: np.ndarray | None) -> np.ndarray:
    """Index of the grid piece ``(g_k, g_{k+1}]`` that holds each time (0 without a grid)."""
    time = np.asarray(time, float)
    if grid is None:
        return np.zeros(time.shape, int)
    g = np.asarray(grid, float)
    return np.clip(np.searchsorted(g, time, side="left") - 1, 0, len(g) - 2)


@dataclass(frozen=True)
class EventQuadrature:
    """Quadrature nodes of every subject's cumulative hazards.

    Attributes
    ----------
    before : QuadratureNodes
        Nodes on ``[0, T_i]`` (event or censoring time), or on ``[0, L_i]`` for an
        interval-censored event in ``(L_i, R_i]``.
    within : QuadratureNodes
        Nodes on ``[L_i, R_i]`` of the interval-censored subjects only.
    within_subject : numpy.ndarray of int
        Subject index of each row of ``within``.
    stop_piece : numpy.ndarray of int
        Grid piece of each subject's stop time (for ``log h0`` there).
    grid : numpy.ndarray or None
        Breaks of a piecewise baseline (None: smooth baseline).
    """

    before: QuadratureNodes
    within: QuadratureNodes
    within_subject: np.ndarray
    stop_piece: np.ndarray
    grid: np.ndarray | None


def event_quadrature(
    data: JointData, grid: np.ndarray | None = None, n_nodes: int = DEFAULT_NODES
) -> EventQuadrature:
    """Nodes of each subject's cumulative hazards (cut at the grid of a piecewise baseline).

    Parameters
    ----------
    data : JointData
        The subjects.
    grid : numpy.ndarray, optional
        Piece boundaries ``[0, ..., inf]`` of a piecewise baseline; None for a smooth one.
    n_nodes : int
        Gauss-Legendre nodes per range (per piece with a grid).
    """
    first_end = data.interval_lower
    before = quadrature_nodes(np.zeros(data.n_subjects), first_end, n_nodes, grid)
    within_subject = np.nonzero(data.event_type == INTERVAL)[0]
    within = quadrature_nodes(data.lower[within_subject], data.stop[within_subject], n_nodes, grid)
    return EventQuadrature(before, within, within_subject, piece_of(data.stop, grid), grid)


def log_hazard(
    baseline: Baseline,
    time: np.ndarray,
    piece: np.ndarray,
    log_relative_hazard: Any,
    alpha: Any,
    level: Any,
    slope: Any,
    reference: float = 0.0,
) -> pt.TensorVariable:
    """``log h_i(t)`` at times of shape (subject, node) or (subject,).

    Parameters
    ----------
    baseline : PiecewiseBaseline or WeibullBaseline
        ``h0``.
    time, piece : numpy.ndarray
        Times (time unit) and their grid pieces, first axis the subject.
    log_relative_hazard : tensor
        Shape (subject,): ``x_i' beta``.
    alpha : tensor
        Association of the current value with the log hazard (per unit of the value).
    level, slope : tensor
        Shape (subject,): the trajectory ``m_i(t) = level_i + slope_i * t``.
    reference : float
        ``c``, subtracted from the current value.
    """
    time = np.asarray(time, float)
    extra = (slice(None),) + (None,) * (time.ndim - 1)
    current = pt.as_tensor_variable(level)[extra] + pt.as_tensor_variable(slope)[extra] * time
    return (
        baseline_log_hazard(baseline, time, piece)
        + pt.as_tensor_variable(log_relative_hazard)[extra]
        + alpha * (current - reference)
    )


def cumulative_hazard(
    nodes: QuadratureNodes,
    baseline: Baseline,
    log_relative_hazard: Any,
    alpha: Any,
    level: Any,
    slope: Any,
    reference: float = 0.0,
) -> pt.TensorVariable:
    """``H_i`` over each subject's range of ``nodes`` (shape (subject,), dimensionless)."""
    log_h = log_hazard(
        baseline, nodes.time, nodes.piece, log_relative_hazard, alpha, level, slope, reference
    )
    return pt.sum(nodes.weight * pt.exp(log_h), axis=-1)


def event_hazard_terms(
    data: JointData,
    quadrature: EventQuadrature,
    baseline: Baseline,
    log_relative_hazard: Any,
    alpha: Any,
    level: Any,
    slope: Any,
    reference: float = 0.0,
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    """The three per-subject terms of :func:`event_log_likelihood`.

    Returns
    -------
    before : tensor
        ``H_i(0, T_i)``, or ``H_i(0, L_i)`` for an interval-censored event.
    within : tensor
        ``H_i(L_i, R_i)`` for an interval-censored event, 0 for the others.
    log_h_stop : tensor
        ``log h_i(T_i)`` at each subject's stop time.
    """
    args = (alpha, level, slope, reference)
    before = cumulative_hazard(quadrature.before, baseline, log_relative_hazard, *args)
    within = pt.zeros(data.n_subjects)
    rows = quadrature.within_subject
    if len(rows):
        eta = pt.as_tensor_variable(log_relative_hazard)[rows]
        part = cumulative_hazard(
            quadrature.within,
            baseline,
            eta,
            alpha,
            pt.as_tensor_variable(level)[rows],
            pt.as_tensor_variable(slope)[rows],
            reference,
        )
        within = pt.set_subtensor(within[rows], part)
    log_h_stop = log_hazard(baseline, data.stop, quadrature.stop_piece, log_relative_hazard, *args)
    return before, within, log_h_stop


def event_log_likelihood(
    event: Any, event_type: np.ndarray, before: Any, within: Any, log_h_stop: Any
) -> pt.TensorVariable:
    """Per-subject log-likelihood of the event outcome (shape (subject,)).

    Parameters
    ----------
    event : tensor or numpy.ndarray of int
        Per subject: 1 event, 0 censored (the observed value).
    event_type : tensor or numpy.ndarray of int
        Per subject: ``RIGHT``, ``OBSERVED`` or ``INTERVAL``
        (:mod:`magbayes.models.joint.data`): how an event of that subject is known.
    before, within, log_h_stop : tensor
        From :func:`event_hazard_terms`.

    Notes
    -----
    Censored: ``-H(0, T)``; exact: ``log h(T) - H(0, T)``; interval: ``-H(0, L) +
    log1mexp(-H(L, R))``, with a harmless placeholder for the others so that no ``-inf``
    reaches the gradient.
    """
    event = pt.as_tensor_variable(event)
    event_type = pt.as_tensor_variable(event_type)
    interval = pt.eq(event_type, INTERVAL)
    exact = pt.eq(event_type, OBSERVED)
    within_safe = pt.where(interval, within, 1.0)
    seen = pt.where(interval, pt.log1mexp(-within_safe), pt.where(exact, log_h_stop, 0.0))
    return pt.switch(pt.eq(event, 1), seen - before, -before)
