"""Reading cohorts from CSV folders and workbooks: times, rows, hashes, derived fields."""

from __future__ import annotations

import copy
import csv
import io
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import magbayes as mb
from magbayes.cohort.read import cohort_sha256, load_cohort
from magbayes.errors import CohortError

# A small valid cohort with ISO dates. P01: sural 0 µV at 1.5 y (reduced); P02: 12.5 µV at
# 0.5 y (preserved); P03: no nerve conduction study (missing); P04: 3 µV but at 4 y, outside
# the default 3-year window (missing).
PATIENTS = [
    ["patient_id", "site", "onset_date", "sex", "age_at_onset", "pattern"]
    + ["anti_mag_titer_btu", "sural_snap_uv", "first_ncs_years", "igm_kappa"],
    ["P01", "Bordeaux", "2010-01-01", "M", "61", "distal_demyelinating", "25000", "0", "1.5", "1"],
    ["P02", "Bordeaux", "2012-06-15", "F", "70", "cidp_like", "8000", "12.5", "0.5", "0"],
    ["P03", "Toulouse", "2011-03-01", "M", "55", "axonal", "", "", "", ""],
    ["P04", "Toulouse", "2009-09-09", "M", "66", "distal_demyelinating", "90000", "3", "4", "1"],
]
VISITS = [
    ["patient_id", "date", "incat", "onls", "mrs", "irods"],
    ["P01", "2011-01-05", "2", "3", "2", "70"],
    ["P01", "2013-07-01", "3", "", "", ""],
    ["P02", "2013-01-10", "1", "1", "1", ""],
    ["P03", "2013-03-01", "0", "", "", ""],
    ["P04", "2013-10-20", "4", "", "", "55.5"],
    ["P04", "2014-10-20", "5", "", "", ""],
]
TREATMENTS = [
    ["patient_id", "treatment", "line", "date", "stop_date", "response"],
    ["P01", "ivig", "1", "2011-03-01", "2012-01-01", "partial"],
    ["P01", "rituximab", "2", "2012-07-01", "", "good"],
    ["P02", "ivig", "1", "2012-12-01", "2013-06-01", "none"],
    ["P02", "corticosteroids", "1", "2012-12-01", "2013-05-01", "none"],
    ["P04", "rituximab", "1", "2013-11-01", "2014-02-01", "unknown"],
]


def dated_tables() -> dict[str, list[list[str]]]:
    return {
        "patients.csv": copy.deepcopy(PATIENTS),
        "visits.csv": copy.deepcopy(VISITS),
        "treatments.csv": copy.deepcopy(TREATMENTS),
    }


def years_since(onset: str, when: str) -> str:
    if when == "":
        return ""
    days = (date.fromisoformat(when) - date.fromisoformat(onset)).days
    return repr(days / 365.25)


def years_tables() -> dict[str, list[list[str]]]:
    """The same cohort with decimal years since onset instead of dates."""
    tables = dated_tables()
    onset = {row[0]: row[2] for row in tables["patients.csv"][1:]}
    for name, renames in (
        ("visits.csv", {"date": "years_since_onset"}),
        ("treatments.csv", {"date": "start_years", "stop_date": "stop_years"}),
    ):
        header, *rows = tables[name]
        for old, new in renames.items():
            position = header.index(old)
            header[position] = new
            for row in rows:
                row[position] = years_since(onset[row[0]], row[position])
    return tables


