"""Checking a cohort's three tables and typing them, collecting every problem at once.

:func:`check_tables` reads the text tables made by :mod:`magbayes.cohort.raw`, parses
every cell, checks each row and the links between files (CONTRACT.md section 2), and
returns typed tables on the years-since-onset axis together with the list of problems.
It raises nothing: :func:`magbayes.cohort.read.load_cohort` raises one
:class:`~magbayes.errors.CohortError` with all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from magbayes.cohort.columns import ProblemLog, read_column, read_extra_column, require_columns
from magbayes.cohort.follow_up import (
    END_COLUMNS,
    check_against_visits,
    detect_end_convention,
    read_end_of_follow_up,
)
from magbayes.cohort.raw import RawTable
from magbayes.cohort.tables import PATIENT_NUMERIC, PATTERNS, RESPONSES, SCORES, TREATMENTS
from magbayes.cohort.times import (
    COURSE_TIME_COLUMNS,
    VISIT_TIME_COLUMNS,
    TimeConvention,
    check_after_onset,
    detect_convention,
    read_times,
)
from magbayes.cohort.values import choice_rule, date_rule, number_rule, text_rule
from magbayes.errors import Problem

#: What each score is, for messages.
SCORE_NAMES: dict[str, str] = {
    "incat": "INCAT disability score",
    "onls": "Overall Neuropathy Limitations Scale",
    "mrs": "modified Rankin scale",
    "irods": "I-RODS centile",
}

#: What each optional numeric patient column measures, with its unit.
PATIENT_NUMERIC_NAMES: dict[str, str] = {
    "age_at_onset": "age at symptom onset, years",
    "anti_mag_titer_btu": "anti-MAG titre, Bühlmann titre units",
    "sural_snap_uv": "sural SNAP amplitude at the first nerve conduction study, µV; 0 = absent",
    "first_ncs_years": "time of the first nerve conduction study, years since onset",
    "median_dml_ms": "median distal motor latency, ms",
    "ulnar_dml_ms": "ulnar distal motor latency, ms",
    "peroneal_dml_ms": "peroneal distal motor latency, ms",
    "median_mcv_ms": "median motor conduction velocity, m/s",
    "ulnar_mcv_ms": "ulnar motor conduction velocity, m/s",
    "peroneal_mcv_ms": "peroneal motor conduction velocity, m/s",
    "median_cmap_mv": "median distal CMAP amplitude, mV",
    "ulnar_cmap_mv": "ulnar distal CMAP amplitude, mV",
    "peroneal_cmap_mv": "peroneal distal CMAP amplitude, mV",
    "tli_median": "median terminal latency index",
    "tli_ulnar": "ulnar terminal latency index",
}

#: Sexes as patients.csv writes them.
SEXES: tuple[str, ...] = ("F", "M")

#: Treatments whose courses may overlap: ``other`` covers several different drugs.
OVERLAP_ALLOWED: tuple[str, ...] = ("other",)

_PATIENT_COLUMNS = {
    "patient_id",
    "site",
    "onset_date",
    "sex",
    "pattern",
    *PATIENT_NUMERIC,
    *END_COLUMNS,
}
_VISIT_COLUMNS = {"patient_id", "date", "years_since_onset", *SCORES}
_COURSE_COLUMNS = {
    "patient_id",
    "treatment",
    "line",
    "date",
    "stop_date",
    "start_years",
    "stop_years",
    "response",
}


@dataclass
class CheckedPatients:
    """The patients table after checking, and what the other files need from it.

    Attributes
    ----------
    label : str
        File name for messages.
    frame : pandas.DataFrame or None
        Typed table (``patient_id`` as a column), or ``None`` if it could not be read.
    known_ids : set of str or None
        Patient identifiers listed; ``None`` when unknown (the other files are then not
        checked against it).
    onsets : dict
        Onset date of each patient that has a valid one.
    """

    label: str
    frame: pd.DataFrame | None = None
    known_ids: set[str] | None = None
    onsets: dict[str, datetime] = field(default_factory=dict)


@dataclass
class CheckedCohort:
    """Typed tables (``None`` where a file could not be read) and every problem found."""

    patients: pd.DataFrame | None
    visits: pd.DataFrame | None
    treatments: pd.DataFrame | None
    problems: list[Problem]


def check_tables(
    patients: RawTable | None,
    visits: RawTable | None,
    treatments: RawTable | None,
    *,
    patients_label: str = "patients.csv",
) -> CheckedCohort:
    """Check a cohort's three text tables together.

    Parameters
    ----------
    patients, visits, treatments : RawTable or None
        The files as text (``None`` for a file that could not be read; its problem is
        already known to the caller).
    patients_label : str
        Name of the patients file for messages when ``patients`` is ``None``.

    Returns
    -------
    CheckedCohort
        Typed tables on the years-since-onset axis and the problems, in the order found.
    """
    log = ProblemLog()
    visit_times = detect_convention(visits, VISIT_TIME_COLUMNS, log) if visits is not None else None
    course_times = (
        detect_convention(treatments, COURSE_TIME_COLUMNS, log) if treatments is not None else None
    )
    end_times = detect_end_convention(patients, log) if patients is not None else None
    files_with_dates = [
        table.label
        for table, times in ((visits, visit_times), (treatments, course_times))
        if table is not None and times is not None and times.uses_dates
    ]
    if patients is not None and end_times is not None and end_times.uses_dates:
        files_with_dates.append(f"{patients.label} ({end_times.start})")
    checked = check_patients(
        patients, files_with_dates, log, label=patients_label, end_times=end_times
    )
    visit_frame = check_visits(visits, visit_times, checked, log) if visits is not None else None
    if patients is not None and checked.frame is not None and visits is not None:
        check_against_visits(patients, end_times, checked.frame, visit_frame, visits.label, log)
    course_frame = (
        check_treatments(treatments, course_times, checked, log) if treatments is not None else None
    )
    return CheckedCohort(checked.frame, visit_frame, course_frame, log.problems)


# ---------------------------------------------------------------------------- patients
def check_patients(
    table: RawTable | None,
    files_with_dates: list[str],
    log: ProblemLog,
    *,
    label: str,
    end_times: TimeConvention | None = None,
) -> CheckedPatients:
    """Check patients.csv: identifiers, sites, onset dates, categories, measurements, end.

    Parameters
    ----------
    table : RawTable or None
        The file.
    files_with_dates : list of str
        Files that give ISO dates; each patient then needs an ``onset_date``.
    log : ProblemLog
        Receives the problems.
    label : str
        File name for messages when ``table`` is ``None``.
    end_times : TimeConvention, optional
        Convention of the end-of-follow-up times (:mod:`magbayes.cohort.follow_up`);
        ``None`` when the file gives none.
    """
    if table is None:
        return CheckedPatients(label=label)
    require_columns(table, ("patient_id", "site"), log)
    if not table.has("patient_id"):
        return CheckedPatients(label=table.label)
    if table.frame.empty:
        log.add(table.label, None, None, "", "at least one patient row (only a header was found)")
    ids = read_column(table, "patient_id", text_rule("a patient identifier"), log, required=True)
    _check_unique(table, ids, log)
    columns: dict[str, pd.Series] = {"patient_id": ids}
    if table.has("site"):
        site_rule = text_rule("the hospital or centre")
        columns["site"] = read_column(table, "site", site_rule, log, required=True)
    onsets = _read_onsets(table, ids, files_with_dates, log, columns)
    columns |= read_end_of_follow_up(table, end_times, ids, onsets, log)
    columns |= _read_patient_categories(table, log)
    columns |= _read_patient_measurements(table, log)
    columns |= _read_extras(table, _PATIENT_COLUMNS, log)
    frame = pd.DataFrame(columns, index=table.frame.index).reset_index(drop=True)
    derived = [c for c in ("end_years", "end_lower_years") if c in frame and not table.has(c)]
    frame = frame[[column for column in table.frame.columns if column in frame] + derived].copy()
    frame["patient_id"] = frame["patient_id"].astype("string")
    if "site" in frame:
        frame["site"] = frame["site"].astype("string")
    known = {pid for pid in ids if pid is not None}
    return CheckedPatients(label=table.label, frame=frame, known_ids=known, onsets=onsets)


def _check_unique(table: RawTable, ids: pd.Series, log: ProblemLog) -> None:
    first_row: dict[str, int] = {}
    for row, pid in ids.items():
        if pid is None:
            continue
        if pid in first_row:
            log.add(
                table.label,
                int(row),
                "patient_id",
                pid,
                f"a unique patient_id (already used in row {first_row[pid]})",
            )
        else:
            first_row[pid] = int(row)


def _read_onsets(
    table: RawTable,
    ids: pd.Series,
    files_with_dates: list[str],
    log: ProblemLog,
    columns: dict[str, pd.Series],
) -> dict[str, datetime]:
    """Onset date of each patient; adds the ``onset_date`` column to ``columns``."""
    because = f"{' and '.join(files_with_dates)} give dates" if files_with_dates else ""
    if not table.has("onset_date"):
        if files_with_dates:
            log.add(
                table.label,
                None,
                "onset_date",
                "",
                f"a column named 'onset_date' (ISO date of symptom onset): {because}, "
                "which are counted from onset",
            )
        return {}
    onset = read_column(
        table,
        "onset_date",
        date_rule("symptom onset", table.file_format),
        log,
        required=bool(files_with_dates),
        required_because=because,
    )
    columns["onset_date"] = pd.to_datetime(onset)
    return {
        pid: when
        for pid, when in zip(ids, onset, strict=True)
        if pid is not None and when is not None
    }


def _read_patient_categories(table: RawTable, log: ProblemLog) -> dict[str, pd.Series]:
    rules = {
        "sex": choice_rule(SEXES, "sex"),
        "pattern": choice_rule(PATTERNS, "electrophysiological pattern"),
    }
    return {
        column: read_column(table, column, rule, log).astype("string")
        for column, rule in rules.items()
        if table.has(column)
    }


def _read_patient_measurements(table: RawTable, log: ProblemLog) -> dict[str, pd.Series]:
    columns = {}
    for column, (lower, zero_allowed) in PATIENT_NUMERIC.items():
        if not table.has(column):
            continue
        meaning = PATIENT_NUMERIC_NAMES.get(column, column)
        if zero_allowed:
            rule = number_rule(meaning, table.file_format, minimum=lower)
        else:
            rule = number_rule(meaning, table.file_format, above=lower)
        columns[column] = read_column(table, column, rule, log).astype(float)
    return columns


def _read_extras(table: RawTable, defined: set[str], log: ProblemLog) -> dict[str, pd.Series]:
    return {
        column: read_extra_column(table, column, log)
        for column in table.frame.columns
        if column not in defined
    }


def _read_patient_ids(table: RawTable, patients: CheckedPatients, log: ProblemLog) -> pd.Series:
    """The ``patient_id`` of each row, each checked against patients.csv."""
    ids = read_column(table, "patient_id", text_rule("a patient identifier"), log, required=True)
    if patients.known_ids is None:
        return ids
    for row, pid in ids.items():
        if pid is not None and pid not in patients.known_ids:
            log.add(
                table.label, int(row), "patient_id", pid, f"a patient_id listed in {patients.label}"
            )
    return ids


# ---------------------------------------------------------------------------- visits
def check_visits(
    table: RawTable,
    times: TimeConvention | None,
    patients: CheckedPatients,
    log: ProblemLog,
) -> pd.DataFrame | None:
    """Check visits.csv: known patients, times after onset, scores in range, a score per row.

    Returns
    -------
    pandas.DataFrame or None
        ``patient_id``, ``years_since_onset``, the scores, ``source_row``, ``date`` when
        the file gives dates, and any extra columns; ``None`` without ``patient_id``.
    """
    if not require_columns(table, ("patient_id",), log):
        return None
    if table.frame.empty:
        log.add(table.label, None, None, "", "at least one visit row (only a header was found)")
    ids = _read_patient_ids(table, patients, log)
    columns: dict[str, pd.Series] = {"patient_id": ids.astype("string")}
    columns |= _read_visit_times(table, times, ids, patients, log)
    columns |= _read_scores(table, log)
    columns |= _read_extras(table, _VISIT_COLUMNS, log)
    frame = pd.DataFrame(columns, index=table.frame.index)
    return frame.reset_index()


def _read_visit_times(
    table: RawTable,
    times: TimeConvention | None,
    ids: pd.Series,
    patients: CheckedPatients,
    log: ProblemLog,
) -> dict[str, pd.Series]:
    if times is None:
        return {"years_since_onset": pd.Series(np.nan, index=table.frame.index)}
    years, dates = read_times(table, times.start, times, ids, patients.onsets, log, required=True)
    check_after_onset(table, times.start, years, times, ids, patients.onsets, log, what="a visit")
    columns = {"years_since_onset": years}
    if times.uses_dates:
        columns["date"] = dates
    return columns


def _read_scores(table: RawTable, log: ProblemLog) -> dict[str, pd.Series]:
    present = [score for score in SCORES if table.has(score)]
    if not present:
        log.add(
            table.label,
            None,
            None,
            "",
            f"at least one score column: {', '.join(SCORES)}",
        )
        return {}
    columns = {}
    for score in present:
        low, high, integer = SCORES[score]
        rule = number_rule(
            SCORE_NAMES[score], table.file_format, minimum=low, maximum=high, integer=integer
        )
        values = read_column(table, score, rule, log)
        columns[score] = values.astype("Float64").astype("Int64" if integer else "Float64")
    _check_each_visit_scored(table, present, log)
    return columns


def _check_each_visit_scored(table: RawTable, scores: list[str], log: ProblemLog) -> None:
    empty = (table.frame[scores] == "") | (table.frame[scores] == "NA")
    for row in table.frame.index[empty.all(axis=1)]:
        log.add(
            table.label,
            int(row),
            None,
            "",
            f"at least one score in each visit row ({', '.join(scores)}): this row has none",
        )


# ---------------------------------------------------------------------------- treatments
def check_treatments(
    table: RawTable,
    times: TimeConvention | None,
    patients: CheckedPatients,
    log: ProblemLog,
) -> pd.DataFrame | None:
    """Check treatments.csv: known patients, treatments, lines, start/stop, overlaps.

    Returns
    -------
    pandas.DataFrame or None
        ``patient_id``, ``treatment``, ``line``, ``start_years``, ``stop_years`` (NaN =
        ongoing), ``response``, ``source_row``, ``date``/``stop_date`` when the file gives
        dates, and any extra columns; ``None`` without the required columns.
    """
    if not require_columns(table, ("patient_id", "treatment", "line"), log):
        return None
    ids = _read_patient_ids(table, patients, log)
    treatment_rule = choice_rule(TREATMENTS, "treatment")
    line_rule = number_rule(
        "treatment line: 1 = first line", table.file_format, minimum=1, integer=True
    )
    columns: dict[str, pd.Series] = {
        "patient_id": ids.astype("string"),
        "treatment": read_column(table, "treatment", treatment_rule, log, required=True),
        "line": read_column(table, "line", line_rule, log, required=True),
    }
    columns |= _read_course_times(table, times, ids, patients, log)
    if table.has("response"):
        response_rule = choice_rule(RESPONSES, "clinician's rating of the course")
        columns["response"] = read_column(table, "response", response_rule, log)
    columns |= _read_extras(table, _COURSE_COLUMNS, log)
    frame = pd.DataFrame(columns, index=table.frame.index)
    if times is not None:
        _check_overlaps(table, frame, times, log)
    frame["treatment"] = frame["treatment"].astype("string")
    frame["line"] = frame["line"].astype("Float64").astype("Int64")
    if "response" in frame:
        frame["response"] = frame["response"].astype("string")
    return frame.reset_index()


def _read_course_times(
    table: RawTable,
    times: TimeConvention | None,
    ids: pd.Series,
    patients: CheckedPatients,
    log: ProblemLog,
) -> dict[str, pd.Series]:
    nothing = pd.Series(np.nan, index=table.frame.index)
    if times is None:
        return {"start_years": nothing, "stop_years": nothing}
    onsets = patients.onsets
    start, start_dates = read_times(table, times.start, times, ids, onsets, log, required=True)
    check_after_onset(table, times.start, start, times, ids, onsets, log, what="a course start")
    columns = {"start_years": start, "stop_years": nothing}
    if times.uses_dates:
        columns["date"] = start_dates
    if times.stop is None:
        return columns
    stop, stop_dates = read_times(table, times.stop, times, ids, onsets, log, required=False)
    _check_stop_after_start(table, times, start, stop, log)
    columns["stop_years"] = stop
    if times.uses_dates:
        columns["stop_date"] = stop_dates
    return columns


def _check_stop_after_start(
    table: RawTable, times: TimeConvention, start: pd.Series, stop: pd.Series, log: ProblemLog
) -> None:
    for row in table.frame.index[stop < start]:
        log.add(
            table.label,
            int(row),
            times.stop,
            table.frame.at[row, times.stop],
            f"a stop on or after the start ({times.start} {table.frame.at[row, times.start]})",
        )


def _check_overlaps(
    table: RawTable, frame: pd.DataFrame, times: TimeConvention, log: ProblemLog
) -> None:
    """Note each course that overlaps an earlier course of the same treatment, same patient."""
    courses = frame.dropna(subset=["patient_id", "treatment", "start_years"])
    courses = courses[~courses["treatment"].isin(OVERLAP_ALLOWED)]
    courses = courses[~(courses["stop_years"] < courses["start_years"])]  # reported already
    for _, group in courses.groupby(["patient_id", "treatment"], sort=False):
        group = group.sort_values("start_years", kind="stable")
        rows = list(group.index)
        for later_position, later in enumerate(rows):
            for earlier in rows[:later_position]:
                if _overlap(group, earlier, later):
                    _note_overlap(table, frame, times, earlier, later, log)
                    break


def _overlap(courses: pd.DataFrame, first: int, second: int) -> bool:
    """Whether two courses share time; an ongoing course (no stop) never ends."""

    def stop(row: int) -> float:
        value = courses.at[row, "stop_years"]
        return math.inf if pd.isna(value) else float(value)

    start_a, start_b = courses.at[first, "start_years"], courses.at[second, "start_years"]
    if start_a == start_b:
        return True
    return start_a < stop(second) and start_b < stop(first)


def _note_overlap(
    table: RawTable,
    frame: pd.DataFrame,
    times: TimeConvention,
    earlier: int,
    later: int,
    log: ProblemLog,
) -> None:
    start_text = table.frame.at[earlier, times.start]
    stop_text = table.frame.at[earlier, times.stop] if times.stop else ""
    treatment = frame.at[later, "treatment"]
    log.add(
        table.label,
        int(later),
        times.start,
        table.frame.at[later, times.start],
        f"no overlap with the {treatment} course in row {earlier} ({start_text} to "
        f"{stop_text or 'ongoing'}): two courses of one treatment cannot run at once "
        "(courses of different treatments may)",
    )
