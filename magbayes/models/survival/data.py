"""Follow-up data as plain arrays: counting-process tables and visit intervals.

Nothing here knows about magbayes cohorts. Two layouts of the same kind of data:

:class:`CountingProcessData` (from :func:`counting_process_arrays`)
    A *counting-process* table, one row per stretch of follow-up of one subject with
    constant covariates (the layout of lifelines' ``CoxTimeVaryingFitter`` and R's
    ``Surv(start, stop, event)``), with each subject's outcome one of ``observed`` (the
    event at an exact time), ``right`` (no event by the end of follow-up) or ``interval``
    (the event in ``(lower, upper]``, seen only at visits). Rows are split at the
    baseline-hazard grid.
:class:`VisitIntervalData` (from :func:`visit_interval_arrays`)
    Follow-up checked at visits ``t_0 < ... < t_J``, split at the visits, the row
    boundaries and the grid. The outcome is not part of it: it is the *index* of the
    visit interval that holds the event (0: none by ``t_J``), the value that the
    likelihood (:mod:`magbayes.models.survival.likelihood`) reads.

:func:`visit_intervals_of` writes a counting-process outcome as visit intervals (the
visits of a subject being its entry, an interval's lower bound and the end of its
follow-up), so that both layouts go through one likelihood. Both data classes share one
:meth:`~SubjectSegments.subset`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Self

import numpy as np
import pandas as pd

from magbayes.models.survival.baselines import make_grid, piece_labels

#: Codes of the three kinds of outcome of a counting-process table.
RIGHT, OBSERVED, INTERVAL = 0, 1, 2
EVENT_TYPES: dict[str, int] = {"right": RIGHT, "observed": OBSERVED, "interval": INTERVAL}

# What each array field of the data classes is indexed by, for `SubjectSegments.subset`.
_PER_SUBJECT = {"per": "subject"}
_PER_SEGMENT = {"per": "segment"}
# per subject, holding segment indices (-1: none)
_SEGMENT_POINTER = {"per": "segment_pointer"}


class CountingProcessError(ValueError):
    """Follow-up data are inconsistent; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in counting-process data:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


@dataclass(kw_only=True)
class SubjectSegments:
    """Follow-up of subjects split into segments: what both data classes share.

    A *segment* is a stretch of one subject's follow-up with constant covariates within
    one baseline-hazard piece. Each array field's metadata says what it is indexed by
    (subject, segment, or per subject holding segment indices), which is all
    :meth:`subset` needs.

    Attributes
    ----------
    subject_ids : list
        Subject labels, in the order of the per-subject arrays.
    covariate_names : list of str
        Columns of ``segment_covariates``.
    segment_subject : numpy.ndarray of int
        Subject index of each segment.
    segment_start, segment_stop : numpy.ndarray
        Segment bounds (time unit), ``start < stop``.
    segment_piece : numpy.ndarray of int
        Baseline-hazard piece of each segment (0 when there is no grid).
    segment_covariates : numpy.ndarray
        Shape (segment, covariate).
    grid : numpy.ndarray
        Piece boundaries ``[g0=0, g1, ..., inf]`` (time unit).
    piece_labels : list of str
        One label per baseline-hazard piece (``"0-2 y"``, ..., ``"12+ y"``).
    counts : dict
        Numbers of subjects, segments and what else the maker counted.
    """

    subject_ids: list = field(metadata=_PER_SUBJECT)
    covariate_names: list[str]
    segment_subject: np.ndarray = field(metadata=_PER_SEGMENT)
    segment_start: np.ndarray = field(metadata=_PER_SEGMENT)
    segment_stop: np.ndarray = field(metadata=_PER_SEGMENT)
    segment_piece: np.ndarray = field(metadata=_PER_SEGMENT)
    segment_covariates: np.ndarray = field(metadata=_PER_SEGMENT)
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

    def as_data(self, prefix: str = "") -> Self:
        """The same data with every segment array a ``pm.Data`` input of the model.

        Inside a model context. The per-segment arrays, and the per-subject pointers into
        them, become ``pm.Data`` named ``{prefix}{field}``, so a likelihood built from them
        (:mod:`magbayes.models.survival.likelihood`) takes the cohort as inputs of the
        compiled model instead of constants in it: one compiled model then serves every
        cohort of the same structure. The per-subject arrays and the labels stay as they
        are (a likelihood reads its sizes from the arrays' shapes).
        """
        import pymc as pm

        changes = {
            item.name: pm.Data(f"{prefix}{item.name}", np.asarray(getattr(self, item.name)))
            for item in fields(self)
            if item.metadata.get("per") in ("segment", "segment_pointer")
            and getattr(self, item.name) is not None
        }
        return replace(self, **changes)

    def subset(self, subjects: np.ndarray) -> tuple[Self, np.ndarray]:
        """The data of some subjects only.

        Parameters
        ----------
        subjects : numpy.ndarray
            Boolean mask over subjects, or subject indices (kept in increasing order).

        Returns
        -------
        data
            Those subjects, re-indexed from 0 in their original order (same class, same
            grid and padded widths).
        segments : numpy.ndarray of int
            Index, in this data, of each segment of the subset (to select a linear
            predictor computed on the whole data).
        """
        index = np.asarray(subjects)
        if index.dtype == bool:
            index = np.nonzero(index)[0]
        index = np.unique(index)
        new_of_old = np.full(self.n_subjects, -1)
        new_of_old[index] = np.arange(len(index))
        segments = np.nonzero(new_of_old[self.segment_subject] >= 0)[0]
        position = np.full(self.n_segments, -1)
        position[segments] = np.arange(len(segments))
        changes: dict[str, Any] = {}
        for item in fields(self):
            per = item.metadata.get("per")
            value = getattr(self, item.name)
            if per is None or value is None:
                continue
            if per == "subject":
                changes[item.name] = (
                    [value[i] for i in index] if isinstance(value, list) else value[index]
                )
            elif per == "segment":
                changes[item.name] = value[segments]
            else:
                old = value[index]
                changes[item.name] = np.where(old >= 0, position[np.maximum(old, 0)], -1)
        changes["segment_subject"] = new_of_old[self.segment_subject[segments]]
        changes["counts"] = {"subjects": len(index), "segments": len(segments)}
        return replace(self, **changes), segments


