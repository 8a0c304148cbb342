"""Exceptions raised by magbayes, each carrying enough context to act on."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Problems of one kind in one column are shown on one line from this many on.
GROUP_FROM = 3

#: Rows named on a grouped line before "...".
ROWS_SHOWN = 5


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
    kind : str
        What kind of problem this is, when ``expected`` names something particular to the
        value (``"decimal comma: use 4.5"``); problems of one kind in one file and column
        are shown on one line (:func:`problem_lines`). Empty: ``expected`` is the kind.
    """

    file: str
    row: int | None
    column: str | None
    value: str
    expected: str
    kind: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        shown = f": value {self.value!r}" if self.value != "" else ""
        return f"{where}{shown}: expected {self.expected}"

    @property
    def group(self) -> tuple[str, str | None, str] | None:
        """File, column and kind shared by problems shown together; ``None``: shown alone."""
        if self.row is None:
            return None
        return self.file, self.column, self.kind or self.expected


def grouped_line(problems: list[Problem]) -> str:
    """Problems of one kind in one column on one line: count, first rows, first value.

    ``visits.csv, column 'date': 300 values (rows 2, 3, 4, 5, 6, ...; first value
    '03/04/2015'): expected ...``, the explanation being the first problem's.
    """
    first = problems[0]
    where = first.file if first.column is None else f"{first.file}, column '{first.column}'"
    rows = ", ".join(str(p.row) for p in problems[:ROWS_SHOWN])
    rows += ", ..." if len(problems) > ROWS_SHOWN else ""
    if first.column is None:
        counted = f"{len(problems)} rows (rows {rows})"
    elif first.value == "":
        counted = f"{len(problems)} empty cells (rows {rows})"
    else:
        counted = f"{len(problems)} values (rows {rows}; first value {first.value!r})"
    return f"{where}: {counted}: expected {first.expected}"


def problem_lines(problems: list[Problem]) -> list[str]:
    """One line per problem; many problems of one kind in one column on one line.

    Problems that share :attr:`Problem.group` (file, column, kind) are one line when there
    are :data:`GROUP_FROM` or more.

    Lines keep the order of the problems; a group stands where its first problem is.
    """
    members: dict[tuple, list[Problem]] = {}
    for problem in problems:
        if problem.group is not None:
            members.setdefault(problem.group, []).append(problem)
    lines, done = [], set()
    for problem in problems:
        group = members.get(problem.group) if problem.group is not None else None
        if group is None or len(group) < GROUP_FROM:
            lines.append(str(problem))
        elif problem.group not in done:
            done.add(problem.group)
            lines.append(grouped_line(group))
    return lines


class CohortError(ValueError):
    """A cohort folder has one or more problems; ``problems`` lists every one found.

    The message groups many problems of one kind in one column (:func:`problem_lines`);
    ``problems`` keeps each of them.
    """

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"{len(self.problems)} problem(s) in cohort"
        if source:
            head += f" {source}"
        super().__init__(
            head + ":\n" + "\n".join(f"  - {line}" for line in problem_lines(self.problems))
        )


class SpecError(ValueError):
    """A model spec file is malformed or names something that does not exist.

    ``problems`` lists each problem of the spec on its own (one line each) when the spec was
    checked against its model's schema (:func:`magbayes.spec_schema.check_spec`).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems) if problems else [message]
        super().__init__(message)


class ResultsFolderError(ValueError):
    """A results folder cannot be used as asked (the subclasses say why)."""


class ResultsLayoutError(ResultsFolderError):
    """A results folder was written in another results layout than this magbayes reads."""


class CohortMismatchError(ResultsFolderError):
    """A cohort was given with a results folder fitted to another cohort (SHA-256 differs)."""
