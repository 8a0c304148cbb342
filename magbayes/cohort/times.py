"""Times in a cohort file: ISO dates or decimal years since symptom onset, one per file.

Dates are converted to years since that patient's onset (``onset_date`` in patients)
with 365.25-day years, so every table ends up on one axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from magbayes.cohort.columns import ProblemLog, read_column
from magbayes.cohort.raw import RawTable
from magbayes.cohort.values import date_rule, number_rule

#: Length of a year in days for converting dates to years since onset.
DAYS_PER_YEAR: float = 365.25

DATES = "dates"
YEARS = "years"

#: Time columns of visits.csv: convention -> (time column, stop column).
VISIT_TIME_COLUMNS: dict[str, tuple[str, str | None]] = {
    DATES: ("date", None),
    YEARS: ("years_since_onset", None),
}

#: Time columns of treatments.csv: convention -> (start column, stop column).
COURSE_TIME_COLUMNS: dict[str, tuple[str, str | None]] = {
    DATES: ("date", "stop_date"),
    YEARS: ("start_years", "stop_years"),
}


@dataclass(frozen=True)
class TimeConvention:
    """How one file gives its times.

    Attributes
    ----------
    name : str
        ``"dates"`` (ISO dates) or ``"years"`` (decimal years since onset).
    start : str
        Column holding the time of the visit, or the start of the course.
    stop : str or None
        Column holding the end of the course, when the file has one.
    """

    name: str
    start: str
    stop: str | None

    @property
    def uses_dates(self) -> bool:
        """Whether times are ISO dates (and need the patients' onset dates)."""
        return self.name == DATES


def detect_convention(
    table: RawTable, options: dict[str, tuple[str, str | None]], log: ProblemLog
) -> TimeConvention | None:
    """Which time convention a file uses; ``None`` (with a problem noted) if not exactly one.

    Parameters
    ----------
    table : RawTable
        The file.
    options : dict
        :data:`VISIT_TIME_COLUMNS` or :data:`COURSE_TIME_COLUMNS`.
    log : ProblemLog
        Receives a problem for a file that mixes conventions or has no time column.
    """
    rows_using = {name: _rows_with_values(table, cols) for name, cols in options.items()}
    in_use = [name for name, rows in rows_using.items() if rows]
    if len(in_use) > 1:
        log.add(table.label, None, None, "", _mixed_words(options, rows_using))
        return None
    present = [name for name, cols in options.items() if any(table.has(c) for c in cols if c)]
    name = in_use[0] if in_use else (present[0] if present else None)
    if name is None:
        dates_column, years_column = options[DATES][0], options[YEARS][0]
        log.add(
            table.label,
            None,
            None,
            "",
            f"a time column: '{years_column}' (decimal years since symptom onset) "
            f"or '{dates_column}' (ISO dates, YYYY-MM-DD)",
        )
        return None
    start, stop = options[name]
    if not table.has(start):
        log.add(table.label, None, start, "", f"a column named '{start}' (required)")
        return None
    return TimeConvention(name=name, start=start, stop=stop if stop and table.has(stop) else None)


def _rows_with_values(table: RawTable, columns: tuple[str, str | None]) -> list[int]:
    used = pd.Series(False, index=table.frame.index)
    for column in columns:
        if column and table.has(column):
            used |= table.frame[column] != ""
    return [int(row) for row in table.frame.index[used]]


def _mixed_words(options: dict[str, tuple[str, str | None]], rows_using: dict[str, list[int]]):
    def rows(numbers: list[int]) -> str:
        shown = ", ".join(str(n) for n in numbers[:8])
        return shown + (", ..." if len(numbers) > 8 else "")

    dates_columns = " / ".join(c for c in options[DATES] if c)
    years_columns = " / ".join(c for c in options[YEARS] if c)
    return (
        "one time convention per file, not both: ISO dates "
        f"('{dates_columns}', rows {rows(rows_using[DATES])}) or decimal years since onset "
        f"('{years_columns}', rows {rows(rows_using[YEARS])})"
    )


def read_times(
    table: RawTable,
    column: str,
    convention: TimeConvention,
    patient_ids: pd.Series,
    onsets: dict[str, datetime],
    log: ProblemLog,
    *,
    required: bool,
) -> tuple[pd.Series, pd.Series]:
    """Read one time column and put it on the years-since-onset axis.

    Parameters
    ----------
    table : RawTable
        The file.
    column : str
        The time column to read.
    convention : TimeConvention
        The file's convention.
    patient_ids : pandas.Series
        Patient of each row (``None`` where unknown), to find the onset date.
    onsets : dict
        Onset date of each patient (only needed for dates).
    log : ProblemLog
        Receives unreadable or missing values.
    required : bool
        Whether an empty cell is a problem (an empty stop means "ongoing").

    Returns
    -------
    years : pandas.Series
        Years since onset (float; NaN where empty, unreadable or without an onset date).
    dates : pandas.Series
        The dates themselves (datetime64; all NaT for a file in years).
    """
    if not convention.uses_dates:
        example = "4.5".replace(".", table.file_format.decimal)
        rule = number_rule(f"decimal years since symptom onset, e.g. {example}", table.file_format)
        values = read_column(table, column, rule, log, required=required)
        years = values.astype(float)
        return years, pd.Series(pd.NaT, index=years.index, dtype="datetime64[ns]")
    rule = date_rule("dates in this file are converted to years since onset", table.file_format)
    dates = read_column(table, column, rule, log, required=required)
    years = [
        years_between(onsets[pid], when) if when is not None and pid in onsets else np.nan
        for pid, when in zip(patient_ids, dates, strict=True)
    ]
    return (
        pd.Series(years, index=dates.index, dtype=float),
        pd.to_datetime(dates),
    )


def years_between(onset: datetime, when: datetime) -> float:
    """Years (of 365.25 days) from ``onset`` to ``when``; negative if ``when`` is earlier."""
    return ((when - onset) / timedelta(days=1)) / DAYS_PER_YEAR


def check_after_onset(
    table: RawTable,
    column: str,
    years: pd.Series,
    convention: TimeConvention,
    patient_ids: pd.Series,
    onsets: dict[str, datetime],
    log: ProblemLog,
    *,
    what: str,
) -> None:
    """Note every time before symptom onset (negative years since onset).

    Parameters
    ----------
    what : str
        What the time is, for the message (``"a visit"``, ``"a course start"``).
    """
    for row in years.index[years < 0]:
        text = table.frame.at[row, column]
        if convention.uses_dates:
            onset = onsets[patient_ids[row]].date().isoformat()
            expected = f"{what} on or after symptom onset (onset_date {onset})"
        else:
            expected = f"{what} on or after symptom onset: years since onset >= 0"
        log.add(table.label, int(row), column, text, expected, kind=f"{what} before onset")