@dataclass(kw_only=True)
class CountingProcessData(SubjectSegments):
    """A counting-process table split into segments, as plain arrays.

    Times are in the unit of the input table (years for magbayes cohorts). Segments (see
    :class:`SubjectSegments` for the fields they share with :class:`VisitIntervalData`)
    end at the latest at the subject's outcome time (``upper``).

    Attributes
    ----------
    event_type : numpy.ndarray of int
        Per subject: 0 right-censored, 1 observed exactly, 2 interval-censored.
    entry : numpy.ndarray
        Per subject: start of follow-up (time unit).
    lower, upper : numpy.ndarray
        Per subject: censoring/event times. Observed: both the event time. Right: both
        the censoring time. Interval: the bounds ``(lower, upper]``.
    cluster_index : numpy.ndarray of int or None
        Per subject: index into ``cluster_names`` (None when no cluster column).
    cluster_names : list or None
        Cluster labels (sorted).
    """

    event_type: np.ndarray = field(metadata=_PER_SUBJECT)
    entry: np.ndarray = field(metadata=_PER_SUBJECT)
    lower: np.ndarray = field(metadata=_PER_SUBJECT)
    upper: np.ndarray = field(metadata=_PER_SUBJECT)
    cluster_index: np.ndarray | None = field(default=None, metadata=_PER_SUBJECT)
    cluster_names: list | None = None

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


@dataclass(kw_only=True)
class VisitIntervalData(SubjectSegments):
    """Follow-up checked at visits, split into segments, as plain arrays.

    An event that is only seen at visits (confirmed worsening) is recorded as the *visit
    interval* in which it happened: for subject ``i`` with checked visits
    ``t_0 < t_1 < ... < t_J`` (``J = n_intervals[i]``), interval ``k`` (1-based) is
    ``(t_{k-1}, t_k]``, and the outcome is the index ``k`` of the interval that holds the
    event (first seen at visit ``k``), or 0 when no event was seen by ``t_J``
    (right-censored there). The visit times are part of the design, like covariates; the
    index is the outcome (see
    :func:`~magbayes.models.survival.likelihood.visit_interval_log_likelihood`).

    The follow-up from ``t_0`` to ``t_J`` is split at every visit, every row boundary
    (covariate change, e.g. a treatment-course start) and every baseline-hazard grid point,
    so each segment has constant covariates, one baseline piece, and lies in exactly one
    visit interval (see :class:`SubjectSegments` for the fields of the segments).

    Attributes
    ----------
    visit_times : numpy.ndarray
        Shape (subject, max_intervals + 1): checked visit times ``t_0, ..., t_J`` (time
        unit), NaN after a subject's last one.
    n_intervals : numpy.ndarray of int
        Per subject: ``J``, the number of visit intervals (at least 1).
    segment_interval : numpy.ndarray of int
        Visit interval of each segment, 0-based (interval ``k`` above is ``k - 1`` here).
    interval_end_segment : numpy.ndarray of int
        Shape (subject, max_intervals): the segment that ends at each interval's closing
        visit ``t_k`` (for the hazard at that visit), -1 after the last interval.
    """

    visit_times: np.ndarray = field(metadata=_PER_SUBJECT)
    n_intervals: np.ndarray = field(metadata=_PER_SUBJECT)
    segment_interval: np.ndarray = field(metadata=_PER_SEGMENT)
    interval_end_segment: np.ndarray = field(metadata=_SEGMENT_POINTER)

    @property
    def max_intervals(self) -> int:
        """Largest number of visit intervals of a subject (the padded width)."""
        return int(self.interval_end_segment.shape[1])


