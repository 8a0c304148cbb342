"""``magbayes compare RESULTS...``: PSIS-LOO comparison of fits on the same cohort."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magbayes.cli import EXIT_BAD_INPUT, EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand."""
    p = sub.add_parser(
        "compare",
        help="PSIS-LOO comparison table of fits on the same data",
        description=(
            "Compare results folders of different specs fitted to the same cohort by "
            "PSIS-LOO (leave one patient out; arviz.loo and arviz.compare), print the table "
            "with Pareto-k warnings (patients with k > 0.7) and write it as CSV. Fits made "
            "on different data (different cohort SHA-256 or observations) are refused "
            "(exit status 2). Nothing is refitted."
        ),
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results folders (two or more)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("comparison.csv"),
        metavar="FILE.csv",
        help="CSV file to write (default comparison.csv in the current folder)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the fits, compare them, print and write the table."""
    from magbayes.report.compare import DifferentDataError, compare_folders

    if len(args.results) < 2:
        print("error: compare needs at least two results folders", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        comparison = compare_folders(args.results)
    except DifferentDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(comparison.to_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    comparison.table.to_csv(args.out, index_label="fit")
    print(f"\ncomparison written to {args.out}")
    return EXIT_OK