def write_cohort(folder: Path, tables: dict[str, list[list[str]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        (folder / name).write_text(buffer.getvalue(), encoding="utf-8")
    return folder


def write_workbook(path: Path, tables: dict[str, list[list[str]]], *, typed: bool = True) -> Path:
    """Write the tables as three sheets; ``typed`` stores numbers and dates as such."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, (header, *rows) in tables.items():
            frame = pd.DataFrame(rows, columns=header)
            if typed:
                frame = frame.apply(_typed_column)
            frame.to_excel(writer, sheet_name=name.removesuffix(".csv"), index=False)
    return path


def _typed_column(column: pd.Series) -> pd.Series:
    if column.name in ("date", "stop_date", "onset_date"):
        return pd.to_datetime(column.replace("", None))
    numbers = pd.to_numeric(column.replace("", None), errors="coerce")
    if numbers.notna().sum() == (column != "").sum():
        return numbers
    return column


@pytest.fixture
def cohort_dir(tmp_path: Path) -> Path:
    return write_cohort(tmp_path / "cohort", years_tables())


# ---------------------------------------------------------------------------- reading
def test_loads_a_valid_cohort_with_years(cohort_dir):
    cohort = load_cohort(cohort_dir)
    assert cohort.patient_ids == ["P01", "P02", "P03", "P04"]
    assert cohort.n_visits == 6
    assert len(cohort.treatments) == 5
    assert cohort.source == str(cohort_dir)
    assert cohort.visits["incat"].dtype == "Int64"
    assert cohort.visits["irods"].dtype == "Float64"
    assert cohort.patients.loc["P02", "sural_snap_uv"] == 12.5
    assert cohort.patients.loc["P01", "pattern"] == "distal_demyelinating"
    assert pd.isna(cohort.patients.loc["P03", "sural_snap_uv"])


def test_is_reachable_from_the_package(cohort_dir):
    assert mb.load_cohort(cohort_dir).n_patients == 4


def test_dates_and_years_give_the_same_times(tmp_path):
    with_dates = load_cohort(write_cohort(tmp_path / "dates", dated_tables()))
    with_years = load_cohort(write_cohort(tmp_path / "years", years_tables()))
    columns = ["patient_id", "years_since_onset", "incat", "onls", "mrs", "irods", "source_row"]
    pd.testing.assert_frame_equal(with_dates.visits[columns], with_years.visits[columns])
    columns = ["patient_id", "treatment", "line", "start_years", "stop_years", "response"]
    pd.testing.assert_frame_equal(with_dates.treatments[columns], with_years.treatments[columns])
    first = with_dates.visits.iloc[0]
    assert first["years_since_onset"] == (date(2011, 1, 5) - date(2010, 1, 1)).days / 365.25


def test_dates_are_kept_beside_the_years(tmp_path):
    cohort = load_cohort(write_cohort(tmp_path / "dates", dated_tables()))
    assert cohort.visits.loc[0, "date"] == pd.Timestamp("2011-01-05")
    assert cohort.patients.loc["P01", "onset_date"] == pd.Timestamp("2010-01-01")
    ongoing = cohort.treatments.query("treatment == 'rituximab' and patient_id == 'P01'")
    assert ongoing["stop_years"].isna().all()
    assert ongoing["stop_date"].isna().all()


def test_source_rows_are_file_rows_with_header_as_row_one(tmp_path):
    tables = years_tables()
    tables["visits.csv"].insert(3, ["", "", "", "", "", ""])  # a blank line still counts
    cohort = load_cohort(write_cohort(tmp_path / "c", tables))
    rows = cohort.visits.set_index(["patient_id", "incat"])["source_row"]
    assert rows[("P01", 2)] == 2
    assert rows[("P01", 3)] == 3
    assert rows[("P02", 1)] == 5  # after the blank row 4
    assert sorted(cohort.treatments["source_row"]) == [2, 3, 4, 5, 6]


def test_extra_patient_columns_are_kept(tmp_path):
    tables = years_tables()
    tables["patients.csv"][0].append("centre_code")
    for row, code in zip(tables["patients.csv"][1:], ["A", "A", "B", ""], strict=True):
        row.append(code)
    cohort = load_cohort(write_cohort(tmp_path / "c", tables))
    assert cohort.patients["igm_kappa"].dtype == float
    assert cohort.patients.loc["P01", "igm_kappa"] == 1.0
    assert cohort.patients.loc["P04", "centre_code"] is pd.NA
    assert list(cohort.patients["centre_code"].iloc[:3]) == ["A", "A", "B"]


def test_na_is_missing_and_whole_floats_are_integers(tmp_path):
    tables = years_tables()
    tables["visits.csv"][2][3] = "NA"  # onls
    tables["visits.csv"][3][2] = "1.0"  # incat as a float writer prints it
    tables["treatments.csv"][2][4] = "NA"  # stop: ongoing
    cohort = load_cohort(write_cohort(tmp_path / "c", tables))
    visits = cohort.visits.set_index("source_row")
    assert pd.isna(visits.loc[3, "onls"])
    assert visits.loc[4, "incat"] == 1


def test_utf8_byte_order_mark_is_fine(tmp_path):
    folder = write_cohort(tmp_path / "c", years_tables())
    text = (folder / "patients.csv").read_text(encoding="utf-8").replace("Toulouse", "Hôpital")
    (folder / "patients.csv").write_text(text, encoding="utf-8-sig")
    cohort = load_cohort(folder)
    assert cohort.patient_ids[0] == "P01"
    assert "Hôpital" in cohort.sites


def test_windows_line_endings_are_fine(tmp_path):
    folder = write_cohort(tmp_path / "c", years_tables())
    for name in ("patients.csv", "visits.csv", "treatments.csv"):
        data = (folder / name).read_bytes().replace(b"\n", b"\r\n")
        (folder / name).write_bytes(data)
    assert load_cohort(folder).n_visits == 6


def test_untreated_cohort_may_have_a_header_only_treatments_file(tmp_path):
    tables = years_tables()
    tables["treatments.csv"] = tables["treatments.csv"][:1]
    cohort = load_cohort(write_cohort(tmp_path / "c", tables))
    assert len(cohort.treatments) == 0
    assert (cohort.patients["n_treatment_lines"] == 0).all()


def test_missing_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_cohort(tmp_path / "nowhere")


def test_missing_file_in_folder_is_reported(tmp_path):
    folder = write_cohort(tmp_path / "c", years_tables())
    (folder / "treatments.csv").unlink()
    with pytest.raises(CohortError) as raised:
        load_cohort(folder)
    assert [(p.file, p.row, p.column) for p in raised.value.problems] == [
        ("treatments.csv", None, None)
    ]


# ---------------------------------------------------------------------------- hashing
def test_sha256_is_stable_and_follows_the_bytes(tmp_path):
    folder = write_cohort(tmp_path / "c", years_tables())
    first = load_cohort(folder).sha256
    assert len(first) == 64
    assert first == load_cohort(folder).sha256 == cohort_sha256(folder)
    same_elsewhere = write_cohort(tmp_path / "elsewhere", years_tables())
    assert load_cohort(same_elsewhere).sha256 == first
    text = (folder / "visits.csv").read_text()
    (folder / "visits.csv").write_text(text.replace("P04,", "P04 ,", 1))  # same values
    assert load_cohort(folder).sha256 != first


# ---------------------------------------------------------------------------- workbooks
@pytest.mark.parametrize("typed", [True, False], ids=["typed-cells", "text-cells"])
def test_workbook_round_trip_matches_csv(tmp_path, typed):
    from_csv = load_cohort(write_cohort(tmp_path / "csv", dated_tables()))
    workbook = write_workbook(tmp_path / "book" / "cohort.xlsx", dated_tables(), typed=typed)
    for path in (workbook, workbook.parent):  # the workbook, or a folder holding it
        from_xlsx = load_cohort(path)
        assert from_xlsx.source == str(path)
        pd.testing.assert_frame_equal(from_xlsx.visits, from_csv.visits)
        pd.testing.assert_frame_equal(from_xlsx.treatments, from_csv.treatments)
        pd.testing.assert_frame_equal(from_xlsx.patients, from_csv.patients)
    assert from_xlsx.sha256 == cohort_sha256(workbook)


def test_workbook_problems_name_the_sheet(tmp_path):
    tables = years_tables()
    tables["visits.csv"][4][2] = "12"
    workbook = write_workbook(tmp_path / "cohort.xlsx", tables)
    with pytest.raises(CohortError) as raised:
        load_cohort(workbook)
    assert [(p.file, p.row, p.column, p.value) for p in raised.value.problems] == [
        ("cohort.xlsx[visits]", 5, "incat", "12")
    ]


def test_workbook_without_a_sheet_is_reported(tmp_path):
    tables = years_tables()
    del tables["treatments.csv"]
    workbook = write_workbook(tmp_path / "cohort.xlsx", tables)
    with pytest.raises(CohortError) as raised:
        load_cohort(workbook)
    (problem,) = raised.value.problems
    assert (problem.file, problem.row, problem.column) == ("cohort.xlsx", None, None)
    assert "treatments" in problem.expected


def test_folder_with_two_workbooks_is_reported(tmp_path):
    write_workbook(tmp_path / "a.xlsx", years_tables())
    write_workbook(tmp_path / "b.xlsx", years_tables())
    with pytest.raises(CohortError) as raised:
        load_cohort(tmp_path)
    assert "a.xlsx, b.xlsx" in raised.value.problems[0].value


# ---------------------------------------------------------------------------- derived
def test_sural_reduced_true_false_and_missing(cohort_dir):
    sural = load_cohort(cohort_dir).patients["sural_reduced"]
    assert sural.dtype == "boolean"
    assert sural["P01"] is np.True_
    assert sural["P02"] is np.False_
    assert sural["P03"] is pd.NA  # never measured
    assert sural["P04"] is pd.NA  # measured at 4 years, outside the 3-year window


def test_sural_definition_follows_threshold_and_window(cohort_dir):
    wide = load_cohort(cohort_dir, sural_window_years=5.0)
    assert wide.patients.loc["P04", "sural_reduced"] == True  # noqa: E712
    assert wide.sural_window_years == 5.0
    high = load_cohort(cohort_dir, sural_threshold_uv=15.0)
    assert high.patients.loc["P02", "sural_reduced"] == True  # noqa: E712
    assert high.summary()["early_sural"]["threshold_uv"] == 15.0


def test_treatment_lines_visits_and_follow_up(cohort_dir):
    patients = load_cohort(cohort_dir).patients
    assert patients["n_treatment_lines"].to_dict() == {"P01": 2, "P02": 1, "P03": 0, "P04": 1}
    assert patients["n_visits"].to_dict() == {"P01": 2, "P02": 1, "P03": 1, "P04": 2}
    last_visit = (date(2014, 10, 20) - date(2009, 9, 9)).days / 365.25
    assert patients.loc["P04", "follow_up_years"] == pytest.approx(last_visit, abs=1e-12)


def test_summary_counts(cohort_dir):
    summary = load_cohort(cohort_dir).summary()
    assert summary["patients_by_site"] == {"Bordeaux": 2, "Toulouse": 2}
    assert summary["courses_by_line_and_treatment"] == {
        "line 1": {"ivig": 2, "corticosteroids": 1, "rituximab": 1},
        "line 2": {"rituximab": 1},
    }
    assert summary["early_sural"] == {
        "threshold_uv": 5.0,
        "window_years": 3.0,
        "reduced": 1,
        "preserved": 1,
        "missing": 2,
    }
