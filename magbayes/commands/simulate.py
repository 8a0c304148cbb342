"""``magbayes simulate``: write a synthetic cohort and its ``truth.json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magbayes.simulate.parameters import DEFAULT_SURAL_RITUXIMAB_EFFECT, DEFAULTS

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, not {text}")
    return value


#: ``--option``: (dropout parameter, type, help) of the end-of-follow-up options.
DROPOUT_OPTIONS: dict[str, tuple[str, object, str]] = {
    "--death-alpha": (
        "death_alpha",
        float,
        "log hazard ratio of death per latent logit of current disability above the "
        "reference (0 = death independent of disability)",
    ),
    "--death-hazard": (
        "death_hazard",
        _share,
        "annual mortality 5 to 6 years after onset at the reference disability "
        "(Weibull baseline, shape 1.4)",
    ),
    "--lost-hazard": (
        "lost_hazard",
        float,
        "hazard of loss to follow-up, per year, at the reference disability",
    ),
    "--lost-alpha": (
        "lost_alpha",
        float,
        "log hazard ratio of loss to follow-up per latent logit of current disability",
    ),
    "--interval-censored-share": (
        "interval_censored_share",
        _share,
        "share of deaths known only to lie between two contacts (end_lower_years)",
    ),
}


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, not {text}")
    return value


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a synthetic cohort (patients, visits, treatments) and truth.json",
        description=(
            "Simulate an anti-MAG neuropathy cohort calibrated to published figures and "
            "write patients.csv, visits.csv, treatments.csv (times in years since onset) "
            "and truth.json with every true parameter. The same --seed gives identical "
            "files. See docs/simulator.md."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    parser.add_argument(
        "--patients", type=_positive_int, default=47, metavar="N", help="patients (default 47)"
    )
    parser.add_argument(
        "--sites", type=_positive_int, default=2, metavar="N", help="hospitals (default 2)"
    )
    parser.add_argument(
        "--follow-up",
        type=_positive_float,
        default=12.0,
        metavar="YEARS",
        help="latest visit, years since onset (default 12)",
    )
    parser.add_argument(
        "--sural-rituximab-effect",
        type=float,
        default=DEFAULT_SURAL_RITUXIMAB_EFFECT,
        metavar="X",
        help=(
            "extra change of the latent progression slope per year under rituximab in "
            "sural-reduced patients (negative = more benefit; 0 = no interaction; "
            f"default {DEFAULT_SURAL_RITUXIMAB_EFFECT:g}); also scales the hazard and "
            "response interactions"
        ),
    )
    parser.add_argument(
        "--seed", type=_seed, default=None, metavar="S", help="random seed (default: random)"
    )
    parser.add_argument(
        "--worsening-from",
        choices=("hazard", "scores"),
        default="hazard",
        help=(
            "hazard: true worsening times from a proportional-hazards model, INCAT made "
            "consistent; scores: worsening is whatever the scores show (default hazard)"
        ),
    )
    parser.add_argument(
        "--end-of-follow-up",
        action="store_true",
        help=(
            "simulate death and loss to follow-up from hazards that depend on the current "
            "disability; patients.csv gets end_years, end_reason, end_lower_years and "
            "truth.json an end_of_follow_up section (default: off, files as without it)"
        ),
    )
    dropout = DEFAULTS["dropout"]
    for option, (name, kind, words) in DROPOUT_OPTIONS.items():
        parser.add_argument(
            option,
            type=kind,
            default=None,
            metavar="X",
            help=f"{words} (with --end-of-follow-up; default {dropout[name]:g})",
        )
    parser.add_argument(
        "--force", action="store_true", help="replace DIR if it exists and is not empty"
    )
    parser.set_defaults(func=run)


def dropout_overrides(args: argparse.Namespace) -> dict[str, float]:
    """The ``dropout`` parameters given on the command line."""
    given = {}
    for name, _, _ in DROPOUT_OPTIONS.values():
        value = getattr(args, name)
        if value is not None:
            given[name] = value
    return given


def run(args: argparse.Namespace) -> int:
    """Simulate, write atomically, and print what was written."""
    from magbayes.simulate import simulate_cohort

    dropout = dropout_overrides(args)
    if dropout and not args.end_of_follow_up:
        options = ", ".join(
            option for option, (name, _, _) in DROPOUT_OPTIONS.items() if name in dropout
        )
        print(f"error: {options} need --end-of-follow-up", file=sys.stderr)
        return EXIT_BAD_INPUT
    extra = {"end_of_follow_up": True, "dropout": dropout} if args.end_of_follow_up else {}
    if args.end_of_follow_up and not dropout:
        del extra["dropout"]
    try:
        sim = simulate_cohort(
            n_patients=args.patients,
            n_sites=args.sites,
            max_follow_up_years=args.follow_up,
            sural_rituximab_effect=args.sural_rituximab_effect,
            seed=args.seed,
            worsening_from=args.worsening_from,
            **extra,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        paths = sim.write(args.out, overwrite=args.force)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = sim.cohort.summary()
    sural = summary["early_sural"]
    print(f"Simulated cohort (seed {sim.truth['seed']}, worsening from {args.worsening_from})")
    print(
        f"  {summary['n_patients']} patients at {summary['n_sites']} sites, "
        f"{summary['n_visits']} visits, {summary['n_courses']} treatment courses; "
        f"early sural reduction: {sural['reduced']} reduced, {sural['preserved']} preserved, "
        f"{sural['missing']} unknown"
    )
    if "end_of_follow_up" in summary:
        reasons = summary["end_of_follow_up"]["by_reason"]
        print("  end of follow-up: " + ", ".join(f"{r} {n}" for r, n in reasons.items()))
    print(f"Wrote {args.out}:")
    for path in paths:
        print(f"  {path.name:<16} {path.stat().st_size:>9,d} bytes")
    return EXIT_OK
