"""Checking a model spec before anything is fitted.

Each model definition (:class:`magbayes.models.base.ModelDefinition`) holds its spec's
schema: ``defaults`` (every table and key it reads, with its default value, whose type is
the type the key must have) and ``rules`` (table -> key -> :class:`Rule`: the values a key
accepts beyond its type, and the keys a spec may set that have no default, such as
``[sampler] prior_draws`` or the ``[priors.sensitivity]`` table). :func:`spec_problems`
compares a spec with them and lists every problem at once; :func:`check_spec` raises them
as one :class:`~magbayes.errors.SpecError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from magbayes.errors import SpecError

#: Top-level keys a spec may hold besides its tables: the model's name and documentation.
TOP_LEVEL_KEYS: tuple[str, ...] = ("model", "description")


@dataclass(frozen=True)
class Rule:
    """What one spec key accepts.

    Attributes
    ----------
    expected : str
        The accepted values in words (``"a positive number"``), for the error message.
    accepts : callable
        ``accepts(value) -> bool``; it checks the type too.
    choices : tuple of str
        For a key naming one of a few options: the options (used to suggest one).
    """

    expected: str
    accepts: Callable[[Any], bool]
    choices: tuple[str, ...] = ()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive() -> Rule:
    """A number above 0 (a prior's scale or sd, a window in years)."""
    return Rule("a positive number", lambda v: _is_number(v) and v > 0)


def at_least_zero() -> Rule:
    """A number of 0 or more (a threshold in µV, a time in years)."""
    return Rule("a number of 0 or more", lambda v: _is_number(v) and v >= 0)


def number() -> Rule:
    """Any number (a prior's mean)."""
    return Rule("a number", _is_number)


def positive_integer() -> Rule:
    """An integer of 1 or more (draws, chains)."""
    return Rule("a positive integer", lambda v: _is_integer(v) and v >= 1)


def whole_number() -> Rule:
    """An integer of 0 or more (a seed, extra doublings, cores where 0 means all)."""
    return Rule("an integer of 0 or more", lambda v: _is_integer(v) and v >= 0)


def open_fraction() -> Rule:
    """A number strictly between 0 and 1 (a probability such as target_accept)."""
    return Rule("a number between 0 and 1 (both excluded)", lambda v: _is_number(v) and 0 < v < 1)


def boolean() -> Rule:
    """``true`` or ``false``."""
    return Rule("true or false", lambda v: isinstance(v, bool))


def one_of(*choices: str) -> Rule:
    """One of a few named options."""
    shown = ", ".join(f"'{c}'" for c in choices)
    return Rule(f"one of {shown}", lambda v: isinstance(v, str) and v in choices, tuple(choices))


def list_of(item: Rule, *, non_empty: bool = True) -> Rule:
    """A list whose every element the rule ``item`` accepts."""
    words = f"a {'non-empty ' if non_empty else ''}list, each element {item.expected}"
    return Rule(
        words,
        lambda v: isinstance(v, list) and (bool(v) or not non_empty) and all(map(item.accepts, v)),
        item.choices,
    )


def increasing_from_zero() -> Rule:
    """A list of numbers that starts at 0 and increases (period boundaries in years)."""
    return Rule(
        "a list of numbers starting at 0 and increasing",
        lambda v: (
            isinstance(v, list)
            and bool(v)
            and all(map(_is_number, v))
            and v[0] == 0
            and all(b > a for a, b in zip(v, v[1:], strict=False))
        ),
    )


def _rule_of_default(default: Any) -> Rule:
    """The type a key must have, from its default value."""
    if isinstance(default, bool):
        return boolean()
    if isinstance(default, int):
        return Rule("an integer", _is_integer)
    if isinstance(default, float):
        return number()
    if isinstance(default, str):
        return Rule("text (in quotes)", lambda v: isinstance(v, str))
    if isinstance(default, list):
        if default and all(isinstance(d, str) for d in default):
            return Rule(
                "a list of text",
                lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
            )
        if default and all(map(_is_number, default)):
            return Rule(
                "a list of numbers", lambda v: isinstance(v, list) and all(map(_is_number, v))
            )
        return Rule("a list", lambda v: isinstance(v, list))
    return Rule(f"a {type(default).__name__}", lambda v: isinstance(v, type(default)))


def _suggestion(word: str, candidates: list[str], quote: str = "`") -> str:
    """``"; did you mean `x`?"`` for the candidate that ``word`` begins or most resembles."""
    close = [c for c in candidates if word and c.startswith(word)][:1]
    close = close or difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {quote}{close[0]}{quote}?" if close else ""


def _table_problems(
    table: str,
    values: Mapping[str, Any],
    defaults: Mapping[str, Any],
    rules: Mapping[str, Mapping[str, Rule]],
) -> list[str]:
    own_rules = rules.get(table, {})
    subtables = {k for k, v in defaults.items() if isinstance(v, dict)}
    subtables |= {name.rpartition(".")[2] for name in rules if name.rpartition(".")[0] == table}
    known = sorted(set(defaults) | set(own_rules) | subtables)
    problems: list[str] = []
    for key, value in values.items():
        if key in subtables:
            if not isinstance(value, dict):
                problems.append(f"[{table}.{key}] must be a table, not {value!r}")
                continue
            problems += _table_problems(f"{table}.{key}", value, defaults.get(key, {}), rules)
            continue
        if key not in known:
            hint = _suggestion(key, known) or f"; its keys are {', '.join(known)}"
            problems.append(f"`{key}` is not a key of [{table}]{hint}")
            continue
        rule = own_rules.get(key) or _rule_of_default(defaults[key])
        if rule.accepts(value):
            continue
        hint = _suggestion(value, list(rule.choices), "'") if isinstance(value, str) else ""
        problems.append(f"[{table}] `{key}` must be {rule.expected}, not {value!r}{hint}")
    return problems


def spec_problems(
    data: Mapping[str, Any],
    defaults: Mapping[str, Any],
    rules: Mapping[str, Mapping[str, Rule]],
    model: str,
) -> list[str]:
    """Every problem of a spec, in words (empty when it is valid).

    Parameters
    ----------
    data : mapping
        The spec as read from TOML (or with defaults and overrides merged in).
    defaults : mapping
        The model's ``DEFAULTS``: its tables, keys and their types.
    rules : mapping
        The model's ``SPEC_RULES``: ``{table: {key: Rule}}``; a nested table is named
        ``"table.sub"``.
    model : str
        The model's name (for messages).

    Returns
    -------
    list of str
        One line per problem, naming the table and the key (and the closest valid key).
    """
    tables = sorted({k for k, v in defaults.items() if isinstance(v, dict)} | set(rules))
    tables = [t for t in tables if "." not in t]
    problems: list[str] = []
    for key, value in data.items():
        if key in TOP_LEVEL_KEYS:
            if not isinstance(value, str):
                problems.append(f"`{key}` must be text (in quotes), not {value!r}")
            continue
        if key not in tables:
            close = difflib.get_close_matches(key, tables, n=1, cutoff=0.6)
            hint = (
                f"; did you mean [{close[0]}]?"
                if close
                else f"; its tables are {', '.join(tables)}"
            )
            problems.append(f"[{key}] is not a table of a {model} spec{hint}")
            continue
        if not isinstance(value, dict):
            problems.append(f"[{key}] must be a table, not {value!r}")
            continue
        problems += _table_problems(key, value, defaults.get(key, {}), rules)
    return problems


def check_spec(model: str, data: Mapping[str, Any], source: str) -> None:
    """Raise every problem of a spec at once.

    Parameters
    ----------
    model : str
        The model's name; its definition's ``defaults`` and ``rules`` are the schema.
    data : mapping
        The spec's tables.
    source : str
        Where the spec came from (its file), named first in the message.

    Raises
    ------
    SpecError
        Listing every unknown table or key (with the closest valid one), wrong type and
        value out of range; ``problems`` holds the lines.
    """
    from magbayes.models import get_model

    definition = get_model(model)
    problems = spec_problems(data, dict(definition.defaults), definition.rules, model)
    if not problems:
        return
    if len(problems) == 1:
        message = f"{source}: {problems[0]}"
    else:
        lines = "\n".join(f"  - {p}" for p in problems)
        message = f"{source}: {len(problems)} problems in the model spec:\n{lines}"
    raise SpecError(message, problems=problems)
