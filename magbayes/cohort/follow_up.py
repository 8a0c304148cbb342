"""End of follow-up: when and why each patient's follow-up ended (optional columns).

patients.csv may say, per patient, when follow-up ended and why (CONTRACT.md section 1):

- ``end_years`` (decimal years since onset) or ``end_date`` (ISO date, counted from the
  patient's ``onset_date``), one or the other in a file, never both;
- ``end_reason``: ``death``, ``lost_to_follow_up``, ``study_end`` or ``other``, given
  exactly when an end time is given;
- ``end_lower_years`` / ``end_lower_date`` (same convention as the end): for a death only
  known to lie between two contacts, the earlier contact. The death then lies in
  ``(end_lower, end]`` (interval-censored).

:func:`detect_end_convention` and :func:`read_end_of_follow_up` read and check these columns
with the rest of patients.csv; :func:`check_against_visits` checks them against the
patient's visits once visits.csv is read; :func:`follow_up_table` gives the per-patient
table that :attr:`magbayes.cohort.Cohort.follow_up` shows. A cohort without these columns
reads exactly as before.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from magbayes.cohort.columns import ProblemLog, read_column
from magbayes.cohort.raw import RawTable
from magbayes.cohort.times import (
    DATES,
    YEARS,
    TimeConvention,
    check_after_onset,
    detect_convention,
    read_times,
)
from magbayes.cohort.values import choice_rule

#: Why follow-up may end (``end_reason``).
END_REASONS: tuple[str, ...] = ("death", "lost_to_follow_up", "study_end", "other")

#: The reason whose end is an event time (the others are censoring times).
DEATH = "death"

#: Time columns of the end of follow-up: convention -> (end column, lower-bound column).
END_TIME_COLUMNS: dict[str, tuple[str, str | None]] = {
    DATES: ("end_date", "end_lower_date"),
    YEARS: ("end_years", "end_lower_years"),
}

#: Every end-of-follow-up column patients.csv may have.
END_COLUMNS: frozenset[str] = frozenset(
    {"end_reason", *(column for pair in END_TIME_COLUMNS.values() for column in pair if column)}
)

#: Columns of :func:`follow_up_table`, in order.
FOLLOW_UP_COLUMNS: tuple[str, ...] = (
    "last_visit_years",
    "end_years",
    "end_reason",
    "end_lower_years",
    "died",
)

#: Two times on the years axis closer than this (years, about 30 ms) are the same time:
#: a date converted to years and the same date converted in another file may differ in
#: the last bits.
SAME_TIME_YEARS: float = 1e-9


def has_end_columns(table: RawTable) -> bool:
    """Whether patients.csv has any end-of-follow-up column."""
    return any(table.has(column) for column in END_COLUMNS)


def _has_time_columns(table: RawTable) -> bool:
    return any(table.has(c) for pair in END_TIME_COLUMNS.values() for c in pair if c)


def detect_end_convention(table: RawTable, log: ProblemLog) -> TimeConvention | None:
    """Whether the end times of patients.csv are dates or years; ``None`` when not given.

    Parameters
    ----------
    table : RawTable
        patients.csv.
    log : ProblemLog
        Receives a problem for a file that mixes ``end_date`` and ``end_years`` columns,
        or gives ``end_lower_*`` without its ``end_*`` column.

    Returns
    -------
    TimeConvention or None
        ``start`` is the end column, ``stop`` the lower-bound column (when present);
        ``None`` when the file has no end time column (or mixes them: noted).
    """
    if not _has_time_columns(table):
        return None
    return detect_convention(table, END_TIME_COLUMNS, log)


def read_end_of_follow_up(
    table: RawTable,
    convention: TimeConvention | None,
    patient_ids: pd.Series,
    onsets: dict[str, datetime],
    log: ProblemLog,
) -> dict[str, pd.Series]:
    """Read and check the end-of-follow-up columns of patients.csv, row by row.

    Checks, each noted with file, row and column: a reason outside :data:`END_REASONS`;
    a reason without an end time or an end time without a reason; an end or lower bound
    before onset; a lower bound without an end, after the end, or with a reason other
    than ``death``. The checks against visits come later (:func:`check_against_visits`).

    Parameters
    ----------
    table : RawTable
        patients.csv (its index is the row number in the file).
    convention : TimeConvention or None
        From :func:`detect_end_convention`; ``None`` when there is no end time column.
    patient_ids : pandas.Series
        ``patient_id`` of each row (``None`` where unreadable).
    onsets : dict
        Onset date of each patient (needed for dates).
    log : ProblemLog
        Receives the problems.

    Returns
    -------
    dict of pandas.Series
        ``end_years``, ``end_lower_years`` (float, years since onset, NaN where empty),
        ``end_reason`` (string), and ``end_date`` / ``end_lower_date`` (datetime) when the
        file gives dates; empty when the file has no end-of-follow-up column.
    """
    if not has_end_columns(table):
        return {}
    index = table.frame.index
    nothing = pd.Series(np.nan, index=index, dtype=float)
    columns: dict[str, pd.Series] = {}
    if table.has("end_reason"):
        rule = choice_rule(END_REASONS, "why follow-up ended")
        reason = read_column(table, "end_reason", rule, log).astype("string")
        columns["end_reason"] = reason
    else:
        reason = pd.Series(pd.NA, index=index, dtype="string")
    end, lower = nothing.copy(), nothing.copy()
    if convention is not None:
        end, end_dates = read_times(
            table, convention.start, convention, patient_ids, onsets, log, required=False
        )
        check_after_onset(
            table, convention.start, end, convention, patient_ids, onsets, log,
            what="an end of follow-up",
        )  # fmt: skip
        columns["end_years"] = end
        if convention.uses_dates:
            columns["end_date"] = end_dates
        if convention.stop is not None:
            lower, lower_dates = read_times(
                table, convention.stop, convention, patient_ids, onsets, log, required=False
            )
            check_after_onset(
                table, convention.stop, lower, convention, patient_ids, onsets, log,
                what="the last contact before a death",
            )  # fmt: skip
            columns["end_lower_years"] = lower
            if convention.uses_dates:
                columns["end_lower_date"] = lower_dates
    if convention is not None or not _has_time_columns(table):
        # (a file that mixes end_date and end_years is reported once, as a whole)
        _check_reason_and_time(table, convention, reason, log)
    if convention is not None and convention.stop is not None:
        _check_lower_bound(table, convention, end, lower, reason, log)
    return columns


def _given(table: RawTable, column: str | None) -> pd.Series:
    """Whether each row has text in ``column`` (all ``False`` for an absent column)."""
    if column is None or not table.has(column):
        return pd.Series(False, index=table.frame.index)
    return ~table.frame[column].isin(("", "NA"))


def _check_reason_and_time(
    table: RawTable, convention: TimeConvention | None, reason: pd.Series, log: ProblemLog
) -> None:
    """An end time needs a reason, and a reason needs an end time."""
    end_column = convention.start if convention is not None else END_TIME_COLUMNS[YEARS][0]
    has_time = _given(table, end_column)
    has_reason = _given(table, "end_reason")
    reasons = ", ".join(END_REASONS)
    for row in table.frame.index[has_time & ~has_reason]:
        log.add(
            table.label,
            int(row),
            "end_reason",
            "",
            f"why follow-up ended ({reasons}): {end_column} is "
            f"{table.frame.at[row, end_column]!r} in this row",
            kind="an end reason beside each end of follow-up",
        )
    for row in table.frame.index[has_reason & ~has_time]:
        if convention is None:
            where = "an 'end_years' (years since onset) or 'end_date' column"
        else:
            where = f"{end_column}"
        log.add(
            table.label,
            int(row),
            end_column,
            "",
            f"the end of follow-up ({where}): end_reason is "
            f"{table.frame.at[row, 'end_reason']!r} in this row",
            kind="an end of follow-up beside each end reason",
        )


def _check_lower_bound(
    table: RawTable,
    convention: TimeConvention,
    end: pd.Series,
    lower: pd.Series,
    reason: pd.Series,
    log: ProblemLog,
) -> None:
    """A lower bound needs an end, is not after it, and is given for deaths only."""
    lower_column, end_column = convention.stop, convention.start
    has_lower = _given(table, lower_column)
    has_end = _given(table, end_column)
    for row in table.frame.index[has_lower]:
        text = table.frame.at[row, lower_column]
        why = reason[row]
        if not has_end[row]:
            log.add(
                table.label,
                int(row),
                lower_column,
                text,
                f"{lower_column} only beside an {end_column}: the death lies between "
                f"{lower_column} (the last contact alive) and {end_column}",
                kind=f"{lower_column} without {end_column}",
            )
        elif not pd.isna(why) and why != DEATH:
            log.add(
                table.label,
                int(row),
                lower_column,
                text,
                f"{lower_column} only for a death known to lie between two contacts "
                f"(end_reason 'death'); end_reason is {why!r}: leave {lower_column} empty",
                kind=f"{lower_column} with a reason other than death",
            )
        elif lower[row] > end[row] + SAME_TIME_YEARS:
            log.add(
                table.label,
                int(row),
                lower_column,
                text,
                f"the last contact before the death on or before the end of follow-up "
                f"({end_column} {table.frame.at[row, end_column]})",
                kind=f"{lower_column} after {end_column}",
            )


def check_against_visits(
    table: RawTable,
    convention: TimeConvention | None,
    patients: pd.DataFrame,
    visits: pd.DataFrame | None,
    visits_label: str,
    log: ProblemLog,
) -> None:
    """Note each end (or lower bound) before the patient's last visit.

    A visit is a contact with the patient alive, so follow-up cannot end before it, and
    the last contact before a death is at or after it.

    Parameters
    ----------
    table : RawTable
        patients.csv; its rows are in the order of ``patients``.
    convention : TimeConvention or None
        The end times' convention (nothing is checked when ``None``).
    patients : pandas.DataFrame
        The checked patients table (``patient_id`` and ``end_years`` / ``end_lower_years``
        as columns), one row per row of ``table``, in the same order.
    visits : pandas.DataFrame or None
        The checked visits (``patient_id``, ``years_since_onset``, ``source_row``, ``date``
        when dated); nothing is checked when ``None``.
    visits_label : str
        visits.csv's name in messages.
    log : ProblemLog
        Receives the problems.
    """
    if convention is None or visits is None or "end_years" not in patients:
        return
    known = visits.dropna(subset=["patient_id", "years_since_onset"])
    if known.empty:
        return
    last_rows = known.loc[known.groupby("patient_id")["years_since_onset"].idxmax()]
    last = last_rows.set_index("patient_id")
    rows = table.frame.index
    checks = [(convention.start, "end_years", "an end of follow-up")]
    if convention.stop is not None and "end_lower_years" in patients:
        checks.append((convention.stop, "end_lower_years", "the last contact before a death"))
    for position, pid in enumerate(patients["patient_id"]):
        if pd.isna(pid) or pid not in last.index:
            continue
        visit = last.loc[pid]
        reason = patients["end_reason"].iat[position] if "end_reason" in patients else pd.NA
        for column, field, what in checks:
            if field == "end_lower_years" and not pd.isna(reason) and reason != DEATH:
                continue  # a lower bound beside another reason is reported already
            value = patients[field].iat[position]
            if pd.isna(value) or value >= visit["years_since_onset"] - SAME_TIME_YEARS:
                continue
            when = (
                f"date {pd.Timestamp(visit['date']).date().isoformat()}"
                if "date" in visit.index and not pd.isna(visit["date"])
                else f"years_since_onset {visit['years_since_onset']:g}"
            )
            row = int(rows[position])
            log.add(
                table.label,
                row,
                column,
                table.frame.at[rows[position], column],
                f"{what} on or after the patient's last visit ({visits_label} row "
                f"{int(visit['source_row'])}, {when}): a visit is a contact with the patient "
                "alive",
                kind=f"{what} before the last visit",
            )


def follow_up_table(patients: pd.DataFrame, visits: pd.DataFrame) -> pd.DataFrame:
    """When and why each patient's follow-up ended, on the years-since-onset axis.

    Parameters
    ----------
    patients : pandas.DataFrame
        A cohort's patients (indexed by ``patient_id``), with ``end_years``,
        ``end_reason`` and ``end_lower_years`` when the cohort gives them.
    visits : pandas.DataFrame
        A cohort's visits (``patient_id``, ``years_since_onset``).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id``, in the patients' order: ``last_visit_years`` (years
        since onset of the last visit; NaN without visits), ``end_years`` (years since
        onset; NaN where not given), ``end_reason`` (string; ``<NA>`` where not given),
        ``end_lower_years`` (the last contact before a death known only to lie between two
        contacts; NaN otherwise) and ``died`` (bool: ``end_reason == "death"``).
    """
    ids = patients.index
    last = visits.groupby("patient_id")["years_since_onset"].max()

    def column(name: str) -> pd.Series:
        if name in patients.columns:
            return pd.to_numeric(patients[name], errors="coerce").astype(float)
        return pd.Series(np.nan, index=ids, dtype=float)

    reason = (
        patients["end_reason"].astype("string")
        if "end_reason" in patients.columns
        else pd.Series(pd.NA, index=ids, dtype="string")
    )
    table = pd.DataFrame(
        {
            "last_visit_years": last.reindex(ids).astype(float),
            "end_years": column("end_years"),
            "end_reason": reason,
            "end_lower_years": column("end_lower_years"),
            "died": (reason == DEATH).fillna(False).astype(bool),
        },
        index=ids,
    )
    return table[list(FOLLOW_UP_COLUMNS)]


def follow_up_summary(table: pd.DataFrame) -> dict:
    """Counts of :func:`follow_up_table` for the cohort summary.

    Returns
    -------
    dict
        ``given`` and ``not_given`` (patients with / without an end of follow-up),
        ``by_reason`` (patients per reason, in :data:`END_REASONS` order),
        ``deaths_interval_censored`` (deaths known only between two contacts) and
        ``years_after_last_visit`` (min, median, max of end minus last visit, years).
    """
    given = table["end_years"].notna()
    after = (table["end_years"] - table["last_visit_years"])[given].dropna()
    reasons = table["end_reason"].value_counts()
    return {
        "given": int(given.sum()),
        "not_given": int((~given).sum()),
        "by_reason": {reason: int(reasons.get(reason, 0)) for reason in END_REASONS},
        "deaths_interval_censored": int((table["died"] & table["end_lower_years"].notna()).sum()),
        "years_after_last_visit": {
            "min": float(after.min()) if len(after) else float("nan"),
            "median": float(after.median()) if len(after) else float("nan"),
            "max": float(after.max()) if len(after) else float("nan"),
        },
    }
