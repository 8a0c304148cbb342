"""Benchmark of the joint-model core on pbcseq: wall time, ESS, divergences, alpha.

Fits the JMbayes2 vignette's model (log bilirubin ~ year * sex with a random intercept and
slope per patient; death or transplant ~ sex; current-value association) with
:func:`magbayes.models.joint.fit_joint_model` (nutpie, chains in parallel). With
``--warm`` (default) a first fit fills the compile cache, so the timed fit loads the
compiled model as a later fit would.

Printed:

- ``wall_s``: the timed ``fit_joint_model`` call (tables, model, loading the compiled
  model, sampling, per-subject log-likelihood), seconds;
- ``sampling_s``: nutpie's own sampling time, seconds; ``compiled_from``;
- ``ess_bulk_min``: smallest bulk ESS over the parameters that are not per patient (and
  its variable), and ``ess_bulk_min_all`` over every parameter;
- ``divergences``, ``r_hat_max``, ``gate_passed``;
- ``alpha_mean``, ``alpha_sd``: the association (JMbayes2: 1.2433, sd 0.0847).

Usage::

    .venv/bin/python benchmarks/bench_joint_pbcseq.py --data ../shared/data/pbcseq.csv
    .venv/bin/python benchmarks/bench_joint_pbcseq.py --parametrization non-centred
"""

from __future__ import annotations

import argparse
import json
import time

from magbayes.models import joint as jm
from magbayes.models.joint.pbcseq import PBCSEQ_COLUMNS, pbcseq_tables


def run(args: argparse.Namespace) -> dict:
    """One timed fit (after a warm-up fit that fills the compile cache)."""
    longitudinal, events = pbcseq_tables(args.data)
    value_col = "log_bili" if args.outcome == "gaussian" else "stage"
    options = {
        "outcome": args.outcome,
        "value_col": value_col,
        "model_kwargs": {"parametrization": args.parametrization, "baseline": args.baseline},
        **PBCSEQ_COLUMNS,
    }
    if args.warm:
        jm.fit_joint_model(
            longitudinal, events, draws=10, tune=10, chains=1, log_likelihood=False, **options
        )
    started = time.perf_counter()
    tree, _ = jm.fit_joint_model(
        longitudinal,
        events,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        **options,
    )
    wall = time.perf_counter() - started
    gate = jm.convergence_summary(tree)
    alpha = tree["posterior"]["alpha"]
    return {
        "outcome": args.outcome,
        "parametrization": args.parametrization,
        "baseline": args.baseline,
        "chains": args.chains,
        "draws": args.draws,
        "wall_s": round(wall, 1),
        "sampling_s": round(float(tree["posterior"].attrs["sampling_time"]), 1),
        "compiled_from": tree["posterior"].attrs.get("compiled_from"),
        "ess_bulk_min": round(gate["ess_bulk_min_population"]),
        "ess_bulk_min_variable": gate["ess_bulk_min_population_variable"],
        "ess_bulk_min_all": round(gate["ess_bulk_min"]),
        "divergences": gate["divergences"],
        "r_hat_max": round(gate["r_hat_max"], 4),
        "gate_passed": gate["passed"],
        "alpha_mean": round(float(alpha.mean()), 4),
        "alpha_sd": round(float(alpha.std()), 4),
    }


def main() -> None:
    """Parse the options, fit, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/pbcseq.csv")
    parser.add_argument("--outcome", choices=jm.OUTCOMES, default="gaussian")
    parser.add_argument("--parametrization", choices=jm.PARAMETRIZATIONS, default="centred")
    parser.add_argument("--baseline", choices=["weibull", "piecewise"], default="weibull")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-warm", dest="warm", action="store_false")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
