"""``magbayes answer --data DIR --out RESULTS``: the sural x rituximab question, three ways."""

from __future__ import annotations

import argparse
import shlex
import sys

from magbayes.cli import EXIT_NOT_CONVERGED, EXIT_OK, note_left_out
from magbayes.commands.options import add_format_options, format_keywords


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``answer`` subcommand."""
    p = sub.add_parser(
        "answer",
        help="fit progression, worsening and response on one cohort; write answer.json/.md",
        description=(
            "Fit the progression, worsening and response models to one cohort and write "
            "answer.json, a one-page answer.md and each model's results folder. Exit status "
            "3 when a model fails its convergence checks (everything is still written)."
        ),
    )
    p.add_argument("--data", required=True, help="cohort folder (or .xlsx workbook)")
    p.add_argument("--out", required=True, help="results folder to write")
    p.add_argument("--seed", type=int, help="random seed for every model")
    p.add_argument("--draws", type=int, help="posterior draws per chain")
    p.add_argument("--tune", type=int, help="tuning steps per chain")
    p.add_argument("--chains", type=int, help="number of chains")
    p.add_argument("--allow-warnings", action="store_true", help="exit 0 despite failed checks")
    add_format_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit the three models, write the answer, print it."""
    from magbayes.analyses.answer import answer
    from magbayes.cohort.read import load_cohort

    cohort = load_cohort(args.data, **format_keywords(args))
    payload = answer(
        cohort,
        args.out,
        seed=args.seed,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        command="magbayes " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    for name, entry in payload["models"].items():
        note_left_out(entry["left_out_covariates"], name)
    for entry in payload["models"].values():
        print(entry["sentence"])
    print(payload["agreement"]["text"])
    print(f"written: {args.out}/answer.md, {args.out}/answer.json")
    if payload["all_converged"] or args.allow_warnings:
        return EXIT_OK
    print("convergence: at least one model FAILED its checks", file=sys.stderr)
    return EXIT_NOT_CONVERGED
