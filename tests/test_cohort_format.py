"""Cohorts written as clinicians' spreadsheets write them: ';', decimal commas, day/month dates.

A simulated cohort is exported twice with the same dates: once in the default format (ISO
dates, ',' between fields, '.' decimals) and once French-style. The French export is
refused unless its format is stated (keywords, command-line options or cohort.toml), and
once stated it reads to the same cohort.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

import magbayes as mb
from magbayes.cli import main
from magbayes.cohort.fileformat import CohortFormat
from magbayes.cohort.read import cohort_sha256, load_cohort
from magbayes.errors import CohortError, Problem, problem_lines

FRENCH = {"date_format": "%d/%m/%Y", "sep": ";", "decimal": ","}
FRENCH_OPTIONS = ["--sep", ";", "--decimal", ",", "--date-format", "%d/%m/%Y"]
DATE_COLUMNS = ("onset_date", "date", "stop_date")
_NUMBER = re.compile(r"^-?\d+\.\d+$")


def read_rows(path: Path, sep: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter=sep))


def write_rows(path: Path, rows: list[list[str]], sep: str = ",") -> None:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=sep, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def dated_export(simulated: Path, out: Path) -> Path:
    """The simulated cohort with ISO dates: onsets from 2005 on, times rounded to days."""
    out.mkdir(parents=True)
    header, *patients = read_rows(simulated / "patients.csv")
    onsets = {row[0]: date(2005, 1, 1) + timedelta(days=97 * i) for i, row in enumerate(patients)}
    header.insert(2, "onset_date")
    for row in patients:
        row.insert(2, onsets[row[0]].isoformat())
    write_rows(out / "patients.csv", [header, *patients])
    renames = {
        "visits.csv": {"years_since_onset": "date"},
        "treatments.csv": {"start_years": "date", "stop_years": "stop_date"},
    }
    for name, columns in renames.items():
        header, *rows = read_rows(simulated / name)
        for old, new in columns.items():
            position = header.index(old)
            header[position] = new
            for row in rows:
                if row[position]:
                    days = round(float(row[position]) * 365.25)
                    row[position] = (onsets[row[0]] + timedelta(days=days)).isoformat()
        write_rows(out / name, [header, *rows])
    return out


def french_export(iso: Path, out: Path) -> Path:
    """The same files as a French Excel writes them: ';', decimal commas, dd/mm/yyyy."""
    out.mkdir(parents=True)
    for name in ("patients.csv", "visits.csv", "treatments.csv"):
        header, *rows = read_rows(iso / name)
        for row in rows:
            for position, (column, text) in enumerate(zip(header, row, strict=True)):
                if column in DATE_COLUMNS and text:
                    row[position] = date.fromisoformat(text).strftime("%d/%m/%Y")
                elif _NUMBER.match(text):
                    row[position] = text.replace(".", ",")
        write_rows(out / name, [header, *rows], sep=";")
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[Path, Path]:
    """(ISO export, French export) of one simulated 47-patient cohort."""
    root = tmp_path_factory.mktemp("exports")
    mb.simulate_cohort(n_patients=47, seed=11).write(root / "simulated")
    iso = dated_export(root / "simulated", root / "iso")
    return iso, french_export(iso, root / "french")


@pytest.fixture
def french(exports, tmp_path) -> Path:
    """A fresh copy of the French export (tests may add a cohort.toml)."""
    folder = tmp_path / "french"
    folder.mkdir()
    for name in ("patients.csv", "visits.csv", "treatments.csv"):
        (folder / name).write_bytes((exports[1] / name).read_bytes())
    return folder


def assert_same_cohort(a: mb.cohort.Cohort, b: mb.cohort.Cohort) -> None:
    pd.testing.assert_frame_equal(a.patients, b.patients)
    pd.testing.assert_frame_equal(a.visits, b.visits)
    pd.testing.assert_frame_equal(a.treatments, b.treatments)


# ---------------------------------------------------------------------------- refused
def test_a_semicolon_file_is_refused_naming_the_option(french):
    with pytest.raises(CohortError) as raised:
        load_cohort(french)
    problems = raised.value.problems
    assert [(p.file, p.row) for p in problems] == [
        ("patients.csv", 1),
        ("visits.csv", 1),
        ("treatments.csv", 1),
    ]
    for problem in problems:
        assert "the file is separated by ';'; say so with --sep ';'" in problem.expected
        assert "sep = ';' in cohort.toml" in problem.expected


def test_day_month_dates_and_decimal_commas_are_refused_and_grouped(french):
    with pytest.raises(CohortError) as raised:
        load_cohort(french, sep=";")
    err = raised.value
    n_visits = len(read_rows(french / "visits.csv", ";")) - 1
    dates = [p for p in err.problems if (p.file, p.column) == ("visits.csv", "date")]
    assert len(dates) == n_visits > 100  # every problem is kept for programs
    lines = problem_lines(err.problems)
    assert len(lines) < len(err.problems) / 10
    (line,) = [line for line in lines if line.startswith("visits.csv, column 'date'")]
    assert line.startswith(f"visits.csv, column 'date': {n_visits} values (rows 2, 3, 4, 5, 6, ...")
    assert "say so with --date-format %d/%m/%Y or date_format = '%d/%m/%Y' in cohort.toml" in line
    (snap,) = [line for line in lines if "column 'sural_snap_uv'" in line]
    assert "decimal comma: use" in snap and "--decimal ','" in snap
    assert str(err).count("\n") == len(lines)  # the message is grouped too


def test_a_decimal_comma_is_named_not_misread_in_a_semicolon_file(french):
    with pytest.raises(CohortError) as raised:
        load_cohort(french, sep=";", date_format="%d/%m/%Y")
    kinds = {p.column for p in raised.value.problems}
    assert "incat" not in kinds  # integers are fine in any notation
    assert {"sural_snap_uv", "first_ncs_years", "irods"} <= kinds
    for problem in raised.value.problems:
        assert "decimal comma" in problem.expected and "--decimal ','" in problem.expected
        assert f"use {problem.value.replace(',', '.')}" in problem.expected


# ---------------------------------------------------------------------------- stated
def test_stated_format_reads_the_same_cohort(exports, french):
    iso = load_cohort(exports[0])
    stated = load_cohort(french, **FRENCH)
    assert_same_cohort(stated, iso)
    assert stated.file_format == CohortFormat(**FRENCH)
    assert stated.summary()["file_format"] == FRENCH
    assert stated.n_patients == 47
    assert stated.visits["date"].iloc[0] == iso.visits["date"].iloc[0]


def test_dates_match_the_simulated_years(exports, french):
    simulated = exports[0].parent / "simulated"
    years = pd.read_csv(simulated / "visits.csv")["years_since_onset"].to_numpy()
    stated = load_cohort(french, **FRENCH)
    rows = stated.visits.sort_values("source_row")["years_since_onset"].to_numpy()
    assert abs(rows - years).max() <= 0.5 / 365.25 + 1e-9  # rounded to the day


def test_cohort_toml_states_the_format_and_is_hashed(exports, french):
    without = cohort_sha256(french)
    (french / "cohort.toml").write_text(
        "date_format = '%d/%m/%Y'\nsep = ';'\ndecimal = ','\n", encoding="utf-8"
    )
    cohort = load_cohort(french)
    assert_same_cohort(cohort, load_cohort(exports[0]))
    assert cohort.sha256 == cohort_sha256(french) != without


def test_stated_options_override_cohort_toml(exports, french):
    (french / "cohort.toml").write_text("sep = ';'\ndecimal = ','\ndate_format = '%m/%d/%Y'\n")
    with pytest.raises(CohortError):
        load_cohort(french)  # month/day: some days are above 12
    assert_same_cohort(load_cohort(french, date_format="%d/%m/%Y"), load_cohort(exports[0]))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("sepp = ';'\n", "unknown key 'sepp'; did you mean 'sep'?"),
        ("decimal = ';'\n", "key 'decimal': expected '.' or ','"),
        ("date_format = '%m/%Y'\n", "must give the day, month and year"),
        ("sep = \n", "a UTF-8 TOML file"),
    ],
    ids=["unknown-key", "bad-decimal", "no-day", "not-toml"],
)
def test_a_bad_cohort_toml_is_refused_naming_file_and_key(french, text, words):
    (french / "cohort.toml").write_text(text, encoding="utf-8")
    with pytest.raises(CohortError) as raised:
        load_cohort(french)
    (problem,) = raised.value.problems
    assert problem.file == "cohort.toml"
    assert words in problem.expected


def test_a_decimal_point_in_a_decimal_comma_file_is_named(french):
    text = (french / "patients.csv").read_text(encoding="utf-8")
    header, first, *rest = text.splitlines()
    position = header.split(";").index("first_ncs_years")
    cells = first.split(";")
    cells[position] = cells[position].replace(",", ".")
    (french / "patients.csv").write_text("\n".join([header, ";".join(cells), *rest]) + "\n")
    with pytest.raises(CohortError) as raised:
        load_cohort(french, **FRENCH)
    (problem,) = raised.value.problems
    assert (problem.file, problem.row, problem.column) == ("patients.csv", 2, "first_ncs_years")
    assert "this cohort's decimal mark is ','" in problem.expected


def test_an_unusable_stated_format_is_refused():
    with pytest.raises(ValueError, match="one character"):
        CohortFormat(sep=";;")
    with pytest.raises(ValueError, match="day, month and year"):
        CohortFormat(date_format="%Y")


# ---------------------------------------------------------------------------- command line
def test_validate_refuses_the_french_export_with_status_2(french, capsys):
    assert main(["validate", str(french)]) == 2
    err = capsys.readouterr().err
    assert "--sep ';'" in err


def test_validate_reads_the_french_export_with_the_options(french, capsys):
    assert main(["validate", str(french), *FRENCH_OPTIONS]) == 0
    out = capsys.readouterr().out
    assert "Patients: 47 at 2 site(s)" in out
    assert "Read as: fields separated by ';', decimal ',', dates %d/%m/%Y" in out


def test_validate_option_for_a_tab_and_a_bad_date_format(french, capsys):
    for name in ("patients.csv", "visits.csv", "treatments.csv"):
        path = french / name
        path.write_text(path.read_text(encoding="utf-8").replace(";", "\t"), encoding="utf-8")
    assert main(["validate", str(french), "--sep", "\\t", "--decimal", ","]) == 2
    err = capsys.readouterr().err
    assert "--date-format %d/%m/%Y" in err and "separated" not in err
    with pytest.raises(SystemExit) as raised:
        main(["validate", str(french), "--date-format", "%Y"])
    assert raised.value.code == 2


@pytest.mark.parametrize("command", ["fit", "answer", "sensitivity", "sbc"])
def test_commands_that_read_a_cohort_take_the_format_options(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = capsys.readouterr().out
    for option in ("--date-format", "--sep", "--decimal"):
        assert option in shown


# ---------------------------------------------------------------------------- workbooks
def test_a_workbook_with_date_cells_and_numbers_as_text_loads(exports, tmp_path):
    iso = exports[0]
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name in ("patients", "visits", "treatments"):
        header, *rows = read_rows(iso / f"{name}.csv")
        sheet = workbook.create_sheet(name)
        sheet.append(header)
        for row in rows:
            cells: list[object] = []
            for column, text in zip(header, row, strict=True):
                if column in DATE_COLUMNS and text:
                    cells.append(datetime.fromisoformat(text))  # a real date cell
                else:
                    cells.append(text or None)  # numbers stored as text
            sheet.append(cells)
    path = tmp_path / "cohort.xlsx"
    workbook.save(path)
    check = openpyxl.load_workbook(path)["visits"]
    assert check.cell(2, 2).is_date and isinstance(check.cell(2, 3).value, str)
    assert_same_cohort(load_cohort(path), load_cohort(iso))


def test_workbook_text_cells_follow_the_stated_format_typed_cells_do_not(exports, tmp_path):
    iso = exports[0]
    with pd.ExcelWriter(tmp_path / "cohort.xlsx", engine="openpyxl") as writer:
        for name in ("patients", "visits", "treatments"):
            frame = pd.read_csv(iso / f"{name}.csv", dtype=str, keep_default_na=False)
            for column in frame:
                values = frame[column].replace("", None)
                if name == "visits" and column == "date":  # text in the stated format
                    frame[column] = pd.to_datetime(values).dt.strftime("%d/%m/%Y")
                elif name == "visits" and column == "irods":  # text with decimal commas
                    frame[column] = frame[column].str.replace(".", ",")
                elif column in DATE_COLUMNS:
                    frame[column] = pd.to_datetime(values)  # date cells
                elif pd.to_numeric(values, errors="coerce").notna().sum() == values.notna().sum():
                    frame[column] = pd.to_numeric(values)  # number cells
            frame.to_excel(writer, sheet_name=name, index=False)
    (tmp_path / "cohort.toml").write_text("date_format = '%d/%m/%Y'\ndecimal = ','\n")
    assert_same_cohort(load_cohort(tmp_path / "cohort.xlsx"), load_cohort(iso))


# ---------------------------------------------------------------------------- grouping
def test_problems_of_one_kind_in_one_column_are_one_line():
    problems = [
        Problem("visits.csv", row, "incat", "11", "an integer from 0 to 10") for row in range(2, 9)
    ]
    problems.append(Problem("visits.csv", 9, "onls", "13", "an integer from 0 to 12"))
    lines = problem_lines(problems)
    assert lines == [
        "visits.csv, column 'incat': 7 values (rows 2, 3, 4, 5, 6, ...; first value '11'): "
        "expected an integer from 0 to 10",
        "visits.csv, row 9, column 'onls': value '13': expected an integer from 0 to 12",
    ]
    err = CohortError(problems, source="c")
    assert len(err.problems) == 8
    assert str(err).splitlines()[1:] == [f"  - {line}" for line in lines]


def test_fit_reads_the_french_export_with_the_options(french, capsys):
    assert main(["fit", "progression", "--data", str(french), "--dry-run"]) == 2
    assert "--sep ';'" in capsys.readouterr().err
    assert main(["fit", "progression", "--data", str(french), "--dry-run", *FRENCH_OPTIONS]) == 0


def test_sbc_reads_a_cohort_design_in_the_stated_format(french):
    from magbayes.fit import resolve_spec
    from magbayes.sbc import ModelStructure

    structure = ModelStructure(
        resolve_spec("progression"), data=str(french), data_format=tuple(FRENCH.items())
    )
    assert structure.cohort().n_patients == 47
    assert structure.describe()["cohort"]["format"] == FRENCH
