"""Parsing one cell of a cohort file, from its text, without guessing.

Every value in a cohort file is read as text and parsed here. A value that cannot be read
raises :class:`UnreadableError` with a hint (``"decimal comma: use 4.5"``) that the caller adds
to the problem it reports; nothing is coerced silently. A :class:`Rule` bundles a parser
with the words that say what the column expects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from magbayes.cohort.fileformat import CohortFormat, how_to_state

#: Cell texts that mean "no value": an empty cell, or ``NA`` as R's ``write.csv`` writes it.
MISSING_TEXTS: frozenset[str] = frozenset({"", "NA"})

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_COMMA_NUMBER = re.compile(r"^[+-]?(\d+(,\d*)?|,\d+)([eE][+-]?\d+)?$")
_SPACED_THOUSANDS = re.compile(r"^[+-]?\d{1,3}([ \u00a0\u202f]\d{3})+([.,]\d+)?$")
_DECIMAL_COMMA = re.compile(r"^([+-]?\d+),(\d+)$")
_THOUSANDS_COMMA = re.compile(r"^[+-]?[1-9]\d{0,2}(,\d{3})+$")
_DOTS_THEN_COMMA = re.compile(r"^([+-]?\d{1,3}(?:\.\d{3})+),(\d+)$")
_DOTS_THEN_DECIMAL_COMMA = re.compile(r"^([+-]?\d{1,3}(?:\.\d{3})+)(,\d+)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_OTHER_DATE = re.compile(r"^(\d{1,4})([/.-])(\d{1,2})[/.-](\d{1,4})$")


class UnreadableError(ValueError):
    """A cell's text is not a value of the expected kind.

    Parameters
    ----------
    hint : str
        Why, when that helps the user (``"decimal comma: use 4.5"``); empty otherwise.
    kind : str
        The kind of problem when the hint names something particular to the value
        (``"decimal comma"``), so that many such cells are reported together; empty when
        the hint says it already.
    notation : bool
        Whether the text is a number written in another notation (another decimal mark,
        a thousands separator): a column of such numbers is not text.
    """

    def __init__(self, hint: str = "", *, kind: str = "", notation: bool = False):
        super().__init__(hint)
        self.hint = hint
        self.kind = kind or hint
        self.notation = notation


def is_missing(text: str) -> bool:
    """Whether a cell's text means "no value" (empty, or ``NA``)."""
    return text in MISSING_TEXTS


def parse_number(text: str, decimal: str = ".") -> float:
    """Read a decimal number written with the file's decimal mark (``4.5``, ``-0.25``, ``1e3``).

    Parameters
    ----------
    text : str
        The cell's text.
    decimal : str
        The file's decimal mark, ``"."`` (default) or ``","`` (``4,5``).

    Raises
    ------
    UnreadableError
        For anything else; a number written with the other decimal mark or with a
        thousands separator is named in the hint, never read as something else.
    """
    if decimal == ",":
        if _COMMA_NUMBER.match(text):
            return float(text.replace(",", "."))
        raise _why_not_a_comma_number(text)
    if _NUMBER.match(text):
        return float(text)
    raise _why_not_a_number(text)


_DECIMAL_COMMA_ADVICE = (
    "; if the file writes every decimal with a comma, say so with " + how_to_state("decimal", ",")
)


def _why_not_a_number(text: str) -> UnreadableError:
    """Why a text is not a number written with a decimal point."""
    spaced = _spaced_thousands(text)
    if spaced:
        return spaced
    if _THOUSANDS_COMMA.match(text):
        digits = text.replace(",", "")
        if text.count(",") == 1:
            hint = (
                f"decimal comma or thousands separator: use {text.replace(',', '.')} (decimal) "
                f"or {digits} (thousands){_DECIMAL_COMMA_ADVICE}"
            )
            return UnreadableError(hint, kind="decimal comma", notation=True)
        hint = f"thousands separator: use {digits}"
        return UnreadableError(hint, kind="thousands separator", notation=True)
    match = _DECIMAL_COMMA.match(text) or _DOTS_THEN_COMMA.match(text)
    if match:
        hint = f"decimal comma: use {match.group(1).replace('.', '')}.{match.group(2)}"
        return UnreadableError(hint + _DECIMAL_COMMA_ADVICE, kind="decimal comma", notation=True)
    if _ISO_DATE.match(text) or _OTHER_DATE.match(text):
        return UnreadableError("this looks like a date, not a number")
    return UnreadableError("")


