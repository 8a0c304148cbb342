"""Exceptions raised by magbayes, each carrying enough context to act on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem found in a cohort file.

    Attributes
    ----------
    file : str
        File name as the user knows it (``visits.csv``, or ``cohort.xlsx[visits]``).
    row : int or None
        Row number as in the file, header = row 1; ``None`` when the problem is about the
        whole file (empty file, missing column).
    column : str or None
        Column name, or ``None`` when the problem is about a whole row or file.
    value : str
        The offending value as text (empty string when there is none).
    expected : str
        What was expected instead, in words.
    """

    file: str
    row: int | None
    column: str | None
    value: str
    expected: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        shown = f"value {self.value!r}: " if self.value != "" else ""
        return f"{where}: {shown}{self.expected}"


class CohortError(ValueError):
    """A cohort folder has one or more problems; ``problems`` lists every one found."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"{len(self.problems)} problem(s) in cohort"
        if source:
            head += f" {source}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class SpecError(ValueError):
    """A model spec file is malformed or names something that does not exist.

    ``problems`` lists each problem of the spec on its own (one line each) when the spec was
    checked against its model's schema (:func:`magbayes.spec_schema.check_spec`).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems) if problems else [message]
        super().__init__(message)
