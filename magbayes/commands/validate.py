"""``magbayes validate DIR``: check a cohort and print its summary, or every problem found.

Nothing is written anywhere. Exit status 0 when the cohort is valid, 2 when it has
problems (printed to stderr, one line each; many of one kind in one column on one line).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from magbayes.cohort.fileformat import CohortFormat
from magbayes.cohort.read import load_cohort
from magbayes.cohort.tables import DEFAULT_SURAL_THRESHOLD_UV, DEFAULT_SURAL_WINDOW_YEARS
from magbayes.commands.options import add_format_options, format_keywords
from magbayes.errors import CohortError, problem_lines

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand."""
    parser = subparsers.add_parser(
        "validate",
        help="check a cohort folder and print a summary (or every problem found)",
        description=(
            "Check a cohort (a folder with patients.csv, visits.csv and treatments.csv, "
            "or an .xlsx workbook with those three sheets) and print a summary: patients "
            "by site and pattern, visits, courses by line and treatment, responses, "
            "early-sural counts and follow-up. On problems, print every one (file, row, "
            "column, value, expected; many of one kind in one column on one line) to stderr "
            "and exit with status 2. Writes nothing."
        ),
    )
    parser.add_argument(
        "cohort", metavar="DIR", help="cohort folder, or the path of an .xlsx workbook"
    )
    parser.add_argument(
        "--sural-threshold",
        type=_non_negative,
        default=DEFAULT_SURAL_THRESHOLD_UV,
        metavar="UV",
        help="early sural reduction: first sural SNAP below this amplitude, in µV "
        f"(default {DEFAULT_SURAL_THRESHOLD_UV:g}, the adult lower limit of normal)",
    )
    parser.add_argument(
        "--sural-window",
        type=_non_negative,
        default=DEFAULT_SURAL_WINDOW_YEARS,
        metavar="YEARS",
        help="early sural reduction: first nerve conduction study within this many years "
        f"of onset (default {DEFAULT_SURAL_WINDOW_YEARS:g}, an assumption)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of text"
    )
    add_format_options(parser)
    parser.set_defaults(func=run)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Check the cohort; print its summary (stdout) or its problems (stderr).

    Returns
    -------
    int
        0 when the cohort is valid, 2 when it has problems.
    """
    try:
        cohort = load_cohort(
            args.cohort,
            sural_threshold_uv=args.sural_threshold,
            sural_window_years=args.sural_window,
            **format_keywords(args),
        )
    except CohortError as err:
        print(format_problems(err), file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = cohort.summary() | {"sha256": cohort.sha256}
    if args.json:
        print(json.dumps(_json_safe(summary), indent=2, ensure_ascii=False))
    else:
        print(format_summary(summary))
    return EXIT_OK


# ---------------------------------------------------------------------------- problems
def format_problems(err: CohortError) -> str:
    """A heading, then one line per problem: file, row, column, value, expected.

    Many problems of one kind in one column are one line (count, first rows, first value).
    """
    where = f" in {err.source}" if err.source else ""
    return "\n".join([f"{len(err.problems)} problem(s){where}:", *problem_lines(err.problems)])


# ---------------------------------------------------------------------------- summary
def format_summary(summary: dict) -> str:
    """The summary of :meth:`magbayes.cohort.Cohort.summary` as readable text."""
    sural = summary["early_sural"]
    visits = summary["visits_per_patient"]
    follow = summary["follow_up_years"]
    file_format = CohortFormat(**summary["file_format"])
    lines = [
        f"Cohort {summary['source']} is valid (sha256 {summary['sha256'][:12]}...)",
        *([] if file_format.is_default else [f"Read as: {file_format.describe()}"]),
        "",
        f"Patients: {summary['n_patients']} at {summary['n_sites']} site(s)",
        f"  by site:    {_counts(summary['patients_by_site'])}",
        f"  by pattern: {_counts(summary['patients_by_pattern'])}",
        f"Visits: {summary['n_visits']}; per patient min {visits['min']}, "
        f"median {visits['median']:g}, max {visits['max']}",
        f"  scores recorded: {_counts(summary['scores_observed'])}",
        f"Treatment courses: {summary['n_courses']}",
    ]
    for line, counts in summary["courses_by_line_and_treatment"].items():
        lines.append(f"  {line}: {_counts(counts)}")
    lines += [
        f"  responses: {_counts(summary['responses'])}",
        f"Early sural reduction (first sural SNAP < {sural['threshold_uv']:g} µV at a nerve "
        f"conduction study within {sural['window_years']:g} years of onset):",
        f"  reduced {sural['reduced']}, preserved {sural['preserved']}, "
        f"missing {sural['missing']} (no measurement, or the study was later)",
        f"Follow-up (years from onset to the last visit): min {_years(follow['min'])}, "
        f"median {_years(follow['median'])}, max {_years(follow['max'])}",
    ]
    if "end_of_follow_up" in summary:
        lines.append(_end_of_follow_up_line(summary["end_of_follow_up"]))
    return "\n".join(lines)


def _end_of_follow_up_line(end: dict) -> str:
    """One line: patients with an end of follow-up, by reason, interval-censored deaths."""
    reasons = ", ".join(f"{reason} {n}" for reason, n in end["by_reason"].items())
    total = end["given"] + end["not_given"]
    after = end["years_after_last_visit"]
    return (
        f"End of follow-up: given for {end['given']} of {total} patients ({reasons}; "
        f"{end['deaths_interval_censored']} death(s) known only between two contacts); "
        f"years after the last visit: median {_years(after['median'])}, "
        f"max {_years(after['max'])}"
    )


def _counts(counts: dict) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


def _years(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f}"


def _json_safe(value: object) -> object:
    """The summary with NaN (not valid JSON) replaced by ``null``."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