def _why_not_a_comma_number(text: str) -> UnreadableError:
    """Why a text is not a number written with a decimal comma."""
    spaced = _spaced_thousands(text)
    if spaced:
        return spaced
    if _NUMBER.match(text):
        hint = (
            "a decimal point, but this cohort's decimal mark is ',' (as stated with "
            f"--decimal or in cohort.toml): use {text.replace('.', ',')}"
        )
        return UnreadableError(hint, kind="decimal point", notation=True)
    match = _DOTS_THEN_DECIMAL_COMMA.match(text)
    if match:
        hint = f"thousands separator: use {match.group(1).replace('.', '')}{match.group(2) or ''}"
        return UnreadableError(hint, kind="thousands separator", notation=True)
    if _ISO_DATE.match(text) or _OTHER_DATE.match(text):
        return UnreadableError("this looks like a date, not a number")
    return UnreadableError("")


def _spaced_thousands(text: str) -> UnreadableError | None:
    if not _SPACED_THOUSANDS.match(text):
        return None
    digits = re.sub(r"[ \u00a0\u202f]", "", text)
    return UnreadableError(
        f"thousands separator (a space): use {digits}", kind="thousands separator", notation=True
    )


def parse_integer(text: str, decimal: str = ".") -> int:
    """Read a whole number (``3``; ``3.0`` as some programs write it is accepted too).

    Raises
    ------
    UnreadableError
        If the text is not a number, or the number is not whole.
    """
    number = parse_number(text, decimal)
    if not number.is_integer():
        raise UnreadableError("not a whole number")
    return int(number)


