"""Reading a cohort from disk: a folder of three CSV files, or one workbook of three sheets.

:func:`load_cohort` is the only way in from files. It reads how the files are written
(``cohort.toml`` beside them, overridden by what the caller states; see
:mod:`magbayes.cohort.fileformat`), reads every file as text in that format, checks
everything (:mod:`magbayes.cohort.validate`), and either returns a
:class:`~magbayes.cohort.tables.Cohort` on the years-since-onset axis or raises one
:class:`~magbayes.errors.CohortError` listing every problem found.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from magbayes.cohort.fileformat import FORMAT_FILE, CohortFormat, resolve_format
from magbayes.cohort.raw import RawTable, csv_table, sheet_table
from magbayes.cohort.tables import (
    DEFAULT_SURAL_THRESHOLD_UV,
    DEFAULT_SURAL_WINDOW_YEARS,
    Cohort,
)
from magbayes.cohort.validate import check_tables
from magbayes.errors import CohortError, Problem

#: The three tables of a cohort, in the order they are read, hashed and reported.
TABLE_NAMES: tuple[str, ...] = ("patients", "visits", "treatments")

_WHERE_FILES_GO = (
    "a cohort folder holds patients.csv, visits.csv and treatments.csv, "
    "or one .xlsx workbook with sheets patients, visits and treatments"
)


@dataclass(frozen=True)
class CohortFiles:
    """The files a cohort is read from.

    Attributes
    ----------
    kind : str
        ``"csv"`` (three CSV files) or ``"xlsx"`` (one workbook).
    contents : list of (str, bytes)
        File name and raw bytes of each file found, in a fixed order (patients, visits,
        treatments; or the workbook alone), then ``cohort.toml`` when there is one.
    missing : list of str
        CSV files the folder lacks.
    """

    kind: str
    contents: list[tuple[str, bytes]]
    missing: list[str]

    @property
    def statement(self) -> bytes | None:
        """The bytes of ``cohort.toml`` (how the files are written), or ``None``."""
        return dict(self.contents).get(FORMAT_FILE)


def load_cohort(
    path: str | Path,
    *,
    date_format: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    sural_threshold_uv: float = DEFAULT_SURAL_THRESHOLD_UV,
    sural_window_years: float = DEFAULT_SURAL_WINDOW_YEARS,
) -> Cohort:
    """Read and check a cohort; every time ends up in years since symptom onset.

    Parameters
    ----------
    path : str or pathlib.Path
        A folder with ``patients.csv``, ``visits.csv`` and ``treatments.csv`` (UTF-8,
        ``,`` separator); or a folder holding exactly one ``.xlsx`` workbook; or the path
        of an ``.xlsx`` workbook with sheets ``patients``, ``visits`` and ``treatments``.
        Times are dates (converted with 365.25-day years from each patient's
        ``onset_date``) or decimal years since onset, one convention per file.
    date_format : str, optional
        :func:`datetime.strptime` format of the dates (``"%d/%m/%Y"``); default ISO
        (``YYYY-MM-DD``).
    sep : str, optional
        Field separator of the CSV files (``";"``); default ``","``.
    decimal : str, optional
        Decimal mark of numbers, ``"."`` (default) or ``","``.

        Each of these three replaces the value of a ``cohort.toml`` beside the files (keys
        ``date_format``, ``sep``, ``decimal``), which otherwise says how they are written.
        In a workbook, ``date_format`` and ``decimal`` apply to text cells; number and
        date cells are read as what they are.
    sural_threshold_uv : float
        Early-sural threshold: a first sural SNAP below this amplitude (µV) is reduced.
    sural_window_years : float
        Early-sural window: the first nerve conduction study must be within this many
        years of onset for ``sural_reduced`` to be defined.

    Returns
    -------
    Cohort
        Validated tables, with ``source`` (the path), ``sha256`` (of the files read) and
        the derived per-patient fields (``sural_reduced``, ``n_treatment_lines``, ...).
        ``visits`` and ``treatments`` carry ``source_row``, the row in the file
        (header = row 1).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CohortError
        With every problem found in the cohort (CONTRACT.md section 2), if any; or with
        the problems of ``cohort.toml`` or of a stated format, alone.
    """
    path = Path(path)
    files = find_cohort_files(path)
    try:
        fmt = resolve_format(files.statement, date_format=date_format, sep=sep, decimal=decimal)
    except CohortError as err:
        raise CohortError(err.problems, source=str(path)) from None
    problems = [
        Problem(name, None, None, "", f"this file in the cohort folder ({_WHERE_FILES_GO})")
        for name in files.missing
    ]
    tables, labels = _read_tables(files, fmt, problems)
    checked = check_tables(
        tables["patients"],
        tables["visits"],
        tables["treatments"],
        patients_label=labels["patients"],
    )
    problems += checked.problems
    if problems:
        raise CohortError(in_file_order(problems, list(labels.values())), source=str(path))
    return Cohort.from_frames(
        checked.patients,
        checked.visits,
        checked.treatments,
        source=str(path),
        sha256=sha256_of(files.contents),
        file_format=fmt,
        sural_threshold_uv=sural_threshold_uv,
        sural_window_years=sural_window_years,
    )


def cohort_sha256(path: str | Path) -> str:
    """SHA-256 of a cohort's files, as :func:`load_cohort` records it.

    Parameters
    ----------
    path : str or pathlib.Path
        Cohort folder or workbook (as for :func:`load_cohort`).

    Returns
    -------
    str
        Hex digest; see :func:`sha256_of` for what is hashed.
    """
    return sha256_of(find_cohort_files(Path(path)).contents)


def sha256_of(contents: list[tuple[str, bytes]]) -> str:
    """SHA-256 over named files, in the order given.

    For each file: its name in UTF-8, a zero byte, its length as 8 bytes (big-endian),
    then its raw bytes. Renaming, reordering or editing any file changes the digest.
    """
    digest = hashlib.sha256()
    for name, data in contents:
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def find_cohort_files(path: Path) -> CohortFiles:
    """Locate a cohort's files and read their bytes.

    A folder with any of the three CSV files is read as CSV (the others are then
    missing); otherwise it must hold exactly one ``.xlsx`` workbook. A ``cohort.toml`` in
    the folder (beside a workbook given by its path) comes last.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CohortError
        If ``path`` is neither a cohort folder nor a workbook.
    """
    if not path.exists():
        raise FileNotFoundError(f"no cohort at {path}: {_WHERE_FILES_GO}")
    files = _tables_files(path)
    statement = (path if path.is_dir() else path.parent) / FORMAT_FILE
    if statement.is_file():
        files.contents.append((FORMAT_FILE, statement.read_bytes()))
    return files


def _tables_files(path: Path) -> CohortFiles:
    """The files of the three tables (see :func:`find_cohort_files`)."""
    if path.is_file():
        if path.suffix.lower() != ".xlsx":
            raise CohortError(
                [
                    Problem(
                        path.name,
                        None,
                        None,
                        "",
                        f"a folder or an .xlsx workbook ({_WHERE_FILES_GO})",
                    )
                ],
                source=str(path),
            )
        return CohortFiles("xlsx", [(path.name, path.read_bytes())], [])
    csv_names = [f"{name}.csv" for name in TABLE_NAMES]
    if any((path / name).is_file() for name in csv_names):
        found = [name for name in csv_names if (path / name).is_file()]
        contents = [(name, (path / name).read_bytes()) for name in found]
        return CohortFiles("csv", contents, [n for n in csv_names if n not in found])
    workbooks = sorted(p for p in path.glob("*.xlsx") if not p.name.startswith("~$"))
    if len(workbooks) == 1:
        return CohortFiles("xlsx", [(workbooks[0].name, workbooks[0].read_bytes())], [])
    if len(workbooks) > 1:
        names = ", ".join(p.name for p in workbooks)
        raise CohortError(
            [
                Problem(
                    path.name,
                    None,
                    None,
                    names,
                    f"exactly one .xlsx workbook in the folder ({_WHERE_FILES_GO})",
                )
            ],
            source=str(path),
        )
    return CohortFiles("csv", [], csv_names)


def _read_tables(
    files: CohortFiles, fmt: CohortFormat, problems: list[Problem]
) -> tuple[dict[str, RawTable | None], dict[str, str]]:
    """Text tables by name (``None`` if unreadable) and the label of each in messages."""
    if files.kind == "xlsx":
        return _read_workbook(*files.contents[0], fmt, problems)
    data = dict(files.contents)
    tables: dict[str, RawTable | None] = {}
    labels: dict[str, str] = {}
    for name in TABLE_NAMES:
        labels[name] = f"{name}.csv"
        raw = data.get(labels[name])
        tables[name] = None if raw is None else csv_table(labels[name], raw, problems, fmt)
    return tables, labels


def _read_workbook(
    name: str, data: bytes, fmt: CohortFormat, problems: list[Problem]
) -> tuple[dict[str, RawTable | None], dict[str, str]]:
    """Read the three sheets of a workbook; labels are ``workbook.xlsx[sheet]``."""
    import openpyxl  # a dependency; imported here to keep `import magbayes` light

    labels = {table: f"{name}[{table}]" for table in TABLE_NAMES}
    tables: dict[str, RawTable | None] = dict.fromkeys(TABLE_NAMES)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        problems.append(
            Problem(name, None, None, "", f"an .xlsx workbook that can be opened ({err})")
        )
        return tables, labels
    try:
        sheets = {sheet.strip().lower(): sheet for sheet in workbook.sheetnames}
        for table in TABLE_NAMES:
            if table not in sheets:
                found = ", ".join(workbook.sheetnames)
                problems.append(
                    Problem(name, None, None, "", f"a sheet named '{table}' (found: {found})")
                )
                continue
            rows = workbook[sheets[table]].iter_rows(min_row=1, values_only=True)
            tables[table] = sheet_table(labels[table], rows, problems, fmt)
    finally:
        workbook.close()
    return tables, labels


def in_file_order(problems: list[Problem], labels: list[str]) -> list[Problem]:
    """Problems sorted by file (patients, visits, treatments) then row; whole-file ones first."""

    def key(problem: Problem) -> tuple[int, int]:
        rank = labels.index(problem.file) if problem.file in labels else -1
        return rank, problem.row if problem.row is not None else 0

    return sorted(problems, key=key)
