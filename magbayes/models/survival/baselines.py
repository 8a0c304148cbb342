"""Baseline hazards of a proportional-hazards model, and the grids of a piecewise one.

A baseline gives ``h0(t)`` and its integral over each segment of split follow-up
(:class:`~magbayes.models.survival.data.CountingProcessData` or
:class:`~magbayes.models.survival.data.VisitIntervalData`: anything with
``segment_start``, ``segment_stop`` and ``segment_piece``). Times are in the unit of the
data (years for magbayes cohorts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

if TYPE_CHECKING:
    from magbayes.models.survival.data import CountingProcessData, VisitIntervalData

    Segments = CountingProcessData | VisitIntervalData


def piece_labels(grid: Sequence[float], unit: str = "y") -> list[str]:
    """Labels ``"0-2 y"``, ``"2-4 y"``, ..., ``"12+ y"`` of a grid ``[0, 2, ..., inf]``."""
    g = list(grid)
    labels = []
    for lo, hi in zip(g[:-1], g[1:], strict=True):
        labels.append(f"{lo:g}+ {unit}" if np.isinf(hi) else f"{lo:g}-{hi:g} {unit}")
    return [lab.strip() for lab in labels]


def make_grid(cuts: Sequence[float] | None) -> np.ndarray:
    """Piece boundaries from interior cut points: ``[0, *cuts, inf]`` (sorted, unique)."""
    values = np.asarray([] if cuts is None else cuts, dtype=float).ravel()
    inner = np.unique(values[(values > 0) & np.isfinite(values)])
    return np.concatenate([[0.0], inner, [np.inf]])


def quantile_grid(times: np.ndarray, n_pieces: int) -> np.ndarray:
    """A grid whose pieces hold about equal numbers of the given event times."""
    times = np.asarray(times, float)
    times = times[np.isfinite(times)]
    qs = np.quantile(times, np.linspace(0, 1, n_pieces + 1)[1:-1])
    return make_grid(qs)


@dataclass
class PiecewiseBaseline:
    """Piecewise-constant baseline hazard: ``h0(t) = exp(log_hazard[k])`` on piece ``k``.

    Attributes
    ----------
    log_hazard : pytensor.tensor.TensorVariable
        Shape (piece,): log events per unit time on each piece of ``data.grid``.
    """

    log_hazard: Any

    def integrated(self, data: Segments) -> pt.TensorVariable:
        """``∫ h0`` over each segment, shape (segment,)."""
        width = data.segment_stop - data.segment_start
        return pt.exp(self.log_hazard)[data.segment_piece] * width

    def log_hazard_at_segment_end(self, data: Segments, segments: Any) -> pt.TensorVariable:
        """``log h0`` at the end of the given segments (indices: an array or a tensor)."""
        return self.log_hazard[pt.as_tensor_variable(data.segment_piece)[segments]]


@dataclass
class WeibullBaseline:
    """Weibull baseline hazard ``h0(t) = (k / λ) (t / λ)^(k-1)``, ``H0(t) = (t / λ)^k``.

    Attributes
    ----------
    shape : pytensor.tensor.TensorVariable
        ``k > 0`` (1: constant hazard; > 1: rising with time).
    log_scale : pytensor.tensor.TensorVariable
        ``log λ``, ``λ`` in the time unit.
    """

    shape: Any
    log_scale: Any

    def _cumulative(self, t: Any) -> pt.TensorVariable:
        t = pt.as_tensor_variable(t)
        positive = pt.gt(t, 0)
        safe = pt.switch(positive, t, 1.0)
        value = pt.exp(self.shape * (pt.log(safe) - self.log_scale))
        return pt.switch(positive, value, 0.0)

    def integrated(self, data: Segments) -> pt.TensorVariable:
        """``H0(stop) - H0(start)`` for each segment, shape (segment,)."""
        return self._cumulative(data.segment_stop) - self._cumulative(data.segment_start)

    def log_hazard_at_segment_end(self, data: Segments, segments: Any) -> pt.TensorVariable:
        """``log h0`` at the end of the given segments (times must be > 0).

        ``data.segment_stop`` may be an array or a tensor (data of the model).
        """
        t = pt.as_tensor_variable(data.segment_stop)[segments]
        return (
            pt.log(self.shape)
            - self.log_scale
            + (self.shape - 1.0) * (pt.log(pt.maximum(t, 1e-300)) - self.log_scale)
        )


def baseline_from_priors(
    kind: str,
    *,
    log_hazard_mean: float,
    log_hazard_sd: float,
    shape_sd: float,
    log_scale_mean: float,
    log_scale_sd: float,
    piece_dim: str = "hazard_piece",
) -> PiecewiseBaseline | WeibullBaseline:
    """Baseline-hazard variables in the current model.

    Parameters
    ----------
    kind : {"piecewise", "weibull"}
        Piecewise: ``baseline_log_hazard ~ Normal(log_hazard_mean, log_hazard_sd)`` per
        piece (dims ``piece_dim``; log events per unit time). Weibull: ``weibull_shape ~
        LogNormal(0, shape_sd)`` and ``weibull_log_scale ~ Normal(log_scale_mean,
        log_scale_sd)`` (log of the scale in the time unit).
    log_hazard_mean, log_hazard_sd, shape_sd, log_scale_mean, log_scale_sd : float
        The priors above (only those of ``kind`` are used).
    piece_dim : str
        Dimension of the piecewise log hazards.

    Raises
    ------
    ValueError
        For another ``kind``.
    """
    if kind == "piecewise":
        log_h = pm.Normal(
            "baseline_log_hazard", mu=log_hazard_mean, sigma=log_hazard_sd, dims=piece_dim
        )
        return PiecewiseBaseline(log_h)
    if kind == "weibull":
        shape = pm.LogNormal("weibull_shape", mu=0.0, sigma=shape_sd)
        log_scale = pm.Normal("weibull_log_scale", mu=log_scale_mean, sigma=log_scale_sd)
        return WeibullBaseline(shape, log_scale)
    raise ValueError(f"baseline hazard kind must be 'piecewise' or 'weibull', not {kind!r}")
