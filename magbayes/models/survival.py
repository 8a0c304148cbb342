"""A generic Bayesian proportional-hazards core for counting-process data.

Nothing here knows about magbayes cohorts: the input is any *counting-process* table,
one row per stretch of follow-up of one subject with constant covariates (the layout of
lifelines' ``CoxTimeVaryingFitter`` and R's ``Surv(start, stop, event)``), and each
subject's outcome is one of

``observed``
    the event was seen at an exact time (the last row's ``stop``);
``right``
    no event up to the last row's ``stop`` (right-censored);
``interval``
    the event happened in ``(lower, upper]`` but its exact time is unknown (it is only
    seen at visits: ``lower`` is the last visit without it, ``upper`` the first with it).

The pieces are usable alone:

1. :func:`counting_process_arrays` splits the rows at the baseline-hazard grid and at each
   interval-censored subject's ``lower`` bound and returns plain arrays
   (:class:`CountingProcessData`).
2. :class:`PiecewiseBaseline` and :class:`WeibullBaseline` give the baseline hazard
   ``h0(t)`` and its integral over each segment.
3. :func:`subject_log_likelihood` returns the per-subject log-likelihood as a pytensor
   expression, given a linear predictor per segment:

   - observed at ``T``: ``log h(T) - H(T)``
   - right-censored at ``C``: ``-H(C)``
   - interval-censored in ``(L, R]``: ``log(S(L) - S(R)) = -H(L) + log1mexp(-(H(R) - H(L)))``

   where ``H`` is the cumulative hazard accumulated *from the subject's entry* (the first
   row's ``start``; later entry is left truncation and is handled by starting the integral
   there) over the subject's rows, so covariates may change at any row boundary.
4. :func:`survival_observation` attaches that log-likelihood to the model as an observed
   ``pm.CustomDist`` with one value per subject, so ``pm.compute_log_likelihood`` (and
   ``idata_kwargs={"log_likelihood": True}``) give a pointwise ``log_likelihood`` group for
   PSIS-LOO.
5. :func:`build_counting_process_model` and :func:`fit_counting_process` put these
   together for a plain proportional-hazards model with an optional cluster frailty.

An event that is only seen at scheduled visits can instead be recorded as the *index* of
the visit interval that holds it (0: none by the last visit), with the visit times as
design. Then the outcome is a value the likelihood reads, and the model can draw it:

6. :func:`visit_interval_arrays` splits follow-up rows at the visits, the row boundaries
   and the grid (:class:`VisitIntervalData`);
7. :func:`interval_hazards` gives the integrated hazard of each visit interval, padded
   (subject, interval), and :func:`visit_log_hazard` the hazard at each visit;
8. :func:`visit_interval_log_likelihood` is the per-subject log-likelihood of an observed
   index (interval- or right-censored, or dated exactly at the visit), and
   :func:`draw_visit_interval` draws the index from the same hazards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from magbayes.models.blocks import site_effect
from magbayes.sampler import sample_posterior

#: Codes of the three kinds of outcome (the observed value of the likelihood node).
RIGHT, OBSERVED, INTERVAL = 0, 1, 2
EVENT_TYPES: dict[str, int] = {"right": RIGHT, "observed": OBSERVED, "interval": INTERVAL}


class CountingProcessError(ValueError):
    """A counting-process table is inconsistent; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in counting-process data:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


# --------------------------------------------------------------------------- arrays


