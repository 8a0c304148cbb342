"""Cohort files as text tables: every cell a stripped string, every row its number in the file.

Nothing here interprets a value. A CSV file is decoded as UTF-8 (a byte-order mark is
fine) and split with :mod:`csv` at the stated separator; a workbook sheet is read with
openpyxl and each cell written back as the text a user would type in the stated format
(:class:`~magbayes.cohort.fileformat.CohortFormat`). Row numbers are those of the file or sheet
(header = row 1), so every later message points at the right line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time

import pandas as pd

from magbayes.cohort.fileformat import CohortFormat, how_to_state, separator_name
from magbayes.errors import Problem

#: Separators a CSV file may use; a header read as one field holding one is reported.
_SEPARATORS: tuple[str, ...] = (",", ";", "\t", "|")


@dataclass(frozen=True)
class RawTable:
    """One cohort file as text.

    Attributes
    ----------
    label : str
        The file's name as messages give it (``visits.csv``, ``cohort.xlsx[visits]``).
    frame : pandas.DataFrame
        Every cell as stripped text (``""`` when empty), one column per header name,
        indexed by the row number in the file (header = row 1; blank rows are skipped but
        still counted).
    file_format : CohortFormat
        How the file is written (decimal mark and date format of its text).
    """

    label: str
    frame: pd.DataFrame
    file_format: CohortFormat

    def has(self, column: str) -> bool:
        """Whether the header names this column."""
        return column in self.frame.columns

    def has_values(self, column: str) -> bool:
        """Whether this column exists and holds at least one value."""
        return self.has(column) and bool((self.frame[column] != "").any())


def csv_table(
    label: str, data: bytes, problems: list[Problem], fmt: CohortFormat
) -> RawTable | None:
    """Split a CSV file's bytes into a :class:`RawTable`.

    Parameters
    ----------
    label : str
        File name for messages.
    data : bytes
        The file's raw content.
    problems : list of Problem
        Receives the file-level problems (empty, not UTF-8, wrong separator, ...).
    fmt : CohortFormat
        How the file is written (its separator, decimal mark and dates).

    Returns
    -------
    RawTable or None
        ``None`` when the file cannot be read as a table at all.
    """
    text = _decode_utf8(label, data, problems)
    if text is None:
        return None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.sep)
    records: list[tuple[int, list[str]]] = []
    try:
        for number, cells in enumerate(reader, start=1):
            records.append((number, cells))
    except csv.Error as err:
        problems.append(
            Problem(label, len(records) + 1, None, "", f"a well-formed CSV row ({err})")
        )
        return None
    return table_from_records(label, records, problems, fmt)


def _decode_utf8(label: str, data: bytes, problems: list[Problem]) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        row = data[: err.start].count(b"\n") + 1
        line = data.split(b"\n")[row - 1].decode("utf-8", errors="replace").rstrip("\r")
        problems.append(
            Problem(
                label,
                row,
                None,
                line,
                f"UTF-8 text: {label} must be UTF-8 encoded (byte 0x{data[err.start]:02x} "
                "is not UTF-8; in Excel, save as 'CSV UTF-8 (comma delimited)')",
            )
        )
        return None


def sheet_table(
    label: str, rows: Iterable[tuple], problems: list[Problem], fmt: CohortFormat
) -> RawTable | None:
    """Turn a worksheet's cell values (openpyxl ``values_only`` rows) into a :class:`RawTable`.

    Parameters
    ----------
    label : str
        ``workbook.xlsx[sheet]``, for messages.
    rows : iterable of tuple
        Cell values row by row, starting at sheet row 1.
    problems : list of Problem
        Receives the problems found.
    fmt : CohortFormat
        How text cells are written; typed cells (numbers, dates) are written back so.
    """
    records = [
        (number, [cell_text(value, fmt) for value in values])
        for number, values in enumerate(rows, 1)
    ]
    return table_from_records(label, records, problems, fmt)


def cell_text(value: object, fmt: CohortFormat) -> str:
    """The text of a spreadsheet cell as a user would have typed it in the format ``fmt``.

    Date cells become ISO dates (``YYYY-MM-DD``, with the time of day if any), or dates in
    the stated format when it writes and reads them back unchanged; whole floats lose
    their ``.0``; other numbers keep every digit (``repr``, with the stated decimal mark),
    so nothing is rounded. Text cells stay as typed.
    """
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return _date_text(value, fmt)
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
        return text.replace(".", fmt.decimal)
    return str(value).strip()


def _date_text(value: date, fmt: CohortFormat) -> str:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if fmt.date_format is not None:
        text = value.strftime(fmt.date_format)
        if datetime.strptime(text, fmt.date_format) == value:
            return text
    # ISO: read as such by default; refused, naming the stated format, otherwise
    return value.date().isoformat() if value.time() == time(0) else value.isoformat()


def table_from_records(
    label: str, records: list[tuple[int, list[str]]], problems: list[Problem], fmt: CohortFormat
) -> RawTable | None:
    """Build a :class:`RawTable` from numbered records; the first non-blank one is the header.

    Problems found (empty file, another separator, unnamed or repeated columns, rows with
    more fields than the header) are appended to ``problems``. The table keeps ``fmt``.
    """
    records = [
        (n, [c.strip() for c in cells]) for n, cells in records if any(c.strip() for c in cells)
    ]
    if not records:
        problems.append(
            Problem(label, None, None, "", "a header row and data rows (the file is empty)")
        )
        return None
    (header_row, header), body = records[0], records[1:]
    if _wrong_separator(label, header_row, header, fmt.sep, problems):
        return None
    body = _rows_that_fit(label, len(header), body, problems)
    frame = pd.DataFrame(
        [cells + [""] * (len(header) - len(cells)) for _, cells in body],
        index=pd.Index([n for n, _ in body], name="source_row", dtype="int64"),
        columns=range(len(header)),
        dtype=object,
    )
    keep = _named_columns(label, header_row, header, frame, problems)
    frame = frame[list(keep)].set_axis(list(keep.values()), axis=1)
    return RawTable(label=label, frame=frame, file_format=fmt)


def _wrong_separator(
    label: str, header_row: int, header: list[str], sep: str, problems: list[Problem]
) -> bool:
    """Report a header read as one field that holds another separator."""
    if len(header) != 1:
        return False
    for other in _SEPARATORS:
        if other == sep or other not in header[0]:
            continue
        found = separator_name(other)
        if sep == ",":
            expected = (
                f"fields separated by ',': the file is separated by {found}; say so with "
                + how_to_state("sep", other)
            )
        else:
            expected = (
                f"fields separated by {separator_name(sep)}, as stated (--sep or "
                f"cohort.toml), but the file is separated by {found}"
            )
        problems.append(Problem(label, header_row, None, header[0], expected))
        return True
    return False


def _rows_that_fit(
    label: str, width: int, body: list[tuple[int, list[str]]], problems: list[Problem]
) -> list[tuple[int, list[str]]]:
    """Rows with no more fields than the header has; the others are reported.

    A row with more fields, even empty ones, is never trimmed: an unquoted decimal comma
    shifts every later value one column to the right.
    """
    fitting = []
    for number, cells in body:
        if len(cells) > width:
            problems.append(
                Problem(
                    label,
                    number,
                    None,
                    ",".join(cells),
                    f"at most {width} fields, as in the header row (found {len(cells)}); "
                    "a decimal comma such as 4,5 splits a field in two: write 4.5",
                    kind="more fields than the header",
                )
            )
            continue
        fitting.append((number, cells[:width]))
    return fitting


def _named_columns(
    label: str, header_row: int, header: list[str], frame: pd.DataFrame, problems: list[Problem]
) -> dict[int, str]:
    """Positions of the columns to keep, with their names; unnamed or repeated ones reported."""
    keep: dict[int, str] = {}
    for position, name in enumerate(header):
        has_values = bool((frame[position] != "").any())
        if name == "":
            if has_values:
                problems.append(
                    Problem(
                        label,
                        header_row,
                        None,
                        "",
                        f"a name in the header row for column {position + 1}, which has values",
                    )
                )
            continue
        if name in keep.values():
            problems.append(
                Problem(label, header_row, name, name, "each column name once in the header")
            )
            continue
        keep[position] = name
    return keep
