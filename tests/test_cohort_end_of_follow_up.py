"""End of follow-up in patients.csv: end_years / end_date, end_reason, end_lower_*.

Every refusal names its file, row and column; cohorts without these columns read as
before; dates and years give the same follow-up table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from magbayes.cli import main
from magbayes.cohort.follow_up import FOLLOW_UP_COLUMNS
from magbayes.cohort.read import load_cohort
from magbayes.errors import CohortError, Problem

# Patients in rows 2-5; the comments give each patient's visits (years since onset).
PATIENTS = [
    ["patient_id", "site", "onset_date", "end_years", "end_reason", "end_lower_years"],
    ["P01", "Bordeaux", "2010-01-01", "5.0", "death", "4.0"],  # visits 1.0, 3.5
    ["P02", "Bordeaux", "2012-01-01", "2.0", "lost_to_follow_up", ""],  # visit 0.5
    ["P03", "Toulouse", "2011-01-01", "", "", ""],  # visit 2.0
    ["P04", "Toulouse", "2009-01-01", "6.0", "study_end", ""],  # no visit
]
VISITS = [
    ["patient_id", "years_since_onset", "incat"],
    ["P01", "1.0", "2"],  # row 2
    ["P01", "3.5", "3"],  # row 3
    ["P02", "0.5", "1"],  # row 4
    ["P03", "2.0", "0"],  # row 5
]
TREATMENTS = [["patient_id", "treatment", "line", "start_years", "stop_years"]]


def write_cohort(folder: Path, patients, visits=VISITS, treatments=TREATMENTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (
        ("patients.csv", patients),
        ("visits.csv", visits),
        ("treatments.csv", treatments),
    ):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        (folder / name).write_text(buffer.getvalue(), encoding="utf-8")
    return folder


def patients_with(changes: dict[tuple[int, str], str], rows=PATIENTS) -> list[list[str]]:
    """A copy of ``rows`` with cells changed; keys are (row as in the file, column)."""
    table = [list(row) for row in rows]
    for (row, column), value in changes.items():
        table[row - 1][table[0].index(column)] = value
    return table


def problems_in(folder: Path) -> list[Problem]:
    with pytest.raises(CohortError) as raised:
        load_cohort(folder)
    return raised.value.problems


def only_problem(folder: Path) -> Problem:
    problems = problems_in(folder)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


# ---------------------------------------------------------------------------- happy paths
def test_end_of_follow_up_in_years_is_read_per_patient(tmp_path):
    cohort = load_cohort(write_cohort(tmp_path, PATIENTS))
    assert cohort.has_end_of_follow_up
    table = cohort.follow_up
    assert list(table.columns) == list(FOLLOW_UP_COLUMNS)
    assert list(table.index) == ["P01", "P02", "P03", "P04"]
    np.testing.assert_allclose(table["last_visit_years"], [3.5, 0.5, 2.0, np.nan])
    np.testing.assert_allclose(table["end_years"], [5.0, 2.0, np.nan, 6.0])
    np.testing.assert_allclose(table["end_lower_years"], [4.0, np.nan, np.nan, np.nan])
    assert table["end_reason"].tolist()[:2] == ["death", "lost_to_follow_up"]
    assert pd.isna(table.at["P03", "end_reason"])
    assert table["died"].tolist() == [True, False, False, False]
    assert table["died"].dtype == bool


def test_dates_give_the_same_follow_up_as_years(tmp_path):
    def date(onset: str, years: float) -> str:
        return (pd.Timestamp(onset) + pd.Timedelta(days=years * 365.25)).date().isoformat()

    dated = [["patient_id", "site", "onset_date", "end_date", "end_reason", "end_lower_date"]]
    for pid, site, onset, end, reason, lower in PATIENTS[1:]:
        dated.append(
            [
                pid,
                site,
                onset,
                date(onset, float(end)) if end else "",
                reason,
                date(onset, float(lower)) if lower else "",
            ]
        )
    years = load_cohort(write_cohort(tmp_path / "years", PATIENTS)).follow_up
    dates = load_cohort(write_cohort(tmp_path / "dates", dated)).follow_up
    # a date is a whole day: the same time within half a day
    np.testing.assert_allclose(dates["end_years"], years["end_years"], atol=0.5 / 365.25)
    np.testing.assert_allclose(
        dates["end_lower_years"], years["end_lower_years"], atol=0.5 / 365.25
    )
    assert dates["end_reason"].equals(years["end_reason"])


def test_a_cohort_without_the_columns_reads_as_before(tmp_path):
    plain = [row[:3] for row in PATIENTS]
    cohort = load_cohort(write_cohort(tmp_path, plain))
    assert not cohort.has_end_of_follow_up
    assert "end_of_follow_up" not in cohort.summary()
    assert not any(column.startswith("end_") for column in cohort.patients.columns)
    table = cohort.follow_up
    assert table["end_years"].isna().all() and table["end_reason"].isna().all()
    assert not table["died"].any()


def test_an_end_at_the_last_visit_is_accepted(tmp_path):
    patients = patients_with({(2, "end_years"): "3.5", (2, "end_lower_years"): "3.5"})
    assert load_cohort(write_cohort(tmp_path, patients)).follow_up.at["P01", "end_years"] == 3.5


def test_summary_and_validate_print_the_end_of_follow_up(tmp_path, capsys):
    folder = write_cohort(tmp_path, PATIENTS)
    summary = load_cohort(folder).summary()["end_of_follow_up"]
    assert summary["given"] == 3 and summary["not_given"] == 1
    assert summary["by_reason"] == {
        "death": 1,
        "lost_to_follow_up": 1,
        "study_end": 1,
        "other": 0,
    }
    assert summary["deaths_interval_censored"] == 1
    assert summary["years_after_last_visit"]["median"] == pytest.approx(1.5)
    assert main(["validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert (
        "End of follow-up: given for 3 of 4 patients (death 1, lost_to_follow_up 1, "
        "study_end 1, other 0; 1 death(s) known only between two contacts)" in out
    )
    plain = write_cohort(tmp_path / "plain", [row[:3] for row in PATIENTS])
    assert main(["validate", str(plain)]) == 0
    assert "End of follow-up" not in capsys.readouterr().out


# ---------------------------------------------------------------------------- refusals
CELL_CASES = [
    # (changes, row, column, value, words the message must contain, id)
    ({(3, "end_reason"): "dead"}, 3, "end_reason", "dead", "one of death, lost_to", "reason"),
    (
        {(3, "end_years"): "0.2"},
        3,
        "end_years",
        "0.2",
        "on or after the patient's last visit (visits.csv row 4, years_since_onset 0.5)",
        "end-before-last-visit",
    ),
    (
        {(2, "end_lower_years"): "3.0"},
        2,
        "end_lower_years",
        "3.0",
        "on or after the patient's last visit (visits.csv row 3",
        "lower-before-last-visit",
    ),
    (
        {(2, "end_lower_years"): "5.5"},
        2,
        "end_lower_years",
        "5.5",
        "on or before the end of follow-up (end_years 5.0)",
        "lower-after-end",
    ),
    (
        {(5, "end_years"): "-1"},
        5,
        "end_years",
        "-1",
        "on or after symptom onset",
        "end-before-onset",
    ),
    (
        {(3, "end_lower_years"): "1.0"},
        3,
        "end_lower_years",
        "1.0",
        "only for a death known to lie between two contacts",
        "lower-without-death",
    ),
    (
        {(5, "end_reason"): ""},
        5,
        "end_reason",
        "",
        "why follow-up ended (death, lost_to_follow_up, study_end, other): end_years is '6.0'",
        "time-without-reason",
    ),
    (
        {(4, "end_reason"): "other"},
        4,
        "end_years",
        "",
        "the end of follow-up (end_years): end_reason is 'other'",
        "reason-without-time",
    ),
    (
        {(4, "end_lower_years"): "2.5"},
        4,
        "end_lower_years",
        "2.5",
        "only beside an end_years",
        "lower-without-end",
    ),
    (
        {(2, "end_years"): "five"},
        2,
        "end_years",
        "five",
        "decimal years since symptom onset",
        "unreadable-end",
    ),
]


@pytest.mark.parametrize(
    ("changes", "row", "column", "value", "words"),
    [case[:5] for case in CELL_CASES],
    ids=[case[5] for case in CELL_CASES],
)
def test_each_bad_end_is_refused_with_file_row_and_column(
    tmp_path, changes, row, column, value, words
):
    problem = only_problem(write_cohort(tmp_path, patients_with(changes)))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "patients.csv",
        row,
        column,
        value,
    )
    assert words in problem.expected


def test_every_bad_end_is_reported_at_once(tmp_path):
    patients = patients_with(
        {(2, "end_reason"): "dead", (3, "end_years"): "0.2", (5, "end_reason"): ""}
    )
    problems = problems_in(write_cohort(tmp_path, patients))
    assert [(p.file, p.row, p.column) for p in problems] == [
        ("patients.csv", 2, "end_reason"),
        ("patients.csv", 3, "end_years"),
        ("patients.csv", 5, "end_reason"),
    ]


def test_dates_before_the_last_visit_name_its_date(tmp_path):
    patients = [
        ["patient_id", "site", "onset_date", "end_date", "end_reason"],
        ["P01", "Bordeaux", "2010-01-01", "2011-01-01", "death"],
    ]
    visits = [["patient_id", "date", "incat"], ["P01", "2012-06-30", "2"]]
    problem = only_problem(write_cohort(tmp_path, patients, visits))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "patients.csv",
        2,
        "end_date",
        "2011-01-01",
    )
    assert "(visits.csv row 2, date 2012-06-30)" in problem.expected


def test_end_dates_need_an_onset_date(tmp_path):
    patients = [
        ["patient_id", "site", "end_date", "end_reason"],
        ["P01", "Bordeaux", "2011-01-01", "death"],
    ]
    problem = only_problem(write_cohort(tmp_path, patients, [VISITS[0], VISITS[1]]))
    assert (problem.file, problem.row, problem.column) == ("patients.csv", None, "onset_date")
    assert "patients.csv (end_date)" in problem.expected


def test_end_date_and_end_years_in_one_file_are_refused(tmp_path):
    patients = [
        ["patient_id", "site", "onset_date", "end_years", "end_date", "end_reason"],
        ["P01", "Bordeaux", "2010-01-01", "5", "", "death"],
        ["P02", "Bordeaux", "2010-01-01", "", "2016-01-01", "death"],
    ]
    visits = [VISITS[0], ["P01", "1.0", "2"], ["P02", "1.0", "2"]]
    problem = only_problem(write_cohort(tmp_path, patients, visits))
    assert (problem.file, problem.row) == ("patients.csv", None)
    assert "one time convention per file" in problem.expected
    assert "end_date" in problem.expected and "end_years" in problem.expected


def test_a_lower_bound_without_its_end_column_is_refused(tmp_path):
    patients = [
        ["patient_id", "site", "end_lower_years", "end_reason"],
        ["P01", "Bordeaux", "2", "death"],
    ]
    problems = problems_in(write_cohort(tmp_path, patients, [VISITS[0], VISITS[1]]))
    assert ("patients.csv", None, "end_years") in [(p.file, p.row, p.column) for p in problems]


def test_a_reason_column_without_any_end_time_column_is_refused_per_row(tmp_path):
    patients = [["patient_id", "site", "end_reason"], ["P01", "Bordeaux", "death"]]
    problem = only_problem(write_cohort(tmp_path, patients, [VISITS[0], VISITS[1]]))
    assert (problem.file, problem.row, problem.column) == ("patients.csv", 2, "end_years")
    assert "'end_years' (years since onset) or 'end_date'" in problem.expected
