"""A longitudinal table and an event table as the plain arrays of a joint model.

Nothing here knows about magbayes cohorts. Two tables, both pandas DataFrames:

longitudinal table
    One row per measurement: subject, time, value. Values are numbers (a Gaussian
    outcome such as log bilirubin) or integer categories (an ordinal outcome such as a
    histologic stage).
event table
    One row per subject: subject, stop time (the event time, the end of follow-up, or the
    upper bound of an interval-censored event), event flag (1: event, 0: censored), an
    optional lower time (an event known only to lie in ``(lower, stop]``), and numeric
    covariates. Its covariates are constant within a subject, so the same columns can
    also shape the longitudinal trajectory (``level_covariates``, ``slope_covariates``).

:func:`joint_arrays` checks both tables and lists every problem it finds with the table,
row and column (:class:`JointDataError`); rows are numbered as in a CSV file read into the
frame unchanged (header = row 1, the frame's first row = row 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from magbayes.errors import Problem, problem_lines

#: Kinds of longitudinal outcome.
OUTCOMES = ("gaussian", "ordinal")

#: Kinds of event outcome, per subject.
RIGHT, OBSERVED, INTERVAL = 0, 1, 2


class JointDataError(ValueError):
    """The longitudinal or event table has problems; ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in joint-model data:\n"
            + "\n".join(f"  - {line}" for line in problem_lines(self.problems))
        )


