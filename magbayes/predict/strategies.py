"""Treatment strategies as data, applied to each patient's own treatment history.

A :class:`Strategy` says when a patient starts rituximab (or that they never do); every
other treatment stays as observed. :func:`apply_strategy` rewrites one patient's courses
under a strategy, :func:`apply_to_cohort` every patient's, and :func:`load_strategies`
reads strategies from a TOML file of ``[[strategy]]`` tables.

Every time is in years since symptom onset, as in :class:`magbayes.cohort.tables.Cohort`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from magbayes.cohort.tables import RESPONSE_COLUMN, SCORES, Cohort
from magbayes.errors import SpecError
from magbayes.spec_schema import Rule, _suggestion, one_of

RITUXIMAB = "rituximab"

#: Each kind of strategy and the parameter it needs (``None``: it needs none).
KINDS: dict[str, str | None] = {
    "as_observed": None,  # the patient's own treatment history
    "never": None,  # every rituximab course removed
    "at_year": "years_since_onset",  # one course at a fixed time since onset
    "next_visit": None,  # one course at the first visit after the prediction time
    "on_rise": "incat_rise",  # one course when INCAT has risen by this many points
}

#: Columns of the treatments table (:class:`~magbayes.cohort.tables.Cohort`) a course must have.
COURSE_COLUMNS: tuple[str, ...] = ("patient_id", "treatment", "line", "start_years")

_INCAT_HIGHEST = int(SCORES["incat"][1])


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


#: What each key of a ``[[strategy]]`` table accepts.
KEY_RULES: dict[str, Rule] = {
    "name": Rule("non-empty text (in quotes)", lambda v: isinstance(v, str) and v.strip() != ""),
    "kind": one_of(*KINDS),
    "years_since_onset": Rule(
        "a number of years since onset, 0 or more (rituximab cannot start before onset)",
        lambda v: _is_number(v) and v >= 0,
    ),
    "incat_rise": Rule(
        f"a whole number of INCAT points from 1 to {_INCAT_HIGHEST}",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= _INCAT_HIGHEST,
    ),
}


def strategy_problems(values: Mapping[str, Any]) -> list[str]:
    """Every problem of one strategy's keys, in words (empty when it is valid).

    Parameters
    ----------
    values : mapping
        ``name``, ``kind`` and the kind's parameter, as in a ``[[strategy]]`` table.

    Returns
    -------
    list of str
        One line per problem, naming the key (and the closest valid key or kind).
    """
    problems: list[str] = []
    for key, value in values.items():
        if key not in KEY_RULES:
            hint = _suggestion(key, list(KEY_RULES)) or f"; its keys are {', '.join(KEY_RULES)}"
            problems.append(f"`{key}` is not a key of a strategy{hint}")
            continue
        rule = KEY_RULES[key]
        if not rule.accepts(value):
            hint = _suggestion(value, list(rule.choices), "'") if isinstance(value, str) else ""
            problems.append(f"`{key}` must be {rule.expected}, not {value!r}{hint}")
    for key in ("name", "kind"):
        if key not in values:
            problems.append(f"`{key}` is missing: every strategy needs a {key}")
    kind = values.get("kind")
    if kind not in KINDS:
        return problems
    needed = KINDS[kind]
    if needed is not None and needed not in values:
        problems.append(f"kind '{kind}' needs `{needed}` ({KEY_RULES[needed].expected})")
    for key in values:
        if key in KINDS.values() and key != needed:
            takes = f"it takes `{needed}` only" if needed else "it takes no parameter"
            problems.append(f"`{key}` is not a parameter of kind '{kind}' ({takes})")
    return problems


@dataclass(frozen=True)
class Strategy:
    """When a patient starts rituximab; every other treatment as observed.

    Attributes
    ----------
    name : str
        What the strategy is called in tables and figures (``"prompt"``).
    kind : str
        One of :data:`KINDS`:

        - ``as_observed``: the patient's own treatment history;
        - ``never``: every rituximab course removed;
        - ``at_year``: the observed rituximab courses removed, one course added at
          ``years_since_onset``;
        - ``next_visit``: the rituximab courses started up to the prediction time kept,
          later ones removed, one course added at the first visit after the prediction
          time (at the prediction time itself when no later visit is scheduled);
        - ``on_rise``: the observed rituximab courses removed, one course added at the
          first visit whose INCAT is at least ``incat_rise`` points above the first
          visit with an INCAT score; none when that does not happen.
    years_since_onset : float, optional
        For ``at_year``: when rituximab starts (years since onset, 0 or more).
    incat_rise : int, optional
        For ``on_rise``: the rise in INCAT (points, 1 to 10) that starts rituximab.

    Raises
    ------
    ValueError
        Listing every problem: an unknown kind, a parameter the kind needs and lacks, one
        it does not take, a value out of range.
    """

    name: str
    kind: str
    years_since_onset: float | None = None
    incat_rise: int | None = None

    def __post_init__(self) -> None:
        problems = strategy_problems(self.as_dict())
        if problems:
            raise ValueError(f"strategy {self.name!r}: " + "; ".join(problems))
        if self.years_since_onset is not None:
            object.__setattr__(self, "years_since_onset", float(self.years_since_onset))

    def as_dict(self) -> dict[str, Any]:
        """The strategy as a ``[[strategy]]`` table: name, kind and the parameter it sets."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for key in ("years_since_onset", "incat_rise"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def describe(self) -> str:
        """The strategy in words, for tables and figure legends."""
        if self.kind == "as_observed":
            return "treatments as observed"
        if self.kind == "never":
            return "never rituximab"
        if self.kind == "at_year":
            return f"rituximab at year {self.years_since_onset:g} since onset"
        if self.kind == "next_visit":
            return "rituximab at the next visit"
        return f"rituximab once INCAT has risen by {self.incat_rise} or more"


