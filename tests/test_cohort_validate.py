"""Every kind of bad input is reported with its file, row, column and value, all at once."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import pytest

from magbayes.cli import main
from magbayes.cohort.read import load_cohort
from magbayes.errors import CohortError, Problem

# A small valid cohort in decimal years; the comments give each row's number in its file.
PATIENTS = [
    ["patient_id", "site", "onset_date", "sex", "age_at_onset", "pattern"]
    + ["anti_mag_titer_btu", "sural_snap_uv", "first_ncs_years", "median_dml_ms"],
    [
        "P01",
        "Bordeaux",
        "2010-01-01",
        "M",
        "61",
        "distal_demyelinating",
        "25000",
        "0",
        "1.5",
        "9.1",
    ],
    ["P02", "Bordeaux", "2012-06-15", "F", "70", "cidp_like", "8000", "12.5", "0.5", "6.0"],
    ["P03", "Toulouse", "2011-03-01", "M", "55", "axonal", "", "", "", ""],
    ["P04", "Toulouse", "2009-09-09", "M", "66", "distal_demyelinating", "90000", "3", "4", "8"],
]  # rows 2-5; P04 has no visit and no course
VISITS = [
    ["patient_id", "years_since_onset", "incat", "onls", "mrs", "irods"],
    ["P01", "1.0", "2", "3", "2", "70"],  # row 2
    ["P01", "3.5", "3", "", "", ""],  # row 3
    ["P02", "0.5", "1", "1", "1", ""],  # row 4
    ["P03", "2.0", "0", "", "", ""],  # row 5
]
TREATMENTS = [
    ["patient_id", "treatment", "line", "start_years", "stop_years", "response"],
    ["P01", "ivig", "1", "1.2", "2.0", "partial"],  # row 2
    ["P01", "rituximab", "2", "2.5", "", "good"],  # row 3: ongoing
    ["P02", "ivig", "1", "0.6", "1.0", "none"],  # row 4
    ["P02", "corticosteroids", "1", "0.6", "0.9", ""],  # row 5: with ivig, allowed
]
# The same visits and courses with ISO dates (patients' onset dates above).
VISITS_DATED = [
    ["patient_id", "date", "incat"],
    ["P01", "2011-01-05", "2"],  # row 2
    ["P02", "2013-01-10", "1"],  # row 3
]
TREATMENTS_DATED = [
    ["patient_id", "treatment", "line", "date", "stop_date"],
    ["P01", "ivig", "1", "2011-03-01", "2012-01-01"],  # row 2
    ["P02", "rituximab", "1", "2013-02-01", ""],  # row 3
]


def valid_tables(*, dated: bool = False) -> dict[str, list[list[str]]]:
    return copy.deepcopy(
        {
            "patients.csv": PATIENTS,
            "visits.csv": VISITS_DATED if dated else VISITS,
            "treatments.csv": TREATMENTS_DATED if dated else TREATMENTS,
        }
    )


def set_cell(tables: dict, file: str, row: int, column: str, value: str) -> None:
    """Change one cell; ``row`` as in the file (header = row 1)."""
    header = tables[file][0]
    tables[file][row - 1][header.index(column)] = value


def drop_column(tables: dict, file: str, column: str) -> None:
    position = tables[file][0].index(column)
    for row in tables[file]:
        del row[position]


def write_cohort(folder: Path, tables: dict[str, list[list[str]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        (folder / name).write_text(buffer.getvalue(), encoding="utf-8")
    return folder


def problems_in(folder: Path) -> list[Problem]:
    with pytest.raises(CohortError) as raised:
        load_cohort(folder)
    return raised.value.problems


def only_problem(folder: Path) -> Problem:
    problems = problems_in(folder)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


@pytest.fixture
def tables() -> dict[str, list[list[str]]]:
    return valid_tables()


def test_the_fixture_is_valid(tmp_path, tables):
    assert load_cohort(write_cohort(tmp_path, tables)).n_patients == 4
    assert load_cohort(write_cohort(tmp_path / "d", valid_tables(dated=True))).n_visits == 2


# ---------------------------------------------------------------------------- one cell
CELL_CASES = [
    # (file, row, column, bad value, words the message must contain)
    ("visits.csv", 3, "patient_id", "P99", "listed in patients.csv", "unknown-patient-visit"),
    ("treatments.csv", 2, "patient_id", "P99", "listed in patients.csv", "unknown-patient-course"),
    ("patients.csv", 5, "patient_id", "P01", "unique patient_id (already used in row 2)", "dup"),
    ("visits.csv", 2, "incat", "11", "an integer from 0 to 10", "incat-above-10"),
    ("visits.csv", 2, "onls", "13", "an integer from 0 to 12", "onls-above-12"),
    ("visits.csv", 2, "mrs", "7", "an integer from 0 to 6", "mrs-above-6"),
    ("visits.csv", 2, "irods", "100.5", "a number from 0 to 100", "irods-above-100"),
    ("visits.csv", 2, "incat", "-1", "an integer from 0 to 10", "negative-score"),
    ("visits.csv", 2, "mrs", "2.5", "not a whole number", "score-not-integer"),
    ("visits.csv", 3, "years_since_onset", "-0.2", "on or after symptom onset", "visit-early"),
    ("treatments.csv", 3, "start_years", "-1", "on or after symptom onset", "course-early"),
    ("treatments.csv", 2, "stop_years", "1.0", "a stop on or after the start", "stop-first"),
    ("treatments.csv", 2, "treatment", "IVIG", "did you mean 'ivig'", "treatment-case"),
    ("treatments.csv", 2, "treatment", "azathioprine", "one of ivig, rituximab", "treatment"),
    ("patients.csv", 2, "pattern", "demyelinating", "one of distal_demyelinating", "pattern"),
    ("patients.csv", 2, "sex", "male", "one of F, M", "sex"),
    ("treatments.csv", 2, "response", "excellent", "one of good, partial, none", "response"),
    ("visits.csv", 2, "years_since_onset", "one year", "a number", "unparseable-number"),
    ("visits.csv", 2, "years_since_onset", "2011-01-05", "looks like a date", "date-for-years"),
    ("patients.csv", 2, "sural_snap_uv", "4,5", "decimal comma: use 4.5", "decimal-comma"),
    ("visits.csv", 2, "irods", "62,5", "decimal comma: use 62.5", "decimal-comma-score"),
    ("patients.csv", 2, "anti_mag_titer_btu", "25,000", "or 25000 (thousands)", "thousands"),
    ("patients.csv", 2, "onset_date", "01/03/2010", "YYYY-MM-DD", "day-month-date"),
    ("patients.csv", 2, "onset_date", "2010-02-30", "no such calendar date", "impossible-date"),
    ("patients.csv", 2, "sural_snap_uv", "-1", "a number >= 0", "negative-sural"),
    ("patients.csv", 2, "median_dml_ms", "0", "a number > 0", "zero-latency"),
    ("patients.csv", 2, "first_ncs_years", "-0.5", "a number >= 0", "negative-ncs-time"),
    ("patients.csv", 2, "age_at_onset", "sixty", "a number >= 0", "unparseable-age"),
    ("treatments.csv", 2, "line", "0", "an integer >= 1", "line-zero"),
    ("treatments.csv", 2, "line", "1.5", "not a whole number", "line-not-integer"),
    ("patients.csv", 2, "site", "", "required, but the cell is empty", "empty-site"),
    ("patients.csv", 5, "patient_id", "", "required, but the cell is empty", "empty-id"),
    ("visits.csv", 2, "patient_id", "", "required, but the cell is empty", "empty-id-visit"),
    ("visits.csv", 2, "years_since_onset", "", "required", "empty-visit-time"),
    ("treatments.csv", 2, "treatment", "", "required", "empty-treatment"),
    ("treatments.csv", 2, "line", "", "required", "empty-line"),
    ("treatments.csv", 2, "start_years", "", "required", "empty-start"),
]


@pytest.mark.parametrize(
    ("file", "row", "column", "value", "words"),
    [case[:5] for case in CELL_CASES],
    ids=[case[5] for case in CELL_CASES],
)
def test_one_bad_cell_is_reported_exactly(tmp_path, tables, file, row, column, value, words):
    set_cell(tables, file, row, column, value)
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column, problem.value) == (file, row, column, value)
    assert words in problem.expected


def test_a_decimal_comma_is_never_misread(tmp_path, tables):
    set_cell(tables, "patients.csv", 3, "sural_snap_uv", "4,5")  # below 5 µV if read as 4.5
    set_cell(tables, "visits.csv", 2, "years_since_onset", "1,0")
    problems = problems_in(write_cohort(tmp_path, tables))
    assert [(p.file, p.row, p.column) for p in problems] == [
        ("patients.csv", 3, "sural_snap_uv"),
        ("visits.csv", 2, "years_since_onset"),
    ]
    assert "decimal comma: use 1.0" in problems[1].expected


def test_unquoted_decimal_comma_splits_the_row_and_is_reported(tmp_path, tables):
    folder = write_cohort(tmp_path, tables)
    text = (folder / "visits.csv").read_text().replace("P01,3.5,3,,,", "P01,3,5,3,,,")
    (folder / "visits.csv").write_text(text)
    problem = only_problem(folder)
    assert (problem.file, problem.row, problem.column) == ("visits.csv", 3, None)
    assert "decimal comma" in problem.expected


def test_decimal_comma_in_an_extra_numeric_column(tmp_path, tables):
    tables["patients.csv"][0].append("igm_g_per_l")
    for row, value in zip(tables["patients.csv"][1:], ["12.5", "3,2", "", "8"], strict=True):
        row.append(value)
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "patients.csv",
        3,
        "igm_g_per_l",
        "3,2",
    )
    assert "decimal comma: use 3.2" in problem.expected


# ---------------------------------------------------------------------------- one row
def test_visit_without_any_score(tmp_path, tables):
    for score in ("incat", "onls", "mrs", "irods"):
        set_cell(tables, "visits.csv", 4, score, "")
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column, problem.value) == ("visits.csv", 4, None, "")
    assert "at least one score" in problem.expected


def test_overlapping_courses_of_one_treatment(tmp_path, tables):
    tables["treatments.csv"].append(["P01", "ivig", "2", "1.8", "2.2", ""])  # row 6
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "treatments.csv",
        6,
        "start_years",
        "1.8",
    )
    assert "ivig course in row 2 (1.2 to 2.0)" in problem.expected


def test_a_course_overlapping_an_ongoing_one(tmp_path, tables):
    tables["treatments.csv"].append(["P01", "rituximab", "3", "9.5", "10", ""])  # row 6
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("treatments.csv", 6, "start_years")
    assert "row 3 (2.5 to ongoing)" in problem.expected


def test_two_courses_starting_together(tmp_path, tables):
    tables["treatments.csv"].append(["P02", "ivig", "1", "0.6", "0.6", ""])  # row 6
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row) == ("treatments.csv", 6)


def test_courses_that_touch_or_differ_or_are_other_may_coexist(tmp_path, tables):
    tables["treatments.csv"] += [
        ["P01", "ivig", "1", "2.0", "2.4", ""],  # starts when the first ivig stops
        ["P03", "other", "1", "1.0", "", ""],
        ["P03", "other", "1", "1.5", "3", ""],  # e.g. two different drugs
        ["P03", "plasma_exchange", "1", "1.5", "1.6", ""],
    ]
    assert len(load_cohort(write_cohort(tmp_path, tables)).treatments) == 8


# ---------------------------------------------------------------------------- dates
def test_dated_visit_before_onset(tmp_path):
    tables = valid_tables(dated=True)
    set_cell(tables, "visits.csv", 3, "date", "2012-06-14")  # P02's onset is 2012-06-15
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "visits.csv",
        3,
        "date",
        "2012-06-14",
    )
    assert "onset_date 2012-06-15" in problem.expected


def test_dated_stop_before_start(tmp_path):
    tables = valid_tables(dated=True)
    set_cell(tables, "treatments.csv", 2, "stop_date", "2011-02-28")
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("treatments.csv", 2, "stop_date")


def test_dates_need_an_onset_date_column(tmp_path):
    tables = valid_tables(dated=True)
    drop_column(tables, "patients.csv", "onset_date")
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("patients.csv", None, "onset_date")
    assert "visits.csv and treatments.csv give dates" in problem.expected


def test_dates_need_each_onset_date(tmp_path):
    tables = valid_tables(dated=True)
    set_cell(tables, "patients.csv", 3, "onset_date", "")
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "patients.csv",
        3,
        "onset_date",
        "",
    )


def test_a_number_in_a_date_column(tmp_path):
    tables = valid_tables(dated=True)
    set_cell(tables, "visits.csv", 2, "date", "1.2")
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("visits.csv", 2, "date")
    assert "looks like a number" in problem.expected


def test_mixed_conventions_in_one_file(tmp_path, tables):
    tables["visits.csv"][0].append("date")
    for row in tables["visits.csv"][1:]:
        row.append("")
    set_cell(tables, "visits.csv", 5, "date", "2013-03-01")
    set_cell(tables, "visits.csv", 5, "years_since_onset", "")
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("visits.csv", None, None)
    assert "one time convention per file" in problem.expected
    assert "rows 5" in problem.expected


def test_mixed_conventions_in_treatments(tmp_path, tables):
    tables["treatments.csv"][0][4] = "stop_date"
    for row in tables["treatments.csv"][1:]:
        row[4] = "2012-01-01" if row[4] else ""
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("treatments.csv", None, None)


# ---------------------------------------------------------------------------- whole files
@pytest.mark.parametrize(
    ("file", "column", "reported_column"),
    [
        ("patients.csv", "patient_id", "patient_id"),
        ("patients.csv", "site", "site"),
        ("visits.csv", "patient_id", "patient_id"),
        ("visits.csv", "years_since_onset", None),
        ("treatments.csv", "patient_id", "patient_id"),
        ("treatments.csv", "treatment", "treatment"),
        ("treatments.csv", "line", "line"),
        ("treatments.csv", "start_years", "start_years"),
    ],
)
def test_missing_required_column(tmp_path, tables, file, column, reported_column):
    drop_column(tables, file, column)
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == (file, None, reported_column)


def test_visits_without_score_columns(tmp_path, tables):
    for score in ("incat", "onls", "mrs", "irods"):
        drop_column(tables, "visits.csv", score)
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("visits.csv", None, None)
    assert "at least one score column" in problem.expected


def test_column_names_in_another_case_are_pointed_out(tmp_path, tables):
    tables["patients.csv"][0][0] = "Patient_ID"
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("patients.csv", None, "patient_id")
    assert "found 'Patient_ID'" in problem.expected


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n"], ids=["zero-bytes", "blank", "ws"])
def test_empty_file(tmp_path, tables, content):
    folder = write_cohort(tmp_path, tables)
    (folder / "treatments.csv").write_bytes(content)
    problem = only_problem(folder)
    assert (problem.file, problem.row, problem.column) == ("treatments.csv", None, None)
    assert "empty" in problem.expected


def test_header_only_visits(tmp_path, tables):
    tables["visits.csv"] = tables["visits.csv"][:1]
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("visits.csv", None, None)
    assert "at least one visit row" in problem.expected


def test_wrong_encoding(tmp_path, tables):
    set_cell(tables, "patients.csv", 4, "site", "Hôpital Purpan")
    folder = write_cohort(tmp_path, tables)
    text = (folder / "patients.csv").read_text(encoding="utf-8")
    (folder / "patients.csv").write_bytes(text.encode("latin-1"))
    problem = only_problem(folder)
    assert (problem.file, problem.row, problem.column) == ("patients.csv", 4, None)
    assert "patients.csv must be UTF-8" in problem.expected


def test_semicolon_separated_file(tmp_path, tables):
    folder = write_cohort(tmp_path, tables)
    text = (folder / "visits.csv").read_text().replace(",", ";")
    (folder / "visits.csv").write_text(text)
    problem = only_problem(folder)
    assert (problem.file, problem.row, problem.column) == ("visits.csv", 1, None)
    assert "';'" in problem.expected


def test_repeated_column_name(tmp_path, tables):
    tables["visits.csv"][0][3] = "incat"
    problem = only_problem(write_cohort(tmp_path, tables))
    assert (problem.file, problem.row, problem.column) == ("visits.csv", 1, "incat")


# ---------------------------------------------------------------------------- all at once
def test_problems_in_every_file_are_reported_together(tmp_path, tables):
    set_cell(tables, "patients.csv", 3, "sex", "X")
    set_cell(tables, "patients.csv", 2, "sural_snap_uv", "4,5")
    set_cell(tables, "visits.csv", 5, "incat", "12")
    set_cell(tables, "visits.csv", 2, "patient_id", "P42")
    set_cell(tables, "treatments.csv", 4, "treatment", "ritux")
    folder = write_cohort(tmp_path, tables)
    (folder / "patients.csv").write_bytes((folder / "patients.csv").read_bytes())
    with pytest.raises(CohortError) as raised:
        load_cohort(folder)
    found = [(p.file, p.row, p.column, p.value) for p in raised.value.problems]
    assert found == [
        ("patients.csv", 2, "sural_snap_uv", "4,5"),
        ("patients.csv", 3, "sex", "X"),
        ("visits.csv", 2, "patient_id", "P42"),
        ("visits.csv", 5, "incat", "12"),
        ("treatments.csv", 4, "treatment", "ritux"),
    ]
    message = str(raised.value)
    assert message.startswith(f"5 problem(s) in cohort {folder}")
    assert "visits.csv, row 5, column 'incat': value '12'" in message


def test_unreadable_file_does_not_hide_the_others(tmp_path, tables):
    set_cell(tables, "visits.csv", 2, "incat", "11")
    folder = write_cohort(tmp_path, tables)
    (folder / "treatments.csv").write_bytes(b"patient_id,treatment\n\xff\xfe\n")
    found = [(p.file, p.row) for p in problems_in(folder)]
    assert found == [("visits.csv", 2), ("treatments.csv", 2)]


# ---------------------------------------------------------------------------- command line
def test_validate_command_prints_a_summary(tmp_path, tables, capsys):
    folder = write_cohort(tmp_path / "cohort", tables)
    before = sorted(tmp_path.rglob("*"))
    assert main(["validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Patients: 4 at 2 site(s)" in out
    assert "Bordeaux 2, Toulouse 2" in out
    assert "line 2: rituximab 1" in out
    assert "< 5 µV" in out and "within 3 years" in out
    assert "reduced 1, preserved 1, missing 2" in out
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_validate_command_options_and_json(tmp_path, tables, capsys):
    folder = write_cohort(tmp_path, tables)
    args = ["validate", str(folder), "--json", "--sural-window", "5", "--sural-threshold", "4"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["early_sural"] == {
        "threshold_uv": 4.0,
        "window_years": 5.0,
        "reduced": 2,
        "preserved": 1,
        "missing": 1,
    }
    assert summary["n_patients"] == 4
    assert len(summary["sha256"]) == 64
    assert summary["follow_up_years"]["max"] == 3.5


def test_validate_command_reports_problems_with_status_2(tmp_path, tables, capsys):
    set_cell(tables, "visits.csv", 3, "incat", "11")
    set_cell(tables, "patients.csv", 2, "sural_snap_uv", "4,5")
    folder = write_cohort(tmp_path, tables)
    assert main(["validate", str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines[0] == f"2 problem(s) in {folder}:"
    assert lines[1].startswith("patients.csv, row 2, column 'sural_snap_uv': value '4,5': ")
    assert "decimal comma: use 4.5" in lines[1]
    assert lines[2].startswith("visits.csv, row 3, column 'incat': value '11': expected ")


def test_validate_command_refuses_a_negative_threshold(tmp_path, tables):
    with pytest.raises(SystemExit) as raised:
        main(["validate", str(write_cohort(tmp_path, tables)), "--sural-threshold", "-1"])
    assert raised.value.code == 2


def test_validate_command_on_a_missing_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
