"""``magbayes sensitivity MODEL --data DIR --out DIR``: refit over the spec's grid on Dask."""

from __future__ import annotations

import argparse
import shlex
import sys

from magbayes.cli import EXIT_ERROR, EXIT_NOT_CONVERGED, EXIT_OK, note_left_out
from magbayes.commands.options import add_format_options, format_keywords


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sensitivity`` subcommand."""
    p = sub.add_parser(
        "sensitivity",
        help="refit over the spec's grid of early-sural thresholds, windows and prior scales",
        description=(
            "Refit a model over the grid in the spec's [sensitivity] table: the early-sural "
            "threshold (µV), the window after onset (years) and a factor on the headline "
            "priors (rituximab_sd, interaction_sd). By default one factor at a time around "
            "the spec's own choice; --full-grid fits every combination. Fits run on a Dask "
            "cluster. Writes DIR/sensitivity.csv, sensitivity.png and sensitivity.json. "
            "See docs/sensitivity.md."
        ),
    )
    p.add_argument(
        "model", help="spec name (progression, worsening, response, joint) or .toml path"
    )
    p.add_argument("--data", required=True, help="cohort folder (or .xlsx workbook)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--full-grid",
        action="store_true",
        help="fit every combination (default: one factor at a time)",
    )
    p.add_argument("--draws", type=_positive_int, help="posterior draws per chain (spec default)")
    p.add_argument("--tune", type=int, help="tuning steps per chain (spec default)")
    p.add_argument("--chains", type=_positive_int, help="number of chains (spec default)")
    p.add_argument("--seed", type=int, help="random seed, the same for every point (spec default)")
    p.add_argument(
        "--sampler",
        default="nutpie",
        choices=["nutpie", "pymc", "numpyro", "blackjax"],
        help="NUTS implementation (default nutpie)",
    )
    p.add_argument(
        "--scheduler", help="address of an existing Dask scheduler; default: a local cluster"
    )
    p.add_argument(
        "--workers", type=_positive_int, help="workers of the local cluster (default: one per core)"
    )
    p.add_argument(
        "--allow-warnings",
        action="store_true",
        help="exit 0 even when convergence checks fail at some grid points",
    )
    add_format_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the grid and print the table."""
    from magbayes.analyses.sensitivity import run_sensitivity
    from magbayes.cohort.read import load_cohort
    from magbayes.fit import resolve_spec
    from magbayes.models.blocks import usable_covariates

    cohort = load_cohort(args.data, **format_keywords(args))
    spec = resolve_spec(args.model)
    note_left_out([c.as_dict() for c in usable_covariates(cohort, spec)[1]], spec.model)
    table = run_sensitivity(
        cohort,
        spec,
        args.out,
        full=args.full_grid,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        scheduler=args.scheduler,
        workers=args.workers,
        command="magbayes " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    shown = table[
        [
            "varied",
            "threshold_uv",
            "window_years",
            "prior_scale",
            "p",
            "mcse",
            "contrast_mean",
            "n_sural_reduced",
            "n_sural_preserved",
            "n_sural_unknown",
            "diagnostics_passed",
            "status",
        ]
    ]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"written: {args.out}/sensitivity.csv, sensitivity.png, sensitivity.json")
    failed = table[table["status"] != "ok"]
    for _, row in failed.iterrows():
        print(
            f"failed: {row['varied']} {row['threshold_uv']:g} µV {row['window_years']:g} y "
            f"×{row['prior_scale']:g}: {row['error']}",
            file=sys.stderr,
        )
    if len(failed) == len(table):
        return EXIT_ERROR
    if not table.loc[table["status"] == "ok", "diagnostics_passed"].astype(bool).all():
        print(
            "convergence: FAILED at some grid points (hollow in the figure); see "
            "r_hat_max, ess_bulk_min and divergences in sensitivity.csv",
            file=sys.stderr,
        )
        if not args.allow_warnings:
            return EXIT_NOT_CONVERGED
    return EXIT_OK
