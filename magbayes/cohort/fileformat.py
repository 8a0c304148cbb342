"""How a cohort's files are written: date format, field separator, decimal mark.

The defaults are ISO dates, ``,`` between fields and ``.`` decimals. A user whose
spreadsheet writes otherwise says so, once: with the keyword arguments of
:func:`magbayes.load_cohort` (the command line's ``--date-format``, ``--sep`` and
``--decimal``), or in a ``cohort.toml`` beside the cohort's files with the same keys.
What is stated wins over ``cohort.toml``. Nothing is guessed.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from datetime import datetime

from magbayes.errors import CohortError, Problem

#: File beside the cohort's tables that states how they are written.
FORMAT_FILE = "cohort.toml"

#: Keys of ``cohort.toml`` (and keyword arguments of ``load_cohort``).
FORMAT_KEYS: tuple[str, ...] = ("date_format", "sep", "decimal")

#: Decimal marks a file may use.
DECIMAL_MARKS: tuple[str, ...] = (".", ",")

#: A date every format must write and read back unchanged (day > 12 tells day from month).
_PROBE_DATE = datetime(2012, 6, 30)


@dataclass(frozen=True)
class CohortFormat:
    """How the cohort's files are written.

    Attributes
    ----------
    date_format : str or None
        :func:`datetime.strptime` format of every date (``"%d/%m/%Y"``); ``None`` for ISO
        dates (``YYYY-MM-DD``, optionally with a time of day).
    sep : str
        Field separator of the CSV files: one character (``","``, ``";"``, a tab).
    decimal : str
        Decimal mark of numbers: ``"."`` or ``","``.

    Raises
    ------
    ValueError
        For a separator that is not one character, a decimal mark other than ``.`` or
        ``,``, or a date format that does not write and read back a whole date (day,
        month and year).
    """

    date_format: str | None = None
    sep: str = ","
    decimal: str = "."

    def __post_init__(self) -> None:
        for key in FORMAT_KEYS:
            problem = value_problem(key, getattr(self, key))
            if problem:
                raise ValueError(f"{key}: {problem}")

    @property
    def is_default(self) -> bool:
        """Whether this is the default format (ISO dates, ``,``, ``.``)."""
        return self == DEFAULT_FORMAT

    def describe(self) -> str:
        """The format in words: ``"fields separated by ';', decimal ',', dates %d/%m/%Y"``."""
        dates = self.date_format if self.date_format else "ISO (YYYY-MM-DD)"
        sep = separator_name(self.sep)
        return f"fields separated by {sep}, decimal {self.decimal!r}, dates {dates}"

    def as_dict(self) -> dict[str, str | None]:
        """The three keys and their values, as ``cohort.toml`` would state them."""
        return {key: getattr(self, key) for key in FORMAT_KEYS}


def value_problem(key: str, value: object) -> str:
    """What is wrong with one stated value (empty when nothing is).

    Parameters
    ----------
    key : str
        ``"date_format"``, ``"sep"`` or ``"decimal"``.
    value : object
        The stated value (``None`` is the ISO default for ``date_format``).
    """
    if key == "date_format":
        if value is None:
            return ""
        if not isinstance(value, str) or "%" not in value:
            return f"expected a strptime format such as '%d/%m/%Y', got {value!r}"
        try:
            written = _PROBE_DATE.strftime(value)
            read_back = datetime.strptime(written, value)
        except ValueError as err:
            return f"{value!r} is not a usable date format ({err})"
        if read_back.date() != _PROBE_DATE.date():
            return f"{value!r} must give the day, month and year (e.g. '%d/%m/%Y')"
        return ""
    if key == "sep":
        if not isinstance(value, str) or len(value) != 1 or value in "\"'\r\n" or value.isalnum():
            return f"expected one character such as ',' or ';' or a tab, got {value!r}"
        return ""
    if value not in DECIMAL_MARKS:
        return f"expected '.' or ',', got {value!r}"
    return ""


#: ISO dates, ``,`` between fields, ``.`` decimals.
DEFAULT_FORMAT = CohortFormat()


def separator_name(sep: str) -> str:
    """A separator as messages name it: ``';'``, or ``a tab``."""
    return "a tab" if sep == "\t" else repr(sep)


def how_to_state(key: str, value: str) -> str:
    """The two ways of stating one key, for messages.

    ``how_to_state("sep", ";")`` gives ``"--sep ';' or sep = ';' in cohort.toml"``.
    """
    option = f"--{key.replace('_', '-')}"
    if value == "\t":
        return f"{option} '\\t' or {key} = \"\\t\" in {FORMAT_FILE}"
    shown = value if key == "date_format" else f"'{value}'"
    return f"{option} {shown} or {key} = '{value}' in {FORMAT_FILE}"


def resolve_format(
    statement: bytes | None,
    *,
    date_format: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
) -> CohortFormat:
    """The format of a cohort: ``cohort.toml`` overridden by what is stated here.

    Parameters
    ----------
    statement : bytes or None
        The content of ``cohort.toml``, or ``None`` when the cohort has none.
    date_format, sep, decimal : str, optional
        Stated values; each one given replaces ``cohort.toml``'s.

    Returns
    -------
    CohortFormat

    Raises
    ------
    CohortError
        Naming ``cohort.toml`` and the key, for a file that is not TOML, an unknown key
        or a value that cannot be used; or naming the option, for a bad stated value.
    """
    problems: list[Problem] = []
    values = _read_statement(statement, problems) if statement is not None else {}
    for key, value in (("date_format", date_format), ("sep", sep), ("decimal", decimal)):
        if value is None:
            continue
        problem = value_problem(key, value)
        if problem:
            option = f"--{key.replace('_', '-')}"
            problems.append(Problem(option, None, None, str(value), problem))
        else:
            values[key] = value
    if not problems:
        try:
            return CohortFormat(**values)
        except ValueError as err:
            problems.append(Problem(FORMAT_FILE, None, None, "", str(err)))
    raise CohortError(problems)


def _read_statement(statement: bytes, problems: list[Problem]) -> dict[str, str]:
    """The keys of ``cohort.toml`` that are known and usable; the others become problems."""
    try:
        table = tomllib.loads(statement.decode("utf-8-sig"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        problems.append(Problem(FORMAT_FILE, None, None, "", f"a UTF-8 TOML file ({err})"))
        return {}
    values = {}
    for key, value in table.items():
        if key not in FORMAT_KEYS:
            near = difflib.get_close_matches(key, FORMAT_KEYS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            problems.append(
                Problem(
                    FORMAT_FILE,
                    None,
                    None,
                    "",
                    f"only the keys {', '.join(FORMAT_KEYS)}: unknown key '{key}'{hint}",
                )
            )
            continue
        problem = value_problem(key, value)
        if problem:
            problems.append(Problem(FORMAT_FILE, None, None, "", f"key '{key}': {problem}"))
            continue
        values[key] = value
    return values