def parse_date(text: str, date_format: str | None = None) -> datetime:
    """Read a date: ISO by default, or written as the stated format.

    ISO is ``YYYY-MM-DD``, an ISO time of day after it allowed; a stated format is read
    with :func:`datetime.strptime`.

    Raises
    ------
    UnreadableError
        For any other form. Without a stated format, day/month forms such as
        ``12/03/2015`` are refused (their order is ambiguous) with the option that
        states the format; a plain number is named as such.
    """
    if date_format is not None:
        return _parse_stated_date(text, date_format)
    if _ISO_DATE.match(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise UnreadableError("no such calendar date") from None
    match = _OTHER_DATE.match(text)
    if match:
        raise UnreadableError(_date_format_advice(match), kind="not an ISO date")
    if _NUMBER.match(text) or _DECIMAL_COMMA.match(text):
        raise UnreadableError("this looks like a number, not a date")
    raise UnreadableError("")


def _parse_stated_date(text: str, date_format: str) -> datetime:
    try:
        return datetime.strptime(text, date_format)
    except ValueError as err:
        if "does not match format" not in str(err) and "unconverted data" not in str(err):
            raise UnreadableError("no such calendar date") from None
    if _ISO_DATE.match(text):
        hint = f"an ISO date, but this cohort's dates are written {date_format}"
        raise UnreadableError(hint + " (as stated with --date-format or in cohort.toml)")
    if _NUMBER.match(text) or _DECIMAL_COMMA.match(text):
        raise UnreadableError("this looks like a number, not a date")
    raise UnreadableError("")


def _date_format_advice(match: re.Match) -> str:
    """What to say about a date such as ``03/04/2015``: the format to state, and why."""
    first, sep, second, last = (match.group(i) for i in (1, 2, 3, 4))
    year = "%Y" if len(last) == 4 else "%y"
    if len(first) == 4:
        order, stated = "if the file uses year/month/day", f"%Y{sep}%m{sep}%d"
    elif int(second) > 12 >= int(first):
        order, stated = "month/day/year (the second number is above 12)", f"%m{sep}%d{sep}{year}"
    elif int(first) > 12:
        order, stated = "day/month/year (the first number is above 12)", f"%d{sep}%m{sep}{year}"
    else:
        order = "day/month order is ambiguous; if the file uses day/month/year"
        stated = f"%d{sep}%m{sep}{year}"
    return f"{order}, say so with {how_to_state('date_format', stated)}"


@dataclass(frozen=True)
class Rule:
    """How to read one column: a parser and what the column expects, in words.

    Attributes
    ----------
    expected : str
        What a valid value is, as the problem report says it
        (``"an integer from 0 to 10 (INCAT disability score)"``).
    parse : callable
        Text (never missing) to value; raises :class:`UnreadableError`.
    """

    expected: str
    parse: Callable[[str], object]


def text_rule(meaning: str) -> Rule:
    """Any non-empty text, e.g. an identifier."""
    return Rule(expected=meaning, parse=lambda text: text)


def date_rule(meaning: str, fmt: CohortFormat) -> Rule:
    """A date: ISO (``YYYY-MM-DD``), or written in the format ``fmt`` states."""
    if fmt.date_format is None:
        return Rule(expected=f"an ISO date YYYY-MM-DD ({meaning})", parse=parse_date)
    example = datetime(2012, 6, 30).strftime(fmt.date_format)
    return Rule(
        expected=f"a date written {fmt.date_format}, e.g. {example} ({meaning})",
        parse=lambda text: parse_date(text, fmt.date_format),
    )


def choice_rule(allowed: Sequence[str], meaning: str) -> Rule:
    """One of a fixed set of words, spelled exactly; a near miss is suggested."""
    allowed = tuple(allowed)

    def parse(text: str) -> str:
        if text in allowed:
            return text
        near = _near_choice(text, allowed)
        raise UnreadableError(f"did you mean {near!r}?" if near else "")

    return Rule(expected=f"one of {', '.join(allowed)} ({meaning})", parse=parse)


def _near_choice(text: str, allowed: tuple[str, ...]) -> str | None:
    folded = re.sub(r"[\s\-]+", "_", text.strip().lower())
    for option in allowed:
        if folded == option.lower():
            return option
    return None


def number_rule(
    meaning: str,
    fmt: CohortFormat,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> Rule:
    """A number, optionally whole and bounded.

    Parameters
    ----------
    meaning : str
        What the number is, with its unit (``"sural SNAP amplitude, µV"``).
    fmt : CohortFormat
        How the file is written (its decimal mark).
    minimum, maximum : float, optional
        Inclusive bounds.
    above : float, optional
        Exclusive lower bound (the value must be greater).
    integer : bool
        Whether the value must be a whole number.
    """
    expected = f"{'an integer' if integer else 'a number'}{_bounds_words(minimum, above, maximum)}"
    expected += f" ({meaning})"

    def parse(text: str) -> float | int:
        value = parse_integer(text, fmt.decimal) if integer else parse_number(text, fmt.decimal)
        too_low = (minimum is not None and value < minimum) or (
            above is not None and value <= above
        )
        too_high = maximum is not None and value > maximum
        if too_low or too_high:
            raise UnreadableError("")
        return value

    return Rule(expected=expected, parse=parse)


def _bounds_words(minimum: float | None, above: float | None, maximum: float | None) -> str:
    def show(x: float) -> str:
        return f"{x:g}"

    if minimum is not None and maximum is not None:
        return f" from {show(minimum)} to {show(maximum)}"
    words = ""
    if minimum is not None:
        words += f" >= {show(minimum)}"
    if above is not None:
        words += f" > {show(above)}"
    if maximum is not None:
        words += f" <= {show(maximum)}"
    return words