@dataclass(kw_only=True)
class JointData:
    """Measurements and events of subjects, as plain arrays.

    The latent trajectory of subject ``i`` is linear in time::

        m_i(t) = level_i + slope_i * t
        level_i = beta_0 + z_i' gamma + b0_i
        slope_i = beta_1 + w_i' delta + b1_i

    with ``z_i`` the level covariates, ``w_i`` the slope covariates (``time`` interactions)
    and ``(b0_i, b1_i)`` the subject's random intercept and slope.

    Attributes
    ----------
    subject_ids : list
        Subject labels (order of the per-subject arrays: that of the event table).
    outcome : {"gaussian", "ordinal"}
        Kind of longitudinal value.
    measurement_subject : numpy.ndarray of int
        Subject index of each measurement.
    measurement_time : numpy.ndarray
        Time of each measurement (time unit, >= 0).
    measurement_value : numpy.ndarray
        Gaussian: the value. Ordinal: the category index 0, ..., K-1 (of ``categories``).
    categories : list or None
        Ordinal: the categories in increasing order (as in the table).
    level_covariates, slope_covariates : numpy.ndarray
        Shape (subject, covariate): subject-level covariates of the trajectory's level and
        of its slope (per unit time).
    level_covariate_names, slope_covariate_names : list of str
        Their columns in the event table.
    event_type : numpy.ndarray of int
        Per subject: 0 right-censored at ``stop``, 1 event at ``stop``, 2 event in
        ``(lower, stop]``.
    stop : numpy.ndarray
        Per subject: event time, censoring time or upper bound (time unit, > 0).
    lower : numpy.ndarray
        Per subject: lower bound of an interval-censored event, NaN otherwise.
    event_covariates : numpy.ndarray
        Shape (subject, covariate): covariates of the log hazard.
    event_covariate_names : list of str
        Their columns.
    time_unit : str
        Unit of all times (in labels only).
    counts : dict
        Numbers of subjects, measurements, events of each kind.
    """

    subject_ids: list
    outcome: str
    measurement_subject: np.ndarray
    measurement_time: np.ndarray
    measurement_value: np.ndarray
    categories: list | None
    level_covariates: np.ndarray
    slope_covariates: np.ndarray
    level_covariate_names: list[str]
    slope_covariate_names: list[str]
    event_type: np.ndarray
    stop: np.ndarray
    lower: np.ndarray
    event_covariates: np.ndarray
    event_covariate_names: list[str]
    time_unit: str = "y"
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return len(self.subject_ids)

    @property
    def n_measurements(self) -> int:
        """Number of longitudinal measurements."""
        return len(self.measurement_subject)

    @property
    def trajectory_terms(self) -> list[str]:
        """Names of the trajectory's fixed effects: level terms, then slope terms.

        ``intercept``, the level covariates, ``time``, then ``time:<covariate>`` for each
        slope covariate.
        """
        level = ["intercept", *self.level_covariate_names]
        slope = ["time"] + [f"time:{c}" for c in self.slope_covariate_names]
        return level + slope

    def trajectory_design(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-subject design of the trajectory's level and slope.

        Returns
        -------
        level, slope : numpy.ndarray
            Shape (subject, term), over :attr:`trajectory_terms`: ``level @ beta`` is the
            fixed-effect level of each subject and ``slope @ beta`` its fixed-effect slope
            (per unit time); each term is in exactly one of them.
        """
        n = self.n_subjects
        n_level = 1 + len(self.level_covariate_names)
        n_slope = 1 + len(self.slope_covariate_names)
        level = np.zeros((n, n_level + n_slope))
        slope = np.zeros_like(level)
        level[:, 0] = 1.0
        level[:, 1:n_level] = self.level_covariates
        slope[:, n_level] = 1.0
        slope[:, n_level + 1 :] = self.slope_covariates
        return level, slope

    @property
    def interval_lower(self) -> np.ndarray:
        """Per subject: ``lower`` for interval-censored events, else ``stop`` (time unit)."""
        return np.where(self.event_type == INTERVAL, self.lower, self.stop)


def _row(frame: pd.DataFrame, position: int) -> int:
    """Row number of a frame position as in its CSV file (header = row 1)."""
    return int(position) + 2


def _numeric(
    frame: pd.DataFrame, column: str, source: str, problems: list[Problem], *, allow_missing=False
) -> np.ndarray:
    """A column as floats, each non-numeric (or missing) cell a problem."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if allow_missing:
        bad &= raw.notna().to_numpy()
    for p in np.nonzero(bad)[0]:
        cell = raw.iat[p]
        problems.append(
            Problem(
                source,
                _row(frame, p),
                column,
                "" if pd.isna(cell) else str(cell),
                "a finite number" + (" or an empty cell" if allow_missing else ""),
            )
        )
    return values


def _missing_columns(
    frame: pd.DataFrame, columns: Sequence[str], source: str, problems: list[Problem]
) -> bool:
    """Record each absent column; True when all are there."""
    absent = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    for c in absent:
        problems.append(
            Problem(source, None, c, "", f"a column {c!r} (columns: {list(frame.columns)})")
        )
    return not absent


def joint_arrays(
    longitudinal: pd.DataFrame,
    events: pd.DataFrame,
    *,
    outcome: str = "gaussian",
    id_col: str = "id",
    time_col: str = "time",
    value_col: str = "value",
    stop_col: str = "stop",
    event_col: str = "event",
    lower_col: str | None = None,
    event_covariates: Sequence[str] = (),
    level_covariates: Sequence[str] = (),
    slope_covariates: Sequence[str] = (),
    categories: Sequence[Any] | None = None,
    time_unit: str = "y",
    longitudinal_name: str = "longitudinal table",
    events_name: str = "event table",
) -> JointData:
    """Check a longitudinal and an event table and turn them into :class:`JointData`.

    Parameters
    ----------
    longitudinal : pandas.DataFrame
        One row per measurement: ``id_col``, ``time_col`` (time unit, >= 0, not after the
        subject's ``stop``), ``value_col``.
    events : pandas.DataFrame
        One row per subject: ``id_col``, ``stop_col`` (> 0), ``event_col`` (0 or 1),
        optionally ``lower_col`` and the covariate columns (numbers, none missing).
    outcome : {"gaussian", "ordinal"}
        Kind of longitudinal value (ordinal: integer categories).
    id_col, time_col, value_col, stop_col, event_col : str
        Column names.
    lower_col : str, optional
        Lower bound of an event time known only to lie in ``(lower, stop]`` (time unit,
        ``0 <= lower < stop``); empty for exact events and censored subjects. A subject with
        a lower bound must have ``event == 1``.
    event_covariates : sequence of str
        Event-table columns entering the log hazard.
    level_covariates, slope_covariates : sequence of str
        Event-table columns shifting the trajectory's level, and its slope (the
        ``covariate:time`` interaction).
    categories : sequence, optional
        Ordinal: the categories in increasing order (default: the sorted values seen).
    time_unit : str
        Unit of the times (in labels only).
    longitudinal_name, events_name : str
        How the two tables are named in error messages (their file names, say).

    Returns
    -------
    JointData

    Raises
    ------
    JointDataError
        Listing every problem: missing columns, non-numeric or missing cells, negative
        times, event flags other than 0/1, interval bounds outside ``[0, stop)`` or on a
        censored subject, duplicated subjects in the event table, measurements of subjects
        that are not in it or after their stop time, ordinal values outside the categories.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    problems: list[Problem] = []
    lo_name, ev_name = longitudinal_name, events_name
    covariate_cols = list(dict.fromkeys([*event_covariates, *level_covariates, *slope_covariates]))
    ev_cols = [id_col, stop_col, event_col, *([lower_col] if lower_col else []), *covariate_cols]
    ok_ev = _missing_columns(events, ev_cols, ev_name, problems)
    ok_lo = _missing_columns(longitudinal, [id_col, time_col, value_col], lo_name, problems)
    if not (ok_ev and ok_lo):
        raise JointDataError(problems)
    events = events.reset_index(drop=True)
    longitudinal = longitudinal.reset_index(drop=True)

    # ---- event table
    ids = events[id_col]
    for p in np.nonzero(ids.isna().to_numpy())[0]:
        problems.append(Problem(ev_name, _row(events, p), id_col, "", "a subject identifier"))
    duplicated = ids.duplicated(keep="first") & ids.notna()
    for p in np.nonzero(duplicated.to_numpy())[0]:
        problems.append(
            Problem(
                ev_name, _row(events, p), id_col, str(ids.iat[p]), "one row per subject (repeated)"
            )
        )
    stop = _numeric(events, stop_col, ev_name, problems)
    for p in np.nonzero(stop <= 0)[0]:
        problems.append(
            Problem(ev_name, _row(events, p), stop_col, f"{stop[p]:g}", "a time after 0")
        )
    flag = _numeric(events, event_col, ev_name, problems)
    for p in np.nonzero(np.isfinite(flag) & ~np.isin(flag, (0.0, 1.0)))[0]:
        problems.append(
            Problem(
                ev_name, _row(events, p), event_col, f"{flag[p]:g}", "0 (censored) or 1 (event)"
            )
        )
    event_type = np.where(flag == 1.0, OBSERVED, RIGHT)
    lower = np.full(len(events), np.nan)
    if lower_col:
        lower = _numeric(events, lower_col, ev_name, problems, allow_missing=True)
        given = np.isfinite(lower)
        for p in np.nonzero(given & ((lower < 0) | ~(lower < stop)))[0]:
            problems.append(
                Problem(
                    ev_name,
                    _row(events, p),
                    lower_col,
                    f"{lower[p]:g}",
                    f"a lower bound in [0, {stop_col}) ({stop_col} = {stop[p]:g})",
                )
            )
        for p in np.nonzero(given & (flag == 0.0))[0]:
            problems.append(
                Problem(
                    ev_name,
                    _row(events, p),
                    lower_col,
                    f"{lower[p]:g}",
                    f"an empty cell on a censored subject ({event_col} = 0)",
                )
            )
        event_type = np.where(given & (flag == 1.0), INTERVAL, event_type)
        lower = np.where(event_type == INTERVAL, lower, np.nan)
    x = {c: _numeric(events, c, ev_name, problems) for c in covariate_cols}

    # ---- longitudinal table
    index_of = {sid: i for i, sid in enumerate(ids) if not pd.isna(sid)}
    lo_ids = longitudinal[id_col]
    subject = np.array([index_of.get(s, -1) for s in lo_ids], dtype=int)
    for p in np.nonzero(subject < 0)[0]:
        problems.append(
            Problem(
                lo_name,
                _row(longitudinal, p),
                id_col,
                "" if pd.isna(lo_ids.iat[p]) else str(lo_ids.iat[p]),
                f"a subject of the {ev_name}",
            )
        )
    time = _numeric(longitudinal, time_col, lo_name, problems)
    for p in np.nonzero(time < 0)[0]:
        problems.append(
            Problem(lo_name, _row(longitudinal, p), time_col, f"{time[p]:g}", "a time >= 0")
        )
    known = subject >= 0
    late = np.zeros(len(longitudinal), bool)
    late[known] = time[known] > stop[subject[known]]
    for p in np.nonzero(late)[0]:
        problems.append(
            Problem(
                lo_name,
                _row(longitudinal, p),
                time_col,
                f"{time[p]:g}",
                f"a time no later than the subject's {stop_col} ({stop[subject[p]]:g})",
                kind="a measurement after the end of follow-up",
            )
        )
    category_list = None
    if outcome == "gaussian":
        value = _numeric(longitudinal, value_col, lo_name, problems)
    else:
        raw = longitudinal[value_col]
        seen = sorted(pd.unique(raw.dropna()).tolist())
        category_list = list(seen if categories is None else categories)
        lookup = {c: k for k, c in enumerate(category_list)}
        value = np.array([lookup.get(v, -1) for v in raw], dtype=np.int64)
        for p in np.nonzero(value < 0)[0]:
            cell = raw.iat[p]
            problems.append(
                Problem(
                    lo_name,
                    _row(longitudinal, p),
                    value_col,
                    "" if pd.isna(cell) else str(cell),
                    f"one of the categories {category_list}",
                )
            )
        if len(category_list) < 2:
            problems.append(
                Problem(lo_name, None, value_col, "", "at least two ordinal categories")
            )
    if problems:
        raise JointDataError(problems)

    def matrix(columns: Sequence[str]) -> np.ndarray:
        return np.column_stack([x[c] for c in columns]) if columns else np.zeros((len(ids), 0))

    counts = {
        "subjects": len(ids),
        "measurements": len(longitudinal),
        "subjects_without_measurements": int(len(ids) - len(np.unique(subject))),
        "events_observed_exactly": int(np.sum(event_type == OBSERVED)),
        "events_interval_censored": int(np.sum(event_type == INTERVAL)),
        "right_censored": int(np.sum(event_type == RIGHT)),
    }
    return JointData(
        subject_ids=list(ids),
        outcome=outcome,
        measurement_subject=subject,
        measurement_time=time,
        measurement_value=value,
        categories=category_list,
        level_covariates=matrix(level_covariates),
        slope_covariates=matrix(slope_covariates),
        level_covariate_names=list(level_covariates),
        slope_covariate_names=list(slope_covariates),
        event_type=event_type.astype(int),
        stop=stop,
        lower=lower,
        event_covariates=matrix(event_covariates),
        event_covariate_names=list(event_covariates),
        time_unit=time_unit,
        counts=counts,
    )