#: Strategies used when none are given: prompt, delayed and never rituximab.
DEFAULT_STRATEGIES: tuple[Strategy, ...] = (
    # "within 1 year of onset" (the seed study's "prompt initiation of rituximab")
    Strategy("prompt", "at_year", years_since_onset=1.0),
    # Mean time from onset to rituximab in the seed cohort: 54.9 months = 4.6 years
    # (/work/shared/CLINICAL.md, "a probable description of the seed cohort": a Bordeaux
    # medical thesis of 2018 on the same two-hospital cohort, approximate).
    Strategy("delayed", "at_year", years_since_onset=4.6),
    Strategy("never", "never"),
)


# ----------------------------------------------------------------------------- file


def load_strategies(path: str | Path) -> list[Strategy]:
    """Read treatment strategies from a TOML file of ``[[strategy]]`` tables.

    Parameters
    ----------
    path : str or pathlib.Path
        The file. Each ``[[strategy]]`` table has ``name``, ``kind`` and the kind's
        parameter (``years_since_onset`` for ``at_year``, ``incat_rise`` for ``on_rise``).

    Returns
    -------
    list of Strategy
        In the file's order.

    Raises
    ------
    SpecError
        Listing every problem at once, each naming the file, the table (``[[strategy]] 2``:
        the second table of the file) and the key, with the closest valid key or kind for a
        typo; names used twice are problems too. ``problems`` holds the lines.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SpecError(f"strategy file {path}: no such file") from err
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SpecError(f"strategy file {path} is not valid UTF-8 TOML: {err}") from err
    problems, tables = _file_problems(data)
    if problems:
        if len(problems) == 1:
            message = f"{path}: {problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in problems)
            message = f"{path}: {len(problems)} problems in the strategy file:\n{lines}"
        raise SpecError(message, problems=problems)
    return [Strategy(**table) for table in tables]


def _file_problems(data: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Every problem of a strategy file's contents, and its tables."""
    problems: list[str] = []
    for key in data:
        if key != "strategy":
            problems.append(
                f"`{key}` is not part of a strategy file: it holds [[strategy]] tables only"
            )
    tables = data.get("strategy", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append("`strategy` must be tables written [[strategy]], one per strategy")
        return problems, []
    if not tables:
        problems.append("no [[strategy]] table: the file names no strategy")
    first_of_name: dict[str, int] = {}
    for number, table in enumerate(tables, start=1):
        name = table.get("name")
        where = f"[[strategy]] {number}" + (f" ({name!r})" if isinstance(name, str) else "")
        problems += [f"{where}: {p}" for p in strategy_problems(table)]
        if isinstance(name, str) and name in first_of_name:
            problems.append(
                f"{where}: the name {name!r} is already used by "
                f"[[strategy]] {first_of_name[name]}; each strategy needs its own name"
            )
        elif isinstance(name, str):
            first_of_name[name] = number
    return problems, tables


# ----------------------------------------------------------------------------- applying


def first_rise_years(years: np.ndarray, incat: np.ndarray, incat_rise: int) -> np.ndarray:
    """When INCAT first rises by ``incat_rise`` points above the first visit with a score.

    Parameters
    ----------
    years : numpy.ndarray
        Visit times (years since onset), increasing, shape ``(visit,)``.
    incat : numpy.ndarray
        INCAT at those visits (NaN = not scored), shape ``(..., visit)``: observed scores,
        or simulated ones with leading dimensions such as draws.
    incat_rise : int
        Rise (INCAT points) measured from the first scored visit.

    Returns
    -------
    numpy.ndarray
        Shape ``(...)``: the years since onset of the first visit where the rise is
        reached, NaN where it never is.
    """
    years = np.asarray(years, float)
    incat = np.asarray(incat, float)
    if incat.shape[-1] == 0:
        return np.full(incat.shape[:-1], np.nan)
    scored = ~np.isnan(incat)
    first = np.argmax(scored, axis=-1)
    baseline = np.take_along_axis(incat, first[..., None], axis=-1)
    risen = scored & (incat - baseline >= incat_rise)
    return np.where(risen.any(axis=-1), years[np.argmax(risen, axis=-1)], np.nan)


def rituximab_start_years(strategy: Strategy, visits: pd.DataFrame, *, now: float) -> float | None:
    """When the strategy starts the added rituximab course (``None``: it adds none).

    Parameters
    ----------
    strategy : Strategy
    visits : pandas.DataFrame
        The patient's visits: ``years_since_onset`` and, for ``on_rise``, ``incat``.
    now : float
        When the prediction is made (years since onset).

    Returns
    -------
    float or None
        Years since onset.
    """
    if strategy.kind == "at_year":
        return strategy.years_since_onset
    years = visits["years_since_onset"].to_numpy(float)
    if strategy.kind == "next_visit":
        later = years[years > now]
        return float(later.min()) if later.size else float(now)
    if strategy.kind == "on_rise":
        if "incat" not in visits.columns:
            raise ValueError("strategy kind 'on_rise' reads INCAT: the visits have no `incat`")
        order = np.argsort(years, kind="stable")
        incat = pd.to_numeric(visits["incat"], errors="coerce").to_numpy(float, na_value=np.nan)
        when = first_rise_years(years[order], incat[order], int(strategy.incat_rise))
        return None if np.isnan(when) else float(when)
    return None


def apply_strategy(
    strategy: Strategy,
    courses: pd.DataFrame,
    visits: pd.DataFrame,
    *,
    now: float,
    patient_id: str | None = None,
) -> pd.DataFrame:
    """One patient's treatment courses under a strategy.

    Rituximab courses are removed or added as the strategy says (see :class:`Strategy`);
    every other course is kept as observed. Unless the strategy is ``as_observed``, lines
    are renumbered by start order: courses that shared a line still do, a line goes
    where its earliest course starts, an added course is a line of its own (after any line
    that starts at the same time), and a line left empty disappears.

    Parameters
    ----------
    strategy : Strategy
    courses : pandas.DataFrame
        The patient's courses, with the columns of the cohort's treatments table: at least
        ``patient_id``, ``treatment``, ``line`` and ``start_years`` (years since onset).
    visits : pandas.DataFrame
        The patient's visits: ``years_since_onset`` and ``incat`` (NaN or NA = not scored),
        observed or simulated. ``next_visit`` reads their times, ``on_rise`` their INCAT.
    now : float
        When the prediction is made (years since onset); ``next_visit`` reads it.
    patient_id : str, optional
        The patient's id, needed only when neither table has a row (a patient with no
        visit and no course).

    Returns
    -------
    pandas.DataFrame
        The courses under the strategy, with the input's columns (and ``stop_years`` and
        ``response`` when it lacks them), sorted by start. An added rituximab course has
        ``stop_years`` NaN (not planned), ``response`` ``"unknown"`` and every other column
        missing (``source_row`` too: it is in no file).

    Raises
    ------
    ValueError
        When a column is missing, the tables hold more than one patient, or ``now`` is not
        a time since onset.
    """
    missing = [c for c in COURSE_COLUMNS if c not in courses.columns]
    if missing:
        raise ValueError(f"the courses have no column {', '.join(missing)}")
    if "years_since_onset" not in visits.columns:
        raise ValueError("the visits have no column years_since_onset")
    if not (_is_number(now) and now >= 0):
        raise ValueError(f"now must be a time since onset (years, 0 or more), not {now!r}")
    patient = _one_patient(courses, visits, patient_id)
    if strategy.kind == "as_observed":
        return courses.copy()

    is_rituximab = courses["treatment"].eq(RITUXIMAB)
    if strategy.kind == "next_visit":
        is_rituximab &= courses["start_years"].astype(float) > now
    kept = courses[~is_rituximab].copy()
    for column, empty in (("stop_years", np.nan), (RESPONSE_COLUMN, pd.NA)):
        if column not in kept.columns:
            kept[column] = empty
    kept["_added"] = False
    start = rituximab_start_years(strategy, visits, now=now)
    if start is not None:
        kept = _with_course(
            kept,
            {
                "patient_id": patient,
                "treatment": RITUXIMAB,
                "line": 0,
                "start_years": start,
                "stop_years": np.nan,
                RESPONSE_COLUMN: "unknown",
                "_added": True,
            },
        )
    return _renumbered(kept).drop(columns="_added")


def _one_patient(courses: pd.DataFrame, visits: pd.DataFrame, patient_id: str | None) -> str:
    """The one patient both tables are about."""
    ids = set(courses["patient_id"].astype(str))
    if "patient_id" in visits.columns:
        ids |= set(visits["patient_id"].astype(str))
    if patient_id is not None:
        ids.add(str(patient_id))
    if len(ids) > 1:
        raise ValueError(f"apply_strategy takes one patient's tables, not {sorted(ids)}")
    if not ids:
        raise ValueError("no patient id: the tables are empty; pass patient_id")
    return ids.pop()


def _with_course(kept: pd.DataFrame, course: dict[str, Any]) -> pd.DataFrame:
    """``kept`` and one more course; the course's other columns missing."""
    kept = kept.copy()
    added = pd.DataFrame({c: [course[c]] if c in course else [pd.NA] for c in kept.columns})
    for column in kept.columns:
        dtype = kept[column].dtype
        if column not in course and isinstance(dtype, np.dtype) and dtype.kind in "iub":
            dtype = "boolean" if dtype.kind == "b" else "Int64"  # room for a missing value
            kept[column] = kept[column].astype(dtype)
        added[column] = added[column].astype(dtype)
    if kept.empty:
        return added
    return pd.concat([kept, added], ignore_index=True)


def _renumbered(courses: pd.DataFrame) -> pd.DataFrame:
    """Lines numbered 1, 2, ... by their earliest start; an added course is its own line."""
    added = courses["_added"].to_numpy(bool)
    group = np.where(added, -1, courses["line"].to_numpy(int))
    start = courses["start_years"].to_numpy(float, na_value=np.nan)
    groups, of_course = np.unique(group, return_inverse=True)
    # each line's earliest start (missing starts ignored; NaN when all are missing)
    earliest = np.full(len(groups), np.inf)
    np.fmin.at(earliest, of_course, start)
    earliest[np.isinf(earliest)] = np.nan
    # lines by earliest start (missing last), an added course after a line starting with it
    order = np.lexsort((groups, groups == -1, earliest))
    number = np.empty(len(groups), int)
    number[order] = np.arange(1, len(groups) + 1)
    line = number[of_course]
    out = courses.assign(line=line.astype(courses["line"].dtype if len(courses) else int))
    rows = np.lexsort((line, start))  # stable; missing starts last, as pandas sorts them
    return out.iloc[rows].reset_index(drop=True)


def apply_to_cohort(
    strategy: Strategy,
    cohort: Cohort,
    *,
    now: float | Mapping[str, float] | pd.Series | None = None,
) -> Cohort:
    """The cohort with every patient's treatments under a strategy; all else kept.

    Parameters
    ----------
    strategy : Strategy
    cohort : Cohort
    now : float, mapping or pandas.Series, optional
        When the prediction is made (years since onset): one time for every patient, or
        one per patient id. Default: each patient's last visit (onset, 0, for a patient
        with no visit).

    Returns
    -------
    Cohort
        Same patients, visits, provenance (``source``, ``sha256``), file format and
        early-sural definition; the treatments under the strategy.

    Raises
    ------
    ValueError
        When ``now`` lacks a patient or is not a time since onset.
    """
    last_visit = cohort.visits.groupby("patient_id")["years_since_onset"].max()
    courses_of = dict(tuple(cohort.treatments.groupby("patient_id", sort=False)))
    visits_of = dict(tuple(cohort.visits.groupby("patient_id", sort=False)))
    no_courses = cohort.treatments.iloc[:0]
    no_visits = cohort.visits.iloc[:0]
    if isinstance(now, Mapping | pd.Series):
        absent = [pid for pid in cohort.patient_ids if pid not in now]
        if absent:
            raise ValueError(f"now gives no time for patient(s) {', '.join(absent[:5])}")
    frames = []
    for pid in cohort.patient_ids:
        if now is None:
            at = float(last_visit.get(pid, 0.0))
        elif isinstance(now, Mapping | pd.Series):
            at = float(now[pid])
        else:
            at = now
        frames.append(
            apply_strategy(
                strategy,
                courses_of.get(pid, no_courses),
                visits_of.get(pid, no_visits),
                now=at,
                patient_id=pid,
            )
        )
    treatments = [f for f in frames if not f.empty]
    return Cohort.from_frames(
        cohort.patients.reset_index(),
        cohort.visits,
        pd.concat(treatments, ignore_index=True) if treatments else no_courses,
        source=cohort.source,
        sha256=cohort.sha256,
        file_format=cohort.file_format,
        sural_threshold_uv=cohort.sural_threshold_uv,
        sural_window_years=cohort.sural_window_years,
    )
