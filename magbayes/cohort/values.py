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

#: Cell texts that mean "no value": an empty cell, or ``NA`` as R's ``write.csv`` writes it.
MISSING_TEXTS: frozenset[str] = frozenset({"", "NA"})

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_DECIMAL_COMMA = re.compile(r"^([+-]?\d+),(\d+)$")
_THOUSANDS_COMMA = re.compile(r"^[+-]?\d{1,3}(,\d{3})+$")
_DOTS_THEN_COMMA = re.compile(r"^([+-]?\d{1,3}(?:\.\d{3})+),(\d+)$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_OTHER_DATE = re.compile(r"^\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}$")


class UnreadableError(ValueError):
    """A cell's text is not a value of the expected kind.

    Parameters
    ----------
    hint : str
        Why, when that helps the user (``"decimal comma: use 4.5"``); empty otherwise.
    """

    def __init__(self, hint: str = ""):
        super().__init__(hint)
        self.hint = hint


def is_missing(text: str) -> bool:
    """Whether a cell's text means "no value" (empty, or ``NA``)."""
    return text in MISSING_TEXTS


def parse_number(text: str) -> float:
    """Read a decimal number written with a decimal point (``4.5``, ``-0.25``, ``1e3``).

    Raises
    ------
    UnreadableError
        For anything else; a decimal comma (``4,5``) or a thousands separator is named
        in the hint, never read as something else.
    """
    if _NUMBER.match(text):
        return float(text)
    raise UnreadableError(_why_not_a_number(text))


def _why_not_a_number(text: str) -> str:
    if _THOUSANDS_COMMA.match(text):
        digits = text.replace(",", "")
        as_decimal = text.replace(",", ".", 1) if text.count(",") == 1 else None
        if as_decimal is not None:
            return (
                f"decimal comma or thousands separator: use {as_decimal} (decimal) "
                f"or {digits} (thousands)"
            )
        return f"thousands separator: use {digits}"
    match = _DECIMAL_COMMA.match(text)
    if match:
        return f"decimal comma: use {match.group(1)}.{match.group(2)}"
    match = _DOTS_THEN_COMMA.match(text)
    if match:
        return f"decimal comma: use {match.group(1).replace('.', '')}.{match.group(2)}"
    if _ISO_DATE.match(text) or _OTHER_DATE.match(text):
        return "this looks like a date, not a number"
    return ""


def parse_integer(text: str) -> int:
    """Read a whole number (``3``; ``3.0`` as some programs write it is accepted too).

    Raises
    ------
    UnreadableError
        If the text is not a number, or the number is not whole.
    """
    number = parse_number(text)
    if not number.is_integer():
        raise UnreadableError("not a whole number")
    return int(number)


def parse_date(text: str) -> datetime:
    """Read an ISO date, ``YYYY-MM-DD`` (an ISO time of day after it is allowed).

    Raises
    ------
    UnreadableError
        For any other form; day/month forms such as ``12/03/2015`` are refused because
        their order is ambiguous, and a plain number is named as such.
    """
    if _ISO_DATE.match(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise UnreadableError("no such calendar date") from None
    if _OTHER_DATE.match(text):
        raise UnreadableError("write dates as YYYY-MM-DD (day/month order is ambiguous)")
    if _NUMBER.match(text) or _DECIMAL_COMMA.match(text):
        raise UnreadableError("this looks like a number, not a date")
    raise UnreadableError("")


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


def date_rule(meaning: str) -> Rule:
    """An ISO date (``YYYY-MM-DD``)."""
    return Rule(expected=f"an ISO date YYYY-MM-DD ({meaning})", parse=parse_date)


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
        value = parse_integer(text) if integer else parse_number(text)
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
