"""Reading whole columns of a :class:`~magbayes.cohort.raw.RawTable`, noting every problem.

A :class:`ProblemLog` collects problems as they are found; nothing is raised here, so one
pass over a cohort reports everything at once.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from magbayes.cohort.raw import RawTable
from magbayes.cohort.values import Rule, UnreadableError, is_missing, parse_number
from magbayes.errors import Problem


class ProblemLog:
    """Every problem found so far, in the order found."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(
        self,
        file: str,
        row: int | None,
        column: str | None,
        value: str,
        expected: str,
        *,
        kind: str = "",
    ):
        """Note one problem (see :class:`magbayes.errors.Problem` for the fields)."""
        self.problems.append(Problem(file, row, column, value, expected, kind=kind))


def require_columns(table: RawTable, columns: Iterable[str], log: ProblemLog) -> bool:
    """Note each required column the header lacks; ``True`` when none is missing."""
    all_there = True
    for column in columns:
        if not table.has(column):
            log.add(table.label, None, column, "", missing_column_words(table, column))
            all_there = False
    return all_there


def missing_column_words(table: RawTable, column: str) -> str:
    """What to say about a missing column, pointing at a near miss in letter case."""
    words = f"a column named '{column}' (required)"
    for name in table.frame.columns:
        if name.strip().lower() == column.lower():
            words += f"; found '{name}': column names are lower case, as written here"
    return words


def read_column(
    table: RawTable,
    column: str,
    rule: Rule,
    log: ProblemLog,
    *,
    required: bool = False,
    required_because: str = "",
) -> pd.Series:
    """Parse every cell of one column with ``rule``.

    Parameters
    ----------
    table : RawTable
        The file.
    column : str
        A column the header has.
    rule : Rule
        Parser and expected-value words.
    log : ProblemLog
        Receives a problem for each unreadable cell, and for each empty one if required.
    required : bool
        Whether an empty cell is a problem.
    required_because : str
        Why it is required, added to the message.

    Returns
    -------
    pandas.Series
        Parsed values (object dtype), ``None`` where the cell is empty or unreadable,
        indexed by row number.
    """
    values = []
    for row, text in table.frame[column].items():
        values.append(
            _read_cell(table.label, row, column, text, rule, log, required, required_because)
        )
    return pd.Series(values, index=table.frame.index, dtype=object)


def _read_cell(
    label: str,
    row: int,
    column: str,
    text: str,
    rule: Rule,
    log: ProblemLog,
    required: bool,
    required_because: str,
) -> object:
    if is_missing(text):
        if required:
            because = f" ({required_because})" if required_because else ""
            log.add(
                label,
                row,
                column,
                text,
                f"{rule.expected}; required, but the cell is empty{because}",
            )
        return None
    try:
        return rule.parse(text)
    except UnreadableError as err:
        hint = f"; {err.hint}" if err.hint else ""
        log.add(label, row, column, text, rule.expected + hint, kind=f"{rule.expected}; {err.kind}")
        return None


def read_extra_column(table: RawTable, column: str, log: ProblemLog) -> pd.Series:
    """A column the format does not define, kept for use as a covariate.

    Returns
    -------
    pandas.Series
        Float when every value is a number; text (``string`` dtype) otherwise. Empty cells
        are missing. When the only values that are not numbers are numbers written in
        another notation (the other decimal mark, a thousands separator), each is
        reported instead of the column silently becoming text.
    """
    decimal = table.file_format.decimal
    texts = table.frame[column]
    present = texts[~texts.map(is_missing)]
    numbers = pd.Series(float("nan"), index=texts.index)
    unreadable: dict[int, tuple[str, UnreadableError]] = {}
    for row, text in present.items():
        try:
            numbers[row] = parse_number(text, decimal)
        except UnreadableError as err:
            unreadable[row] = (text, err)
    if not unreadable:
        return numbers.astype(float)
    if all(err.notation for _, err in unreadable.values()):
        mark = "point" if decimal == "." else "comma"
        for row, (text, err) in unreadable.items():
            expected = f"a number written with a decimal {mark}"
            log.add(table.label, row, column, text, f"{expected}; {err.hint}", kind=err.kind)
    return texts.where(~texts.map(is_missing)).astype("string")
