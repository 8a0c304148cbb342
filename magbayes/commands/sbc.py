"""``magbayes sbc MODEL --fits N --out DIR``: simulation-based calibration on Dask."""

from __future__ import annotations

import argparse
import sys

from magbayes.cli import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, note_left_out
from magbayes.commands.options import add_format_options, format_keywords


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sbc`` subcommand."""
    p = sub.add_parser(
        "sbc",
        help="simulation-based calibration of a model (fits run on a Dask cluster)",
        description=(
            "Simulation-based calibration (Talts et al. 2018): for each fit, draw parameters "
            "and data from the model's prior (its own PyMC graph, on a fixed cohort design), "
            "refit, and record the rank of every true value among the thinned posterior "
            "draws. Writes DIR/ranks.csv, fits.csv, uniformity.csv, sbc.json and "
            "figures/. Fits run on a local Dask cluster (--workers) or an existing one "
            "(--scheduler). Rerunning into the same DIR resumes: fits already recorded "
            "are skipped. See docs/sbc.md."
        ),
    )
    p.add_argument(
        "model", help="spec name (progression, worsening, response, joint) or .toml path"
    )
    p.add_argument(
        "--fits",
        type=_positive_int,
        required=True,
        help="number of fits (≥ 100 for a usable uniformity test)",
    )
    p.add_argument("--out", required=True, help="output folder (created, or resumed)")
    p.add_argument(
        "--seed",
        type=int,
        default=2020,
        help="run seed (default 2020); fit i uses a seed derived from it and i",
    )
    p.add_argument(
        "--scheduler",
        help="address of an existing Dask scheduler (tcp://host:8786); default: a local cluster",
    )
    p.add_argument(
        "--workers", type=_positive_int, help="workers of the local cluster (default: one per core)"
    )
    p.add_argument(
        "--data",
        help="use this cohort's design (patients, visits, courses) instead of a simulated one",
    )
    p.add_argument(
        "--patients",
        type=_positive_int,
        default=47,
        help="patients of the simulated design (default 47)",
    )
    p.add_argument(
        "--sites", type=_positive_int, default=2, help="sites of the simulated design (default 2)"
    )
    p.add_argument(
        "--design-seed", type=int, default=1, help="seed of the simulated design (default 1)"
    )
    p.add_argument(
        "--draws",
        type=_positive_int,
        default=300,
        help="posterior draws per chain per fit (default 300)",
    )
    p.add_argument(
        "--tune", type=int, default=300, help="tuning steps per chain per fit (default 300)"
    )
    p.add_argument("--chains", type=_positive_int, default=2, help="chains per fit (default 2)")
    p.add_argument(
        "--thin",
        type=_positive_int,
        default=6,
        help="keep every THIN-th draw of each chain for the ranks (default 6: "
        "2 chains x 300 draws give 100 ranked draws)",
    )
    p.add_argument(
        "--parameters",
        nargs="+",
        metavar="NAME",
        help="variables to rank (default: the model's population-level ones)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    add_format_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run or resume the SBC and print the uniformity table."""
    from magbayes.fit import resolve_spec
    from magbayes.models.blocks import usable_covariates
    from magbayes.sbc import ModelStructure, SBCSettings, SBCSetupError, run_sbc

    try:
        settings = SBCSettings(
            fits=args.fits,
            seed=args.seed,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            thin=args.thin,
        )
        structure = ModelStructure(
            resolve_spec(args.model),
            n_patients=args.patients,
            n_sites=args.sites,
            cohort_seed=args.design_seed,
            data=args.data,
            data_format=tuple(format_keywords(args).items()),
            parameters=tuple(args.parameters) if args.parameters else None,
        )
        if args.data:  # a simulated cohort has every covariate
            left_out = usable_covariates(structure.cohort(), structure.spec)[1]
            note_left_out([c.as_dict() for c in left_out], structure.model)
        result = run_sbc(
            structure,
            args.out,
            settings,
            scheduler=args.scheduler,
            workers=args.workers,
            figures=not args.no_figures,
        )
    except SBCSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT

    n_total = len(result.fits)
    print(
        f"SBC of '{structure.model}': {n_total} fit(s) recorded in {args.out} "
        f"({len(result.ran)} run now in {result.wall_seconds:.0f} s, {result.n_failed} failed); "
        f"{settings.n_draws} ranked draws per fit"
    )
    table = result.uniformity
    if len(table):
        shown = table[["parameter", "n_fits", "p_chi_square", "p_pit_ecdf", "flag"]]
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        flagged = table.loc[table["flag"] == "non-uniform", "parameter"].tolist()
        if flagged:
            print("non-uniform ranks (miscalibration): " + ", ".join(flagged))
    warned = result.fits.get("warning")
    if warned is not None:
        notes = warned.fillna("").astype(str)
        notes = notes[notes != ""]
        if len(notes):
            print(
                f"warning: in {len(notes)} of {n_total} fits the prior draw fell outside the "
                f"support the fitted model imposes ({'; '.join(sorted(set(notes)))}). PyMC's "
                "forward sampling ignores value transforms such as 'ordered', so these fits "
                "do not test the model that is fitted: the model's generative code needs "
                "fixing (e.g. build ordered cutpoints from increments).",
                file=sys.stderr,
            )
    if n_total and result.n_failed == n_total:
        print("error: every fit failed; see fits.csv", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
