"""``magbayes report RESULTS``: rewrite the figures and report of a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from magbayes.cli import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help="(re)write the report and figures of a results folder, without refitting",
        description=(
            "Reopen a results folder (posterior.nc, manifest.json) and rewrite figures/, "
            "report.md and report.html from it. Nothing is sampled: the saved posterior is "
            "used as it is."
        ),
    )
    p.add_argument("results", type=Path, metavar="RESULTS", help="results folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the fit and write its report."""
    from magbayes.report import rewrite_report

    files = rewrite_report(args.results)
    print(f"report written to {files.markdown} and {files.html}")
    for figure in files.figures:
        print(f"  figures/{figure.path.name}")
    for skipped in files.skipped:
        print(f"  (no {skipped.name}.png: {skipped.reason})")
    return EXIT_OK
