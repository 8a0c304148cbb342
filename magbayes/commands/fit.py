"""``magbayes fit MODEL --data DIR --out RESULTS``: fit a model spec and write a results folder."""

from __future__ import annotations

import argparse
import shlex
import sys

from magbayes.cli import EXIT_NOT_CONVERGED, EXIT_OK, note_left_out
from magbayes.commands.options import add_format_options, format_keywords


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fit`` subcommand."""
    p = sub.add_parser(
        "fit",
        help="fit a model spec to a cohort and write a results folder",
        description=(
            "Fit a model spec (a name in models/ such as 'progression', or a path to a "
            ".toml spec) to a cohort folder and write RESULTS (posterior.nc, summary.csv, "
            "headline.json, diagnostics.json, manifest.json, figures/, report). Exit status "
            "3 when convergence checks fail (results are still written)."
        ),
    )
    p.add_argument(
        "model", help="spec name (progression, worsening, response, joint) or .toml path"
    )
    p.add_argument("--data", required=True, help="cohort folder (or .xlsx workbook)")
    p.add_argument("--out", help="results folder to write (required unless --dry-run)")
    p.add_argument("--draws", type=int, help="posterior draws per chain (spec default)")
    p.add_argument("--tune", type=int, help="tuning steps per chain (spec default)")
    p.add_argument("--chains", type=int, help="number of chains (spec default)")
    p.add_argument("--seed", type=int, help="random seed (spec default)")
    p.add_argument(
        "--sampler",
        default="nutpie",
        choices=["nutpie", "pymc", "numpyro", "blackjax"],
        help="NUTS implementation (default nutpie)",
    )
    p.add_argument(
        "--allow-warnings",
        action="store_true",
        help="exit 0 even when R-hat, ESS or divergence checks fail",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the design (arrays, dimensions, counts) and the model, without sampling",
    )
    p.add_argument("--no-report", action="store_true", help="skip figures and report")
    p.add_argument(
        "--prior-only",
        action="store_true",
        help=(
            "prior predictive check: draw from the priors only (no sampling of the "
            "posterior; --draws sets the number of prior draws, default 500) and write "
            "figures/prior_trajectories.png, prior_summary.csv and manifest.json to --out"
        ),
    )
    add_format_options(p)
    p.set_defaults(func=run)


#: How the sampler got its compiled model (``magbayes.compile_cache.compile_for_nutpie``).
COMPILED_FROM = {
    "cache": "loaded from the compile cache",
    "compiled": "compiled and cached (later fits with this spec, of any cohort like it, load it)",
    "uncached": "compiled, not cached (compile cache off or not possible)",
}


def run(args: argparse.Namespace) -> int:
    """Fit, save, print the headline and the convergence verdict."""
    from magbayes.cohort.read import load_cohort
    from magbayes.fit import fit, prepare, resolve_spec

    cohort = load_cohort(args.data, **format_keywords(args))
    if args.dry_run:
        spec = resolve_spec(args.model)
        _, design, model = prepare(cohort, spec)
        note_left_out(design.left_out_covariates, spec.model)
        print(design)
        print()
        print(model.str_repr())
        return EXIT_OK
    if not args.out:
        print("error: --out RESULTS is required (or use --dry-run)", file=sys.stderr)
        return 2
    if args.prior_only:
        return _run_prior_only(args, cohort)
    result = fit(
        cohort,
        args.model,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        command="magbayes " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    note_left_out(result.left_out_covariates, result.model)
    extra = []
    if not args.no_report:
        from magbayes.analyses.prior_sensitivity import prior_sensitivity_writer

        # the spec's [priors.sensitivity] alternatives, refitted, shown in the report
        extra.append(prior_sensitivity_writer(cohort))
    result.save(args.out, report=not args.no_report, extra=extra)
    headline = result.headline()
    diagnostics = result.diagnostics()
    print(f"results written to {args.out}")
    compiled = COMPILED_FROM.get(result.posterior["posterior"].attrs.get("compiled_from", ""))
    if compiled:
        print(f"fit: {result.timing['wall_seconds']:.0f} s; sampler's model {compiled}")
    print(
        f"{headline['question']}\n  P = {headline['p_sural_predicts_rituximab_benefit']:.3f} "
        f"(MCSE {headline['mcse']:.3f}); contrast mean {headline['contrast']['mean']:.3f}, "
        f"{100 * headline['contrast']['hdi_prob']:.0f}% HDI "
        f"[{headline['contrast']['hdi_low']:.3f}, {headline['contrast']['hdi_high']:.3f}]"
    )
    if "timing" in headline:
        print(headline["timing"]["sentence"])
    for earlier in result.earlier_fits:
        print(f"refitted: {earlier['why']}")
    if diagnostics["passed"]:
        print(
            f"convergence: passed (R-hat max {diagnostics['r_hat_max']:.3f}, bulk ESS min "
            f"{diagnostics['ess_bulk_min']:.0f}, {diagnostics['divergences']} divergences)"
        )
        return EXIT_OK
    print("convergence: FAILED - " + "; ".join(diagnostics["reasons"]), file=sys.stderr)
    for advice in diagnostics.get("advice", []):
        print(f"  to refit: {advice}", file=sys.stderr)
    if args.allow_warnings:
        return EXIT_OK
    return EXIT_NOT_CONVERGED


def _run_prior_only(args: argparse.Namespace, cohort) -> int:
    """Draw from the priors, write the prior predictive check folder, print a summary."""
    from magbayes.fit import resolve_spec, sample_prior
    from magbayes.report.prior import describe, prior_visit_years, write_prior_check

    spec = resolve_spec(args.model)
    sample = sample_prior(
        cohort,
        spec,
        draws=args.draws or 500,
        seed=args.seed,
        visit_years=prior_visit_years(spec.model),
        command="magbayes " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    write_prior_check(sample, args.out)
    print(describe(sample))
    print(f"prior predictive check written to {args.out}")
    return EXIT_OK