# --------------------------------------------------------------------------- splitting


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

    # split at the grid
    g = make_grid(None) if grid is None else np.asarray(grid, float)
    if g[0] != 0.0 or not np.isinf(g[-1]):
        g = make_grid(g)
    inner = g[1:-1]
    seg_start, seg_stop, seg_row = split_at(
        r_start, r_stop, np.broadcast_to(inner, (len(r_sub), len(inner)))
    )
    seg_sub = r_sub[seg_row]
    seg_x = r_x[seg_row]
    seg_piece = np.searchsorted(g, seg_start, side="right") - 1

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
        segment_covariates=seg_x.reshape(len(seg_sub), len(covariates)),
        grid=g,
        piece_labels=piece_labels(g, time_unit),
        cluster_index=cluster_index,
        cluster_names=cluster_names,
        counts=counts,
    )


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

    times_of = dict(zip(ids, times, strict=True))
    padded = np.full((cp.n_subjects, max(len(t) for t in times)), np.nan)
    for i, sid in enumerate(cp.subject_ids):
        padded[i, : len(times_of[sid])] = times_of[sid]
    return _split_at_visits(cp, padded)[0]


def _split_at_visits(
    data: CountingProcessData, visit_times: np.ndarray
) -> tuple[VisitIntervalData, np.ndarray]:
    """Split counting-process segments at each subject's visits.

    Parameters
    ----------
    data : CountingProcessData
        Follow-up rows split at the grid, ending at each subject's last visit.
    visit_times : numpy.ndarray
        Shape (subject, max_intervals + 1): visits ``t_0 < ... < t_J`` of each subject
        (time unit), NaN after its last one.

    Returns
    -------
    intervals : VisitIntervalData
    segment_of : numpy.ndarray of int
        The segment of ``data`` that holds each segment of ``intervals``.
    """
    problems: list[str] = []
    ids = list(data.subject_ids)
    padded = np.asarray(visit_times, float)
    n_intervals = np.sum(np.isfinite(padded), axis=1) - 1
    width = padded.shape[1] - 1

    seg_visits = padded[data.segment_subject]
    seg_start, seg_stop, seg_of = split_at(data.segment_start, data.segment_stop, seg_visits)
    seg_sub = data.segment_subject[seg_of]
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

    intervals = VisitIntervalData(
        subject_ids=ids,
        covariate_names=list(data.covariate_names),
        visit_times=padded,
        n_intervals=n_intervals.astype(int),
        segment_subject=seg_sub.astype(int),
        segment_interval=seg_interval.astype(int),
        segment_start=seg_start,
        segment_stop=seg_stop,
        segment_piece=data.segment_piece[seg_of].astype(int),
        segment_covariates=data.segment_covariates[seg_of],
        interval_end_segment=interval_end.astype(int),
        grid=data.grid,
        piece_labels=list(data.piece_labels),
        counts={
            "subjects": len(ids),
            "visit_intervals": int(n_intervals.sum()),
            "segments": int(len(seg_sub)),
        },
    )
    return intervals, seg_of


def visit_intervals_of(
    data: CountingProcessData,
) -> tuple[VisitIntervalData, np.ndarray, np.ndarray]:
    """Each subject's counting-process outcome as visit intervals.

    The visits of a subject are its entry, the lower bound of an interval-censored event
    when it is after entry, and the end of its follow-up (the event time, censoring time
    or upper bound), so the outcome is the last interval or none:

    - observed at ``T``: visits ``(entry, T)``, value 1 (an event dated exactly at the
      visit, see :func:`~magbayes.models.survival.likelihood.visit_interval_log_likelihood`);
    - right-censored at ``C``: visits ``(entry, C)``, value 0;
    - interval-censored in ``(L, R]``: visits ``(entry, L, R)``, value 2 (or ``(entry, R)``
      and value 1 when ``L`` is the entry).

    An interval's lower bound must lie in the subject's follow-up (not in a gap between
    its rows).

    Parameters
    ----------
    data : CountingProcessData
        From :func:`counting_process_arrays`.

    Returns
    -------
    intervals : VisitIntervalData
        The same subjects, in the same order.
    value : numpy.ndarray of int64
        Per subject: the visit interval that holds the event, 0 when right-censored.
    segment_of : numpy.ndarray of int
        The segment of ``data`` that holds each segment of ``intervals`` (to select a
        linear predictor computed on ``data``).

    Raises
    ------
    CountingProcessError
        When an interval's lower bound falls in a gap of the subject's rows.
    """
    two = (data.event_type == INTERVAL) & (data.lower > data.entry)
    visits = np.full((data.n_subjects, 3 if two.any() else 2), np.nan)
    visits[:, 0] = data.entry
    visits[:, 1] = np.where(two, data.lower, data.upper)
    visits[two, -1] = data.upper[two]
    intervals, segment_of = _split_at_visits(data, visits)
    value = np.where(data.event_type == RIGHT, 0, intervals.n_intervals).astype("int64")
    return intervals, value, segment_of
