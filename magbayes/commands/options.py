"""Options shared by the commands that read a cohort: how its files are written.

:func:`add_format_options` adds ``--date-format``, ``--sep`` and ``--decimal`` to a
command's parser; :func:`format_keywords` turns the parsed arguments into the keyword
arguments of :func:`magbayes.load_cohort` (only the options given: the others are as the
cohort's ``cohort.toml`` says, or the defaults).
"""

from __future__ import annotations

import argparse

from magbayes.cohort.fileformat import DECIMAL_MARKS, value_problem


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--date-format``, ``--sep`` and ``--decimal`` (each overrides cohort.toml)."""
    group = parser.add_argument_group(
        "how the cohort's files are written (each overrides the cohort's cohort.toml)"
    )
    group.add_argument(
        "--date-format",
        type=_checked("date_format"),
        metavar="FORMAT",
        help="strptime format of the dates, e.g. %%d/%%m/%%Y (default ISO, YYYY-MM-DD)",
    )
    group.add_argument(
        "--sep",
        type=_separator,
        metavar="CHAR",
        help="field separator of the CSV files, e.g. ';' or '\\t' for a tab (default ',')",
    )
    group.add_argument(
        "--decimal",
        type=_checked("decimal"),
        choices=DECIMAL_MARKS,
        help="decimal mark of numbers (default '.')",
    )


def format_keywords(args: argparse.Namespace) -> dict[str, str]:
    """The format options given on the command line, as ``load_cohort`` keywords."""
    stated = {"date_format": args.date_format, "sep": args.sep, "decimal": args.decimal}
    return {key: value for key, value in stated.items() if value is not None}


def _checked(key: str):
    def parse(text: str) -> str:
        problem = value_problem(key, text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text

    return parse


def _separator(text: str) -> str:
    return _checked("sep")("\t" if text in ("\\t", "tab") else text)
