"""Benchmark of the default progression fit on a 47-patient simulated cohort.

``magbayes.fit.fit(cohort, "progression")`` with the spec's sampler settings (4 chains x
1000 draws after 400 tuning steps, nutpie), in a fresh Python process, so compilation (or
loading the compiled model from magbayes's compile cache) is included and the peak memory is
that fit's alone. Printed:

- ``wall_s``: the whole ``fit`` call (design, model, compilation, sampling, log-likelihood,
  posterior and prior predictive draws), seconds;
- ``sample_s``: compiling and sampling (``magbayes.sampler.sample_posterior``), seconds;
- ``sampling_s``: nutpie's sampling time (tuning and draws, no compilation), seconds;
- ``compile_s``: ``sample_s - sampling_s``; ``compiled_from``: ``cache`` (the model was
  compiled by an earlier fit with this spec, of this or any cohort of the same structure, in
  any process), ``compiled`` (compiled now and stored) or ``uncached`` (compile cache off:
  ``--compile-cache off``);
- ``ess_bulk_min``: smallest bulk ESS over the scalar parameters, and which;
- ``ess_per_s``: ``ess_bulk_min / sampling_s``; ``ess_per_wall_s``: ``ess_bulk_min /
  wall_s``;
- ``divergences``; ``r_hat_max`` (scalar parameters);
- ``peak_rss_mib``: peak resident memory of the process (MiB); ``cpu_s``: its CPU time.

Usage::

    .venv/bin/python benchmarks/bench_progression.py
    .venv/bin/python benchmarks/bench_progression.py --repeats 3 --seed 7
    .venv/bin/python benchmarks/bench_progression.py --compile-cache off
    .venv/bin/python benchmarks/bench_progression.py --compile-dir /tmp/empty  # first fit ever
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import emit, machine, print_table, run_child  # noqa: E402


def child(
    n_patients: int,
    seed: int,
    draws: int,
    tune: int | None,
    chains: int,
    target_accept: float,
    compile_cache: str = "on",
) -> dict:
    import warnings

    if compile_cache == "off":
        os.environ["MAGBAYES_COMPILE_CACHE"] = "0"

    import arviz as az

    from magbayes.fit import fit
    from magbayes.simulate import simulate_cohort

    warnings.simplefilter("ignore")
    cohort = simulate_cohort(n_patients=n_patients, n_sites=2, seed=seed).cohort
    started = time.perf_counter()
    overrides = {"sampler": {"target_accept": target_accept}} if target_accept else None
    result = fit(
        cohort,
        "progression",
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        progress=False,
        overrides=overrides,
    )
    tune = int(result.spec.section("sampler")["tune"])
    wall = time.perf_counter() - started
    post = result.posterior["posterior"].to_dataset()
    scalars = [v for v in post.data_vars if set(post[v].dims) == {"chain", "draw"}]
    ess = az.ess(post[scalars], method="bulk")
    rhat = az.rhat(post[scalars])
    per_var = {v: float(ess[v]) for v in scalars}
    worst = min(per_var, key=per_var.get)
    sampling = float(post.attrs.get("sampling_time", float("nan")))
    stats = result.posterior["sample_stats"]
    return {
        "patients": n_patients,
        "visits": int(result.design_counts.get("visits with incat", 0)),
        "chains_x_draws": f"{chains}x{draws}",
        "tune": tune,
        "target_accept": float(result.spec.section("sampler")["target_accept"]),
        "wall_s": wall,
        "sample_s": result.timing["sampling_seconds"],
        "sampling_s": sampling,
        "compile_s": result.timing["sampling_seconds"] - sampling,
        "compiled_from": post.attrs.get("compiled_from", "-"),
        "loglik_s": result.timing.get("log_likelihood_seconds", float("nan")),
        "ppc_s": result.timing.get("posterior_predictive_seconds", float("nan")),
        "prior_s": result.timing.get("prior_seconds", float("nan")),
        "ess_bulk_min": per_var[worst],
        "ess_min_var": worst,
        "ess_per_s": per_var[worst] / sampling,
        "ess_per_wall_s": per_var[worst] / wall,
        "divergences": int(stats["diverging"].sum()),
        "r_hat_max": float(max(float(rhat[v]) for v in scalars)),
        "grad_evals": int(stats["n_steps"].sum()) if "n_steps" in stats else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--patients", type=int, default=47)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=None, help="default: the spec's")
    parser.add_argument(
        "--target-accept", type=float, default=0.0, help="default: the spec's (0.8)"
    )
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--compile-cache",
        choices=["on", "off"],
        default="on",
        help="off: compile at every fit (MAGBAYES_COMPILE_CACHE=0)",
    )
    parser.add_argument(
        "--compile-dir",
        default=None,
        help="PyTensor compile directory of the fits (an empty folder: a machine's first fit)",
    )
    args = parser.parse_args()
    if args.compile_dir:  # inherited by the child processes
        flags = os.environ.get("PYTENSOR_FLAGS", "")
        os.environ["PYTENSOR_FLAGS"] = ",".join(
            part for part in (flags, f"base_compiledir={Path(args.compile_dir).resolve()}") if part
        )
    if args.child:
        emit(
            child(
                args.patients,
                args.seed,
                args.draws,
                args.tune or None,
                args.chains,
                args.target_accept,
                args.compile_cache,
            )
        )
        return
    print(f"machine: {machine()}")
    rows = []
    for repeat in range(args.repeats):
        row = run_child(
            __file__,
            [
                f"--patients={args.patients}",
                f"--seed={args.seed + repeat}",
                f"--draws={args.draws}",
                f"--tune={args.tune or 0}",
                f"--target-accept={args.target_accept}",
                f"--chains={args.chains}",
                f"--compile-cache={args.compile_cache}",
            ],
        )
        row["seed"] = args.seed + repeat
        rows.append(row)
        if "error" in row:
            print(f"seed {row['seed']}: failed: {row['error']}")
    print_table(
        [r for r in rows if "error" not in r],
        [
            "patients",
            "visits",
            "seed",
            "chains_x_draws",
            "tune",
            "target_accept",
            "wall_s",
            "sample_s",
            "sampling_s",
            "compile_s",
            "compiled_from",
            "loglik_s",
            "ppc_s",
            "prior_s",
            "ess_bulk_min",
            "ess_min_var",
            "ess_per_s",
            "ess_per_wall_s",
            "divergences",
            "r_hat_max",
            "peak_rss_mib",
            "cpu_s",
        ],
        {
            "wall_s": "{:.1f}",
            "sample_s": "{:.1f}",
            "sampling_s": "{:.1f}",
            "ess_bulk_min": "{:.0f}",
            "ess_per_s": "{:.1f}",
            "ess_per_wall_s": "{:.1f}",
            "r_hat_max": "{:.3f}",
            "peak_rss_mib": "{:.0f}",
            "cpu_s": "{:.0f}",
        },
    )


if __name__ == "__main__":
    main()
