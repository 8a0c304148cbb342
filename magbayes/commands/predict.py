"""``magbayes predict RESULTS --data DIR --out PRED``: predictions under treatment strategies."""

from __future__ import annotations

import argparse
from pathlib import Path

from magbayes.cli import EXIT_OK
from magbayes.commands.options import add_format_options, format_keywords


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="predict the cohort's patients (fitted or new) under treatment strategies",
        description=(
            "Predict each patient of a cohort from a saved fit, at the given times and "
            "under each treatment strategy: patients of the fit from their own posterior, "
            "new patients from their visits so far. Writes predictions.nc, "
            "predictions.csv, p_category.csv and one figure per patient."
        ),
    )
    p.add_argument("results", type=Path, metavar="RESULTS", help="results folder of a fit")
    p.add_argument("--data", required=True, help="cohort folder (or .xlsx workbook)")
    p.add_argument("--out", required=True, type=Path, help="folder to write the predictions")
    p.add_argument(
        "--times",
        default="0:12:0.5",
        help="years since onset: START:STOP:STEP or a list (default 0:12:0.5)",
    )
    p.add_argument(
        "--strategies",
        type=Path,
        help="TOML file of [[strategy]] tables (default: prompt, delayed, never rituximab)",
    )
    p.add_argument("--threshold", type=float, help="score counted as disabled (INCAT 4, mRS 3)")
    p.add_argument("--patients", help="comma-separated patient ids (default all)")
    p.add_argument("--seed", type=int, help="random seed (default the fit's)")
    add_format_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the fit and the cohort, predict, write, print a short summary."""
    from magbayes.cohort.read import load_cohort
    from magbayes.fit import load_fit
    from magbayes.predict import load_strategies, parse_times, predict, write_predictions

    times = parse_times(args.times)
    strategies = load_strategies(args.strategies) if args.strategies else None
    cohort = load_cohort(args.data, **format_keywords(args))
    result = load_fit(args.results)
    patients = [p.strip() for p in args.patients.split(",")] if args.patients else None
    tree = predict(
        result,
        cohort,
        times=times,
        strategies=strategies,
        threshold=args.threshold,
        patients=patients,
        seed=args.seed,
    )
    write_predictions(tree, cohort, args.out)
    ds = tree["predictions"]
    fitted = int(ds["fitted"].sum())
    print(
        f"predictions written to {args.out}: {ds.sizes['patient']} patients ({fitted} fitted, "
        f"{ds.sizes['patient'] - fitted} new), {ds.sizes['strategy']} strategies, "
        f"{ds.sizes['time']} times"
    )
    return EXIT_OK