def _subset_positions(
    subjects: np.ndarray, n_subjects: int, segment_subject: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices that take a subset of subjects out of segment-level data.

    Parameters
    ----------
    subjects : numpy.ndarray
        Boolean mask over subjects, or subject indices.
    n_subjects : int
        Number of subjects of the whole data.
    segment_subject : numpy.ndarray of int
        Subject of each segment of the whole data.

    Returns
    -------
    index : numpy.ndarray of int
        The kept subjects, increasing.
    new_of_old : numpy.ndarray of int
        New index of each old subject (-1 when left out).
    segments : numpy.ndarray of int
        Old index of each kept segment.
    position : numpy.ndarray of int
        New index of each old segment (-1 when left out).
    """
    index = np.asarray(subjects)
    if index.dtype == bool:
        index = np.nonzero(index)[0]
    index = np.unique(index)
    new_of_old = np.full(n_subjects, -1)
    new_of_old[index] = np.arange(len(index))
    segments = np.nonzero(new_of_old[segment_subject] >= 0)[0]
    position = np.full(len(segment_subject), -1)
    position[segments] = np.arange(len(segments))
    return index, new_of_old, segments, position


@dataclass
class CountingProcessData:
    """Counting-process data split into segments, as plain arrays.

    Times are in the unit of the input table (years for magbayes cohorts). A *segment*
    is a stretch of one subject's follow-up within one baseline-hazard piece, with
    constant covariates, and lying entirely before or entirely after the subject's
    ``lower`` bound when interval-censored.

    Attributes
    ----------
    subject_ids : list
        Subject labels, in the order of the per-subject arrays.
    covariate_names : list of str
        Columns of ``segment_covariates``.
    event_type : numpy.ndarray of int
        Per subject: 0 right-censored, 1 observed exactly, 2 interval-censored.
    entry : numpy.ndarray
        Per subject: start of follow-up (time unit).
    lower, upper : numpy.ndarray
        Per subject: censoring/event times. Observed: both the event time. Right: both
        the censoring time. Interval: the bounds ``(lower, upper]``.
    segment_subject : numpy.ndarray of int
        Subject index of each segment.
    segment_start, segment_stop : numpy.ndarray
        Segment bounds (time unit), ``start < stop``.
    segment_piece : numpy.ndarray of int
        Baseline-hazard piece of each segment (0 when there is no grid).
    segment_after_lower : numpy.ndarray of bool
        True for segments of an interval-censored subject that lie in ``(lower, upper]``
        (they make up ``H(R) - H(L)``); False for all others (they make up ``H(L)``,
        ``H(T)`` or ``H(C)``).
    segment_covariates : numpy.ndarray
        Shape (segment, covariate).
    event_segment : numpy.ndarray of int
        Per subject: the segment ending at the exact event time (observed subjects),
        else -1.
    grid : numpy.ndarray
        Piece boundaries ``[g0=0, g1, ..., inf]`` (time unit).
    piece_labels : list of str
        One label per baseline-hazard piece (``"0-2 y"``, ..., ``"12+ y"``).
    cluster_index : numpy.ndarray of int or None
        Per subject: index into ``cluster_names`` (None when no cluster column).
    cluster_names : list or None
        Cluster labels (sorted).
    counts : dict
        Subjects by outcome, segments, rows dropped and why.
    """

    subject_ids: list
    covariate_names: list[str]
    event_type: np.ndarray
    entry: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    segment_subject: np.ndarray
    segment_start: np.ndarray
    segment_stop: np.ndarray
    segment_piece: np.ndarray
    segment_after_lower: np.ndarray
    segment_covariates: np.ndarray
    event_segment: np.ndarray
    grid: np.ndarray
    piece_labels: list[str]
    cluster_index: np.ndarray | None = None
    cluster_names: list | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return len(self.subject_ids)

    @property
    def n_segments(self) -> int:
        """Number of segments."""
        return len(self.segment_subject)

    def event_time_midpoints(self) -> np.ndarray:
        """Per subject: exact event time, interval midpoint, or NaN when censored."""
        out = np.full(self.n_subjects, np.nan)
        out[self.event_type == OBSERVED] = self.lower[self.event_type == OBSERVED]
        iv = self.event_type == INTERVAL
        out[iv] = 0.5 * (self.lower[iv] + self.upper[iv])
        return out

    def crude_rate(self) -> float:
        """Events per unit of follow-up time (interval events counted once)."""
        n_events = int(np.sum(self.event_type != RIGHT))
        exposure = float(np.sum(self.segment_stop - self.segment_start))
        return max(n_events, 0.5) / max(exposure, 1e-12)

    def subset(self, subjects: np.ndarray) -> tuple[CountingProcessData, np.ndarray]:
        """The data of some subjects only.

        Parameters
        ----------
        subjects : numpy.ndarray
            Boolean mask over subjects, or subject indices (kept in increasing order).

        Returns
        -------
        data : CountingProcessData
            Those subjects, re-indexed from 0 in their original order.
        segments : numpy.ndarray of int
            Index, in this data, of each segment of the subset (to select a linear
            predictor computed on the whole data).
        """
        index, new_of_old, segments, position = _subset_positions(
            subjects, self.n_subjects, self.segment_subject
        )
        old_event = self.event_segment[index]
        event_segment = np.where(old_event >= 0, position[np.maximum(old_event, 0)], -1)
        sub = CountingProcessData(
            subject_ids=[self.subject_ids[i] for i in index],
            covariate_names=list(self.covariate_names),
            event_type=self.event_type[index],
            entry=self.entry[index],
            lower=self.lower[index],
            upper=self.upper[index],
            segment_subject=new_of_old[self.segment_subject[segments]],
            segment_start=self.segment_start[segments],
            segment_stop=self.segment_stop[segments],
            segment_piece=self.segment_piece[segments],
            segment_after_lower=self.segment_after_lower[segments],
            segment_covariates=self.segment_covariates[segments],
            event_segment=event_segment,
            grid=self.grid,
            piece_labels=list(self.piece_labels),
            cluster_index=None if self.cluster_index is None else self.cluster_index[index],
            cluster_names=self.cluster_names,
            counts={"subjects": len(index), "segments": len(segments)},
        )
        return sub, segments


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


def split_at(
    start: np.ndarray, stop: np.ndarray, cuts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split stretches ``(start, stop]`` at the cut points that fall inside them.

    Parameters
    ----------
    start, stop : numpy.ndarray
        Shape (row,): bounds of each stretch (time unit), ``start <= stop``.
    cuts : numpy.ndarray
        Shape (row, m): candidate cut points of each row, in any order; NaN, infinite
        values and points not strictly inside ``(start, stop)`` are ignored.

    Returns
    -------
    seg_start, seg_stop : numpy.ndarray
        Bounds of the pieces of positive length, row by row and in time order.
    seg_row : numpy.ndarray of int
        Row of each piece.
    """
    start = np.asarray(start, float)
    stop = np.asarray(stop, float)
    cuts = np.asarray(cuts, float)
    if cuts.ndim == 1:
        cuts = cuts[:, None]
    with np.errstate(invalid="ignore"):
        inside = (cuts > start[:, None]) & (cuts < stop[:, None])
    cuts = np.where(inside, cuts, np.inf)
    cuts.sort(axis=1)
    cuts = np.where(np.isinf(cuts), stop[:, None], cuts)
    points = np.column_stack([start, cuts, stop])
    seg_start = points[:, :-1].ravel()
    seg_stop = points[:, 1:].ravel()
    seg_row = np.repeat(np.arange(len(start)), points.shape[1] - 1)
    positive = seg_stop > seg_start
    return seg_start[positive], seg_stop[positive], seg_row[positive]


def counting_process_arrays(
    frame: pd.DataFrame,
    *,
    id_col: str = "id",
    start_col: str = "start",
    stop_col: str = "stop",
    event_col: str | None = "event",
    event_type_col: str | None = None,
    lower_col: str = "lower",
    upper_col: str = "upper",
    covariates: Sequence[str] = (),
    cluster_col: str | None = None,
    grid: Sequence[float] | np.ndarray | None = None,
    time_unit: str = "y",
) -> CountingProcessData:
    """Split a counting-process table into segments and per-subject arrays.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per stretch of follow-up ``(start, stop]`` of one subject with constant
        covariates. Rows of a subject must not overlap; gaps are allowed (the subject is
        not at risk there). Rows with ``start == stop`` carry no follow-up and are
        dropped (counted in ``counts``) unless they carry an event, which is an error.
    id_col, start_col, stop_col : str
        Subject identifier and row bounds (any time unit, ``start >= 0``).
    event_col : str or None
        lifelines convention, used when ``event_type_col`` is None: 1 on a subject's last
        row when the event was seen at that row's ``stop``, 0 otherwise.
    event_type_col : str, optional
        Per-subject outcome ``"observed"``, ``"right"`` or ``"interval"`` (constant
        within a subject). Interval uses ``lower_col`` and ``upper_col``; an infinite or
        missing ``upper`` means right-censored at ``lower``. Observed and right take
        their time from ``upper_col`` when that column exists and is finite, else from
        the last row's ``stop``. Rows beyond a subject's time are cut off there (so one
        table of follow-up rows serves several outcome definitions).
    lower_col, upper_col : str
        Interval bounds ``(lower, upper]``; ``upper`` is also the event or censoring time
        of observed and right-censored subjects (event-type mode only).
    covariates : sequence of str
        Numeric columns (no missing values) that enter the linear predictor.
    cluster_col : str, optional
        Cluster of each subject (site, centre) for a frailty; constant within a subject.
    grid : sequence of float, optional
        Baseline-hazard piece boundaries ``[0, ..., inf]`` (or interior cut points); rows
        are split there. None: a single piece.
    time_unit : str
        Unit written in the piece labels.

    Returns
    -------
    CountingProcessData

    Raises
    ------
    CountingProcessError
        Listing every inconsistency found (overlapping rows, an event not on the last
        row, interval bounds outside follow-up, missing covariate values, ...).
    """
    problems: list[str] = []
    covariates = list(covariates)
    needed = [id_col, start_col, stop_col, *covariates]
    if event_type_col is None:
        if event_col is None:
            problems.append("give event_col (0/1 per row) or event_type_col (per subject)")
        else:
            needed.append(event_col)
    else:
        needed.append(event_type_col)
    if cluster_col is not None:
        needed.append(cluster_col)
    missing_cols = [c for c in needed if c not in frame.columns]
    if missing_cols:
        problems.append(f"missing column(s): {', '.join(missing_cols)}")
        raise CountingProcessError(problems)

    df = frame.copy()
    df["_row"] = np.arange(len(df))
    # subjects keep the order of their first row; rows are sorted by time within a subject
    df["_subject"] = pd.factorize(df[id_col], sort=False)[0]
    df = df.sort_values(["_subject", start_col, stop_col], kind="stable").reset_index(drop=True)
    start = pd.to_numeric(df[start_col], errors="coerce").to_numpy(float)
    stop = pd.to_numeric(df[stop_col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(start) | ~np.isfinite(stop) | (start < 0) | (stop < start)
    for r in np.nonzero(bad)[0]:
        problems.append(
            f"row {df['_row'].iat[r]}: start {start[r]!r}, stop {stop[r]!r} "
            "(need finite 0 <= start <= stop)"
        )
    x = df[covariates].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if x.size:
        rows, cols = np.nonzero(~np.isfinite(x))
        for r, c in zip(rows[:20], cols[:20], strict=True):
            problems.append(f"row {df['_row'].iat[r]}: covariate {covariates[c]!r} is missing")
        if len(rows) > 20:
            problems.append(f"... and {len(rows) - 20} more missing covariate values")

    codes, subject_ids = pd.factorize(df[id_col], sort=False)
    n_sub = len(subject_ids)
    first = np.r_[True, codes[1:] != codes[:-1]]
    last = np.r_[codes[1:] != codes[:-1], True]
    overlap = ~first & (start < np.r_[-np.inf, stop[:-1]])
    for r in np.nonzero(overlap)[0]:
        problems.append(
            f"subject {subject_ids[codes[r]]!r}: rows overlap at {start[r]:g} "
            f"(previous row stops at {stop[r - 1]:g})"
        )

    entry = start[first]
    last_stop = stop[last]
    # per-subject outcome
    if event_type_col is not None:
        kinds = df[event_type_col].astype(str).to_numpy()
        unknown = ~np.isin(kinds, list(EVENT_TYPES))
        for r in np.nonzero(unknown)[0][:20]:
            problems.append(
                f"row {df['_row'].iat[r]}: event type {kinds[r]!r} is not one of "
                f"{', '.join(EVENT_TYPES)}"
            )
        kind_code = np.array([EVENT_TYPES.get(k, RIGHT) for k in kinds])
        varies = pd.Series(kind_code).groupby(codes).nunique().to_numpy() > 1
        for s in np.nonzero(varies)[0]:
            problems.append(f"subject {subject_ids[s]!r}: event type changes between rows")
        event_type = kind_code[last]
    else:
        ev = pd.to_numeric(df[event_col], errors="coerce").fillna(-1).to_numpy()
        for r in np.nonzero(~np.isin(ev, [0, 1]))[0][:20]:
            problems.append(f"row {df['_row'].iat[r]}: event {df[event_col].iat[r]!r} not 0/1")
        for r in np.nonzero((ev == 1) & ~last)[0]:
            problems.append(
                f"subject {subject_ids[codes[r]]!r}: event on a row that is not the "
                "subject's last (one event per subject)"
            )
        event_type = np.where(ev[last] == 1, OBSERVED, RIGHT)

    lower = last_stop.copy()
    upper = last_stop.copy()
    if event_type_col is not None:
        interval = event_type == INTERVAL
        if interval.any():
            for col in (lower_col, upper_col):
                if col not in df.columns:
                    problems.append(f"missing column {col!r} needed by interval-censored subjects")
            if problems:
                raise CountingProcessError(problems)
        if upper_col in df.columns:
            hi = pd.to_numeric(df[upper_col], errors="coerce").to_numpy(float)[last]
        else:
            hi = last_stop.copy()
        lo = (
            pd.to_numeric(df[lower_col], errors="coerce").to_numpy(float)[last]
            if lower_col in df.columns
            else np.full(n_sub, np.nan)
        )
        # observed / right: the time is `upper` when given, else the last row's stop
        point = ~interval
        given = point & np.isfinite(hi)
        upper = np.where(given, hi, upper)
        lower = np.where(point, upper, lower)
        # interval with an infinite (or missing) upper bound: right-censored at lower
        hi_iv = np.where(np.isnan(hi), np.inf, hi)
        as_right = interval & ~np.isfinite(hi_iv)
        lower = np.where(interval, lo, lower)
        upper = np.where(interval & ~as_right, hi_iv, np.where(as_right, lo, upper))
        event_type = np.where(as_right, RIGHT, event_type)
        interval = event_type == INTERVAL
        for s in np.nonzero(~(np.isfinite(lower) & (lower >= entry)))[0]:
            problems.append(
                f"subject {subject_ids[s]!r}: time {lower[s]!r} is before entry "
                f"{entry[s]:g} or missing"
            )
        for s in np.nonzero(interval & ~(upper > lower))[0]:
            problems.append(
                f"subject {subject_ids[s]!r}: interval ({lower[s]:g}, {upper[s]:g}] is empty"
            )
        for s in np.nonzero(~interval & (upper <= entry))[0]:
            problems.append(
                f"subject {subject_ids[s]!r}: event or censoring time {upper[s]:g} is not "
                f"after entry {entry[s]:g}"
            )
        for s in np.nonzero(upper > last_stop)[0]:
            problems.append(
                f"subject {subject_ids[s]!r}: follow-up rows end at {last_stop[s]:g}, before "
                f"the outcome time {upper[s]:g}"
            )
    if problems:
        raise CountingProcessError(problems)

    # cut rows at each subject's end of follow-up (upper bound)
    row_end = upper[codes]
    keep_row = start < row_end
    n_zero = int(np.sum((start == stop) & keep_row))
    ev_zero = np.zeros(len(df), bool)
    if event_type_col is None and event_col is not None:
        ev_zero = (start == stop) & last & (event_type[codes] == OBSERVED)
    for r in np.nonzero(ev_zero)[0]:
        problems.append(f"subject {subject_ids[codes[r]]!r}: event on a row with start == stop")
    if problems:
        raise CountingProcessError(problems)
    keep_row &= stop > start
    n_beyond = int(np.sum(~(start < row_end) & (stop > start)))
    stop = np.minimum(stop, row_end)
    r_sub, r_start, r_stop, r_x = codes[keep_row], start[keep_row], stop[keep_row], x[keep_row]
    no_rows = np.setdiff1d(np.arange(n_sub), r_sub)
    for s in no_rows:
        problems.append(f"subject {subject_ids[s]!r}: no follow-up of positive length")
    if problems:
        raise CountingProcessError(problems)

    # split at the grid and at interval lower bounds
    g = make_grid(None) if grid is None else np.asarray(grid, float)
    if g[0] != 0.0 or not np.isinf(g[-1]):
        g = make_grid(g)
    inner = g[1:-1]
    row_lower = np.where(event_type[r_sub] == INTERVAL, lower[r_sub], np.nan)
    cuts = np.column_stack([np.broadcast_to(inner, (len(r_sub), len(inner))), row_lower])
    seg_start, seg_stop, seg_row = split_at(r_start, r_stop, cuts)
    seg_sub = r_sub[seg_row]
    seg_x = r_x[seg_row]
    seg_piece = np.searchsorted(g, seg_start, side="right") - 1
    seg_after = (event_type[seg_sub] == INTERVAL) & (seg_start >= lower[seg_sub])

    event_segment = np.full(n_sub, -1)
    last_seg = np.r_[seg_sub[1:] != seg_sub[:-1], True]
    obs_idx = np.nonzero(last_seg)[0]
    observed = event_type[seg_sub[obs_idx]] == OBSERVED
    event_segment[seg_sub[obs_idx[observed]]] = obs_idx[observed]

    cluster_index = cluster_names = None
    if cluster_col is not None:
        clusters = df[cluster_col]
        if clusters.isna().any():
            rows = np.nonzero(clusters.isna().to_numpy())[0][:20]
            raise CountingProcessError(
                [f"row {df['_row'].iat[r]}: cluster {cluster_col!r} is missing" for r in rows]
            )
        per_sub = clusters.to_numpy()[last]
        cluster_names = sorted(pd.unique(per_sub).tolist())
        lookup = {c: i for i, c in enumerate(cluster_names)}
        cluster_index = np.array([lookup[c] for c in per_sub], dtype=int)

    counts = {
        "subjects": int(n_sub),
        "events_observed_exactly": int(np.sum(event_type == OBSERVED)),
        "events_interval_censored": int(np.sum(event_type == INTERVAL)),
        "right_censored": int(np.sum(event_type == RIGHT)),
        "rows": int(len(df)),
        "rows_of_zero_length_dropped": n_zero,
        "rows_after_end_of_follow_up_dropped": n_beyond,
        "segments": int(len(seg_sub)),
    }
    return CountingProcessData(
        subject_ids=list(subject_ids),
        covariate_names=covariates,
        event_type=event_type.astype(int),
        entry=entry,
        lower=lower,
        upper=upper,
        segment_subject=seg_sub.astype(int),
        segment_start=seg_start,
        segment_stop=seg_stop,
        segment_piece=seg_piece.astype(int),
        segment_after_lower=seg_after,
        segment_covariates=seg_x.reshape(len(seg_sub), len(covariates)),
        event_segment=event_segment.astype(int),
        grid=g,
        piece_labels=piece_labels(g, time_unit),
        cluster_index=cluster_index,
        cluster_names=cluster_names,
        counts=counts,
    )


# --------------------------------------------------------------------------- baselines


@dataclass
class PiecewiseBaseline:
    """Piecewise-constant baseline hazard: ``h0(t) = exp(log_hazard[k])`` on piece ``k``.

    Attributes
    ----------
    log_hazard : pytensor.tensor.TensorVariable
        Shape (piece,): log events per unit time on each piece of ``data.grid``.
    """

    log_hazard: Any

    def integrated(self, data: CountingProcessData) -> pt.TensorVariable:
        """``∫ h0`` over each segment, shape (segment,)."""
        width = data.segment_stop - data.segment_start
        return pt.exp(self.log_hazard)[data.segment_piece] * width

    def log_hazard_at_segment_end(
        self, data: CountingProcessData, segments: np.ndarray
    ) -> pt.TensorVariable:
        """``log h0`` at the end of the given segments."""
        return self.log_hazard[data.segment_piece[segments]]


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

    def _cumulative(self, t: np.ndarray) -> pt.TensorVariable:
        positive = t > 0
        safe = np.where(positive, t, 1.0)
        value = pt.exp(self.shape * (np.log(safe) - self.log_scale))
        return pt.switch(positive, value, 0.0)

    def integrated(self, data: CountingProcessData) -> pt.TensorVariable:
        """``H0(stop) - H0(start)`` for each segment, shape (segment,)."""
        return self._cumulative(data.segment_stop) - self._cumulative(data.segment_start)

    def log_hazard_at_segment_end(
        self, data: CountingProcessData, segments: np.ndarray
    ) -> pt.TensorVariable:
        """``log h0`` at the end of the given segments (times must be > 0)."""
        t = data.segment_stop[segments]
        return (
            pt.log(self.shape)
            - self.log_scale
            + (self.shape - 1.0) * (np.log(np.maximum(t, 1e-300)) - self.log_scale)
        )


# --------------------------------------------------------------------------- likelihood


def subject_log_likelihood(
    data: CountingProcessData,
    eta: Any,
    baseline: PiecewiseBaseline | WeibullBaseline,
    *,
    integrated_baseline: Any | None = None,
) -> pt.TensorVariable:
    """Per-subject log-likelihood of a proportional-hazards model.

    The hazard of subject ``i`` on segment ``j`` is ``h0(t) * exp(eta[j])``. With
    ``H(t)`` the cumulative hazard from the subject's entry:

    - observed at ``T``: ``log h0(T) + eta[j_T] - H(T)``
    - right-censored at ``C``: ``-H(C)``
    - interval-censored in ``(L, R]``: ``log(exp(-H(L)) - exp(-H(R)))``, computed as
      ``-H(L) + log1mexp(-(H(R) - H(L)))`` (stable when ``H(R) - H(L)`` is small or large).

    Parameters
    ----------
    data : CountingProcessData
        From :func:`counting_process_arrays`.
    eta : pytensor.tensor.TensorVariable or numpy.ndarray
        Shape (segment,): log relative hazard on each segment (covariates, frailty).
    baseline : PiecewiseBaseline or WeibullBaseline
        The baseline hazard.
    integrated_baseline : pytensor.tensor.TensorVariable, optional
        ``baseline.integrated(data)`` when already computed (shared between calls).

    Returns
    -------
    pytensor.tensor.TensorVariable
        Shape (subject,).
    """
    eta = pt.as_tensor_variable(eta)
    h0 = baseline.integrated(data) if integrated_baseline is None else integrated_baseline
    contribution = h0 * pt.exp(eta)
    n = data.n_subjects
    # one scatter-add: H(L) (or H(T), H(C)) in the first n slots, H(R) - H(L) in the next n
    slot = data.segment_subject + n * data.segment_after_lower.astype(int)
    cumulative = pt.inc_subtensor(pt.zeros(2 * n)[slot], contribution)
    ll = -cumulative[:n]
    is_interval = data.event_type == INTERVAL
    if is_interval.any():
        # other subjects get a harmless placeholder, so no inf or nan reaches the gradient
        between = pt.switch(is_interval, cumulative[n:], 1.0)
        ll = ll + pt.switch(is_interval, pt.log1mexp(-between), 0.0)
    observed = np.nonzero(data.event_type == OBSERVED)[0]
    if len(observed):
        seg = data.event_segment[observed]
        log_h = baseline.log_hazard_at_segment_end(data, seg) + eta[seg]
        ll = pt.inc_subtensor(ll[observed], log_h)
    return ll


def _survival_logp(
    value: pt.TensorVariable,
    log_likelihood: pt.TensorVariable,
    event_probability: pt.TensorVariable,
) -> pt.TensorVariable:
    """Log density of :func:`survival_observation`: the per-subject log-likelihood.

    ``value`` (event seen or not) is implied by the event and censoring times that are
    already folded, as constants, into ``log_likelihood``; ``event_probability`` only
    serves the random generator.
    """
    return log_likelihood + pt.zeros_like(value, dtype=log_likelihood.dtype)


def _survival_random(
    log_likelihood: np.ndarray,
    event_probability: np.ndarray,
    rng: np.random.Generator | None = None,
    size: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Draw whether each subject has the event during follow-up (0/1)."""
    p = np.broadcast_to(np.asarray(event_probability, float), size or np.shape(event_probability))
    return (rng.random(p.shape) < p).astype("int64")


def survival_observation(
    name: str,
    log_likelihood: pt.TensorVariable,
    event_seen: np.ndarray,
    event_probability: pt.TensorVariable,
    dims: str,
) -> pt.TensorVariable:
    """Attach a per-subject survival log-likelihood as an observed variable.

    The observed value is whether each subject's event was seen during follow-up (1:
    observed exactly or interval-censored; 0: right-censored). Its log density is
    ``log_likelihood``, one term per subject, so the ``log_likelihood`` group has one
    value per subject and PSIS-LOO leaves one subject out at a time. Predictive draws
    (prior and posterior) are of the same 0/1 outcome, with ``event_probability`` the
    model's probability of the event within each subject's follow-up window; they check
    the number of events the model expects against the number seen.

    Parameters
    ----------
    name : str
        Variable name (``"survival"``, ``"worsening"``).
    log_likelihood : pytensor.tensor.TensorVariable
        Shape (subject,), from :func:`subject_log_likelihood` (or a mixture of them).
    event_seen : numpy.ndarray
        Shape (subject,): 1 when the event was seen, else 0.
    event_probability : pytensor.tensor.TensorVariable
        Shape (subject,): probability of an event during follow-up (e.g.
        :func:`event_probability`).
    dims : str
        Subject dimension name.
    """
    return pm.CustomDist(
        name,
        log_likelihood,
        event_probability,
        logp=_survival_logp,
        random=_survival_random,
        observed=np.asarray(event_seen, dtype="int64"),
        dims=dims,
        dtype="int64",
    )


def cumulative_hazard(
    data: CountingProcessData, eta: Any, baseline: PiecewiseBaseline | WeibullBaseline
) -> pt.TensorVariable:
    """Cumulative hazard over each subject's whole follow-up (all segments), (subject,)."""
    contribution = baseline.integrated(data) * pt.exp(pt.as_tensor_variable(eta))
    return pt.inc_subtensor(pt.zeros(data.n_subjects)[data.segment_subject], contribution)


def event_probability(
    data: CountingProcessData, eta: Any, baseline: PiecewiseBaseline | WeibullBaseline
) -> pt.TensorVariable:
    """``1 - exp(-H)`` over each subject's follow-up rows: P(event before their end)."""
    return -pt.expm1(-cumulative_hazard(data, eta, baseline))


# --------------------------------------------------------------------------- visit intervals


@dataclass
class VisitIntervalData:
    """Follow-up checked at visits, split into segments, as plain arrays.

    An event that is only seen at visits (confirmed worsening) is recorded as the *visit
    interval* in which it happened: for subject ``i`` with checked visits
    ``t_0 < t_1 < ... < t_J`` (``J = n_intervals[i]``), interval ``k`` (1-based) is
    ``(t_{k-1}, t_k]``, and the outcome is the index ``k`` of the interval that holds the
    event (first seen at visit ``k``), or 0 when no event was seen by ``t_J``
    (right-censored there). The visit times are part of the design, like covariates; the
    index is the outcome (see :func:`visit_interval_log_likelihood`).

    The follow-up from ``t_0`` to ``t_J`` is split at every visit, every row boundary
    (covariate change, e.g. a treatment-course start) and every baseline-hazard grid point,
    so each segment has constant covariates, one baseline piece, and lies in exactly one
    visit interval.

    Attributes
    ----------
    subject_ids : list
        Subject labels, in the order of the per-subject arrays.
    covariate_names : list of str
        Columns of ``segment_covariates``.
    visit_times : numpy.ndarray
        Shape (subject, max_intervals + 1): checked visit times ``t_0, ..., t_J`` (time
        unit), NaN after a subject's last one.
    n_intervals : numpy.ndarray of int
        Per subject: ``J``, the number of visit intervals (at least 1).
    segment_subject : numpy.ndarray of int
        Subject index of each segment.
    segment_interval : numpy.ndarray of int
        Visit interval of each segment, 0-based (interval ``k`` above is ``k - 1`` here).
    segment_start, segment_stop : numpy.ndarray
        Segment bounds (time unit), ``start < stop``.
    segment_piece : numpy.ndarray of int
        Baseline-hazard piece of each segment (0 when there is no grid).
    segment_covariates : numpy.ndarray
        Shape (segment, covariate).
    interval_end_segment : numpy.ndarray of int
        Shape (subject, max_intervals): the segment that ends at each interval's closing
        visit ``t_k`` (for the hazard at that visit), -1 after the last interval.
    grid : numpy.ndarray
        Piece boundaries ``[0, ..., inf]`` (time unit).
    piece_labels : list of str
        One label per baseline-hazard piece.
    counts : dict
        Subjects, intervals, segments.
    """

    subject_ids: list
    covariate_names: list[str]
    visit_times: np.ndarray
    n_intervals: np.ndarray
    segment_subject: np.ndarray
    segment_interval: np.ndarray
    segment_start: np.ndarray
    segment_stop: np.ndarray
    segment_piece: np.ndarray
    segment_covariates: np.ndarray
    interval_end_segment: np.ndarray
    grid: np.ndarray
    piece_labels: list[str]
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return len(self.subject_ids)

    @property
    def n_segments(self) -> int:
        """Number of segments."""
        return len(self.segment_subject)

    @property
    def max_intervals(self) -> int:
        """Largest number of visit intervals of a subject (the padded width)."""
        return int(self.interval_end_segment.shape[1])

    def subset(self, subjects: np.ndarray) -> tuple[VisitIntervalData, np.ndarray]:
        """The data of some subjects only (same padded width).

        Parameters
        ----------
        subjects : numpy.ndarray
            Boolean mask over subjects, or subject indices (kept in increasing order).

        Returns
        -------
        data : VisitIntervalData
            Those subjects, re-indexed from 0 in their original order.
        segments : numpy.ndarray of int
            Index, in this data, of each segment of the subset (to select a linear
            predictor computed on the whole data).
        """
        index, new_of_old, segments, position = _subset_positions(
            subjects, self.n_subjects, self.segment_subject
        )
        old_end = self.interval_end_segment[index]
        end = np.where(old_end >= 0, position[np.maximum(old_end, 0)], -1)
        sub = VisitIntervalData(
            subject_ids=[self.subject_ids[i] for i in index],
            covariate_names=list(self.covariate_names),
            visit_times=self.visit_times[index],
            n_intervals=self.n_intervals[index],
            segment_subject=new_of_old[self.segment_subject[segments]],
            segment_interval=self.segment_interval[segments],
            segment_start=self.segment_start[segments],
            segment_stop=self.segment_stop[segments],
            segment_piece=self.segment_piece[segments],
            segment_covariates=self.segment_covariates[segments],
            interval_end_segment=end,
            grid=self.grid,
            piece_labels=list(self.piece_labels),
            counts={"subjects": len(index), "segments": len(segments)},
        )
        return sub, segments


def visit_interval_arrays(
    frame: pd.DataFrame,
    visit_times: Mapping[Any, Sequence[float]],
    *,
    id_col: str = "id",
    start_col: str = "start",
    stop_col: str = "stop",
    covariates: Sequence[str] = (),
    grid: Sequence[float] | np.ndarray | None = None,
    time_unit: str = "y",
) -> VisitIntervalData:
    """Split follow-up rows at checked visits into :class:`VisitIntervalData`.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per stretch of follow-up ``(start, stop]`` of one subject with constant
        covariates (as for :func:`counting_process_arrays`; no outcome columns). The rows
        must reach each subject's last visit; time before the first visit and after the
        last one is not part of the outcome and is dropped.
    visit_times : mapping
        Subject id -> checked visit times ``t_0 < t_1 < ... < t_J`` (time unit, at least
        two), for every subject of ``frame``: ``t_0`` starts the time at risk (the
        baseline visit), ``t_J`` ends it (the last visit at which the event could still be
        seen).
    id_col, start_col, stop_col : str
        Subject identifier and row bounds.
    covariates : sequence of str
        Numeric columns (no missing values) that enter the linear predictor.
    grid : sequence of float, optional
        Baseline-hazard piece boundaries ``[0, ..., inf]`` (or interior cut points).
    time_unit : str
        Unit written in the piece labels.

    Returns
    -------
    VisitIntervalData

    Raises
    ------
    CountingProcessError
        Listing every inconsistency found (visits missing, not increasing, fewer than
        two; rows overlapping, missing covariates, rows ending before the last visit; a
        visit at which the subject is not at risk).
    """
    problems: list[str] = []
    if id_col not in frame.columns:
        raise CountingProcessError([f"missing column(s): {id_col}"])
    ids = list(pd.unique(frame[id_col]))
    times: list[np.ndarray] = []
    for sid in ids:
        t = np.asarray(visit_times.get(sid, ()), dtype=float).ravel()
        if len(t) < 2 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            problems.append(
                f"subject {sid!r}: visit times {t.tolist()} (need at least two finite, "
                "strictly increasing times)"
            )
        times.append(t)
    known_ids = set(ids)
    extra = [sid for sid in visit_times if sid not in known_ids]
    if extra:
        problems.append(f"visit times given for subjects without follow-up rows: {extra[:10]}")
    if problems:
        raise CountingProcessError(problems)

    # check the rows, cut them at the last visit and split them at the grid (right-censored
    # at the last visit: the outcome is read later from the value, not from the table)
    last = {sid: t[-1] for sid, t in zip(ids, times, strict=True)}
    table = frame.copy()
    table["_outcome"] = "right"
    table["_until"] = table[id_col].map(last)
    cp = counting_process_arrays(
        table,
        id_col=id_col,
        start_col=start_col,
        stop_col=stop_col,
        event_type_col="_outcome",
        lower_col="_until",
        upper_col="_until",
        covariates=covariates,
        grid=grid,
        time_unit=time_unit,
    )

    n_intervals = np.array([len(t) - 1 for t in times], dtype=int)
    width = int(n_intervals.max())
    padded = np.full((len(ids), width + 1), np.nan)
    for i, t in enumerate(times):
        padded[i, : len(t)] = t
    seg_visits = padded[cp.segment_subject]
    seg_start, seg_stop, seg_of = split_at(cp.segment_start, cp.segment_stop, seg_visits)
    seg_sub = cp.segment_subject[seg_of]
    # visits at or before each segment's start; 0 (before the first visit): not at risk
    with np.errstate(invalid="ignore"):
        seen = np.sum(padded[seg_sub] <= seg_start[:, None], axis=1)
    keep = seen >= 1
    seg_start, seg_stop, seg_of, seg_sub = (a[keep] for a in (seg_start, seg_stop, seg_of, seg_sub))
    seg_interval = seen[keep] - 1

    # the segment that closes each interval (segments are in time order within a subject)
    interval_end = np.full((len(ids), width), -1)
    closes = seg_stop == padded[seg_sub, seg_interval + 1]
    interval_end[seg_sub[closes], seg_interval[closes]] = np.nonzero(closes)[0]
    for i, k in zip(
        *np.nonzero((interval_end < 0) & (np.arange(width) < n_intervals[:, None])), strict=True
    ):
        problems.append(
            f"subject {ids[i]!r}: not at risk just before the visit at {padded[i, k + 1]:g} "
            "(no follow-up row reaches it)"
        )
    if problems:
        raise CountingProcessError(problems)

    return VisitIntervalData(
        subject_ids=ids,
        covariate_names=list(covariates),
        visit_times=padded,
        n_intervals=n_intervals,
        segment_subject=seg_sub.astype(int),
        segment_interval=seg_interval.astype(int),
        segment_start=seg_start,
        segment_stop=seg_stop,
        segment_piece=cp.segment_piece[seg_of].astype(int),
        segment_covariates=cp.segment_covariates[seg_of],
        interval_end_segment=interval_end.astype(int),
        grid=cp.grid,
        piece_labels=list(cp.piece_labels),
        counts={
            "subjects": len(ids),
            "visit_intervals": int(n_intervals.sum()),
            "segments": int(len(seg_sub)),
        },
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
    width = data.max_intervals
    # one flat scatter-add (cheaper than a two-index one, and so is its gradient)
    cell = data.segment_subject * width + data.segment_interval
    flat = pt.inc_subtensor(pt.zeros(data.n_subjects * width)[cell], contribution)
    return flat.reshape((data.n_subjects, width))


def visit_log_hazard(
    data: VisitIntervalData, eta: Any, baseline: PiecewiseBaseline | WeibullBaseline
) -> pt.TensorVariable:
    """Log hazard at each interval's closing visit, ``log h_i(t_k)``, padded with 0.

    ``log h0`` at the visit (left limit: the piece that ends there) plus ``eta`` of the
    segment that ends at the visit. Shape (subject, max_intervals), log events per unit
    time. Used only to date an event exactly at the visit that detected it.
    """
    eta = pt.as_tensor_variable(eta)
    rows, cols = np.nonzero(data.interval_end_segment >= 0)
    segments = data.interval_end_segment[rows, cols]
    log_h = baseline.log_hazard_at_segment_end(data, segments) + eta[segments]
    empty = pt.zeros((data.n_subjects, data.max_intervals))
    return pt.set_subtensor(empty[rows, cols], log_h)


def visit_interval_log_likelihood(
    value: Any, interval_hazard: Any, visit_log_hazard: Any | None = None
) -> pt.TensorVariable:
    """Per-subject log-likelihood of the visit interval in which the event was seen.

    With ``D[i, k]`` the integrated hazard of interval ``k`` (:func:`interval_hazards`,
    0-based columns) and ``v`` the observed value:

    - ``v = 0`` (no event by the last visit ``t_J``): ``log S(t_J) = -sum_k D[i, k]``;
    - ``v >= 1`` (event in ``(t_{v-1}, t_v]``): ``log(S(t_{v-1}) - S(t_v)) =
      -sum_{k<v} D[i, k] + log1mexp(-D[i, v])`` (1-based ``k``, ``v``);
    - with ``visit_log_hazard`` (event dated exactly at the detecting visit ``t_v``, a
      biased shortcut kept to show its bias): ``log h(t_v) - sum_{k<=v} D[i, k]``.

    A value beyond a subject's last interval has probability 0 (log-likelihood -inf).

    Parameters
    ----------
    value : pytensor.tensor.TensorVariable or numpy.ndarray of int
        Shape (subject,): 0, or the 1-based interval of the event.
    interval_hazard : pytensor.tensor.TensorVariable
        Shape (subject, max_intervals).
    visit_log_hazard : pytensor.tensor.TensorVariable, optional
        Shape (subject, max_intervals), from :func:`visit_log_hazard`.

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
    if visit_log_hazard is None:
        # censored subjects get a harmless placeholder, so no inf or nan reaches the gradient
        event = -before_v + pt.log1mexp(-pt.switch(seen, within_v, 1.0))
    else:
        log_h = pt.sum(pt.where(pt.eq(interval, column), visit_log_hazard, 0.0), axis=-1)
        exact = log_h - before_v - within_v
        # padding (a value beyond the last interval) has no hazard: impossible there too
        event = pt.switch(within_v > 0, exact, -np.inf)
    return pt.switch(seen, event, -total)


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


# --------------------------------------------------------------------------- a generic model


def baseline_from_priors(
    kind: str,
    data: CountingProcessData,
    *,
    prior_mean: float | None = None,
    prior_sd: float = 2.0,
    shape_sd: float = 0.5,
    piece_dim: str = "hazard_piece",
) -> PiecewiseBaseline | WeibullBaseline:
    """Baseline-hazard variables in the current model.

    Piecewise: ``baseline_log_hazard ~ Normal(prior_mean, prior_sd)`` per piece (dims
    ``piece_dim``; log events per unit time). Weibull: ``weibull_shape ~
    LogNormal(0, shape_sd)``, ``weibull_log_scale ~ Normal(-prior_mean, prior_sd)``.
    ``prior_mean`` defaults to the log crude event rate of ``data``.
    """
    centre = float(np.log(data.crude_rate())) if prior_mean is None else float(prior_mean)
    if kind == "piecewise":
        log_h = pm.Normal("baseline_log_hazard", mu=centre, sigma=prior_sd, dims=piece_dim)
        return PiecewiseBaseline(log_h)
    if kind == "weibull":
        shape = pm.LogNormal("weibull_shape", mu=0.0, sigma=shape_sd)
        log_scale = pm.Normal("weibull_log_scale", mu=-centre, sigma=prior_sd)
        return WeibullBaseline(shape, log_scale)
    raise ValueError(f"baseline hazard kind must be 'piecewise' or 'weibull', not {kind!r}")


def build_counting_process_model(
    data: CountingProcessData,
    *,
    baseline: str = "piecewise",
    beta_sd: float = 10.0,
    baseline_prior_mean: float | None = None,
    baseline_prior_sd: float = 2.0,
    frailty: str | None = "partial",
    frailty_scale: float = 0.5,
    center: bool = True,
) -> pm.Model:
    """A proportional-hazards model of counting-process data.

    ``h_i(t) = h0(t) * exp(x_i(t)' beta + log_frailty[cluster_i])`` with
    ``beta ~ Normal(0, beta_sd)`` (dims ``covariate``), the baseline of
    :func:`baseline_from_priors` and, when ``data`` has clusters and ``frailty`` is not
    None, a log-normal cluster frailty (``cluster_log_frailty``, dims ``cluster``, via
    :func:`magbayes.models.blocks.site_effect`).

    Parameters
    ----------
    data : CountingProcessData
        From :func:`counting_process_arrays`.
    baseline : {"piecewise", "weibull"}
        Baseline hazard.
    beta_sd : float
        Prior sd of each log hazard ratio (per unit of the covariate).
    baseline_prior_mean, baseline_prior_sd : float
        Prior of the log baseline hazard (default mean: log crude rate).
    frailty : {"partial", "fixed"} or None
        Cluster frailty pooling (None: no frailty).
    frailty_scale : float
        Prior scale of the frailty sd (partial) or of each offset (fixed).
    center : bool
        Subtract each covariate's mean over segments before fitting (the hazard ratios
        are unchanged; the baseline hazard is then that of a subject at the means).

    Returns
    -------
    pymc.Model
        Variables ``beta``, the baseline, optionally ``cluster_log_frailty``, and the
        observed ``survival`` (dims ``subject``). Its predictive draws use the probability
        of an event before the end of each subject's rows, which for a subject with an
        event is the event (or its upper bound): a rough check of the number of events,
        not an exact replicate of the design.

    Notes
    -----
    With a fine piecewise grid (e.g. :func:`quantile_grid` with a few events per piece)
    and weak priors (``baseline_prior_sd`` about 5) the hazard ratios approach the Cox
    partial-likelihood estimates.
    """
    x = data.segment_covariates
    means = x.mean(axis=0) if (center and x.shape[0]) else np.zeros(x.shape[1])
    coords: dict[str, list] = {
        "subject": [str(s) for s in data.subject_ids],
        "covariate": list(data.covariate_names),
        "hazard_piece": list(data.piece_labels),
    }
    use_frailty = frailty is not None and data.cluster_index is not None
    if use_frailty:
        coords["cluster"] = [str(c) for c in data.cluster_names]
    with pm.Model(coords=coords) as model:
        base = baseline_from_priors(
            baseline, data, prior_mean=baseline_prior_mean, prior_sd=baseline_prior_sd
        )
        eta = pt.zeros(data.n_segments)
        if x.shape[1]:
            beta = pm.Normal("beta", 0.0, beta_sd, dims="covariate")
            eta = eta + pt.dot(x - means, beta)
        if use_frailty:
            frail = site_effect(
                "cluster_log_frailty",
                data.cluster_index,
                pooling=frailty,
                scale=frailty_scale,
                dim="cluster",
            )
            eta = eta + frail[data.segment_subject]
        ll = subject_log_likelihood(data, eta, base)
        survival_observation(
            "survival",
            ll,
            (data.event_type != RIGHT).astype(int),
            event_probability(data, eta, base),
            dims="subject",
        )
    model.covariate_means = dict(zip(data.covariate_names, map(float, means), strict=True))
    return model


def fit_counting_process(
    frame: pd.DataFrame,
    *,
    covariates: Sequence[str],
    grid: Sequence[float] | None = None,
    baseline: str = "piecewise",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    target_accept: float = 0.9,
    model_kwargs: dict[str, Any] | None = None,
    **array_kwargs: Any,
) -> xr.DataTree:
    """Fit a Bayesian proportional-hazards model to a counting-process table.

    Parameters
    ----------
    frame : pandas.DataFrame
        See :func:`counting_process_arrays`.
    covariates : sequence of str
        Columns entering the linear predictor.
    grid : sequence of float, optional
        Piecewise baseline boundaries (see :func:`quantile_grid` for a fine grid).
    baseline : {"piecewise", "weibull"}
        Baseline hazard.
    draws, tune, chains, seed : int
        Sampler settings (nutpie).
    target_accept : float
        NUTS target acceptance rate (higher: smaller steps, fewer divergences).
    model_kwargs : dict, optional
        Passed to :func:`build_counting_process_model` (priors, frailty, centring).
    **array_kwargs
        Passed to :func:`counting_process_arrays` (column names, ``cluster_col``, ...).

    Returns
    -------
    xarray.DataTree
        Posterior, sample_stats, observed_data and a per-subject ``log_likelihood``.
    """
    data = counting_process_arrays(frame, covariates=covariates, grid=grid, **array_kwargs)
    model = build_counting_process_model(data, baseline=baseline, **(model_kwargs or {}))
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed}
    tree = sample_posterior(model, settings | {"target_accept": target_accept})
    pm.compute_log_likelihood(
        tree, var_names=["survival"], model=model, extend_inferencedata=True, progressbar=False
    )
    return tree
