"""Benchmark of the response model: wall time, ESS per second, divergences, peak memory.

Each cohort size runs in its own Python process (so that peak memory is that fit's alone):
a simulated cohort (``magbayes.simulate.simulate_cohort``) is fitted with
``magbayes.fit`` (nutpie), which builds the design and the model, compiles, samples,
and adds the log-likelihood and the posterior and prior predictive draws.

Printed per cohort:

- ``wall_s``: the whole ``fit`` call (design, model, compilation, sampling, log-likelihood,
  predictive draws), seconds;
- ``sample_s``: compiling (or loading the compiled model) and sampling
  (``FitResult.timing``), seconds;
- ``sampling_s``: nutpie's own sampling time (tuning and draws, no compilation), seconds;
- ``ess_bulk_min``: smallest bulk ESS over the summary parameters (and the variable);
- ``ess_per_s``: ``ess_bulk_min / sampling_s``;
- ``ess_contrast_per_s``: bulk ESS of ``alpha_rituximab_x_sural`` per sampling second;
- ``divergences``;
- ``cpu_s``: CPU time of the process (user + system), seconds: on a shared machine it varies
  less than the wall times;
- ``peak_rss_mib``: peak resident memory of the process, MiB.

Usage::

    .venv/bin/python benchmarks/bench_response.py                 # 47 and 5000 patients
    .venv/bin/python benchmarks/bench_response.py --patients 47 --draws 500 --tune 500
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_one(n_patients: int, draws: int, tune: int, chains: int, seed: int) -> dict:
    import arviz as az

    from magbayes.fit import fit
    from magbayes.models import response
    from magbayes.simulate import simulate_cohort

    cohort = simulate_cohort(n_patients=n_patients, n_sites=2, seed=seed).cohort

    start = time.perf_counter()
    result = fit(cohort, "response", draws=draws, tune=tune, chains=chains, seed=seed)
    wall = time.perf_counter() - start

    post = result.posterior["posterior"].to_dataset()
    names = [v for v in response.SUMMARY_VARS if v in post.data_vars]
    ess = az.ess(post[names], method="bulk")
    per_var = {v: float(ess[v].min(skipna=True)) for v in names if ess[v].notnull().any()}
    worst = min(per_var, key=per_var.get)
    sampling = float(post.attrs.get("sampling_time", float("nan")))
    counts = result.design_counts
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "patients": n_patients,
        "courses_rated": counts["courses_rated"],
        "rituximab_courses_rated": counts["rituximab_courses_rated"],
        "chains": chains,
        "draws": draws,
        "tune": tune,
        "wall_s": round(wall, 1),
        "sample_s": round(result.timing["sampling_seconds"], 1),
        "sampling_s": round(sampling, 1),
        "ess_bulk_min": round(per_var[worst]),
        "ess_bulk_min_variable": worst,
        "ess_per_s": round(per_var[worst] / sampling, 1),
        "ess_contrast_per_s": round(per_var["alpha_rituximab_x_sural"] / sampling, 1),
        "divergences": int(result.posterior["sample_stats"]["diverging"].sum()),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[47, 5000])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        row = run_one(args.patients[0], args.draws, args.tune, args.chains, args.seed)
        print(json.dumps(row))
        return

    rows = []
    for n in args.patients:
        command = [
            sys.executable,
            __file__,
            "--one",
            "--patients",
            str(n),
            "--draws",
            str(args.draws),
            "--tune",
            str(args.tune),
            "--chains",
            str(args.chains),
            "--seed",
            str(args.seed),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)

    columns = list(rows[0])
    print()
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))


if __name__ == "__main__":
    main()
