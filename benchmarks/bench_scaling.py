"""How the progression model's cost grows with the number of patients (47, 500, 5000).

Each size is a simulated cohort (about 10 visits per patient) fitted in a fresh Python
process: design and model built (``magbayes.fit.prepare``), compiled and sampled by nutpie
(``pm.sample``) with the spec's sampler settings (4 chains x 1000 draws after 400 tuning
steps, chains on every available core); no predictive draws, so the numbers are the
model's own. Printed per size:

- ``visits``: visits in the likelihood;
- ``compile_s``: ``pm.sample`` wall time minus nutpie's sampling time (model compilation and
  set-up), seconds;
- ``sampling_s``: nutpie's sampling time, seconds;
- ``wall_s``: design + model + compile + sampling, seconds;
- ``grad_evals``: leapfrog steps over all chains (those of the tuning phase estimated from
  the draws' average, as tuning steps are not kept);
- ``ms_per_grad``: milliseconds per leapfrog step (one gradient) on one core:
  ``sampling_s * chains running in parallel / grad_evals``;
- ``ess_bulk_min`` (scalar parameters) and ``ess_per_s`` (per sampling second);
- ``divergences``; ``peak_rss_mib``: peak resident memory of the process, MiB.

The last lines fit ``log(cost) = a + b log(patients)`` to the gradient cost and to the
sampling time, so ``b`` says how cost grows with patients (1 = linearly).

Usage::

    .venv/bin/python benchmarks/bench_scaling.py                    # 47, 500, 5000 patients
    .venv/bin/python benchmarks/bench_scaling.py --patients 47 500 --draws 500 --chains 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import emit, machine, print_table, progression_settings, run_child  # noqa: E402


def child(
    n_patients: int, seed: int, draws: int, tune: int, chains: int, target_accept: float
) -> dict:
    import warnings

    import arviz as az

    from magbayes.fit import prepare, resolve_spec, starting_values
    from magbayes.sampler import parallel_chains, sample_posterior
    from magbayes.simulate import simulate_cohort

    warnings.simplefilter("ignore")
    cohort = simulate_cohort(n_patients=n_patients, n_sites=2, seed=seed).cohort
    settings = progression_settings(
        draws=draws, tune=tune, chains=chains, seed=seed, target_accept=target_accept
    )
    spec = resolve_spec("progression", {"sampler": settings})
    draws, tune, chains = (int(settings[k]) for k in ("draws", "tune", "chains"))
    started = time.perf_counter()
    _, design, model = prepare(cohort, spec)
    sample_start = time.perf_counter()
    # what mb.fit does (compile cache and starting values included)
    tree = sample_posterior(model, settings, start=starting_values(spec, design))
    sample_wall = time.perf_counter() - sample_start
    wall = time.perf_counter() - started
    post = tree["posterior"].to_dataset()
    stats = tree["sample_stats"]
    sampling = float(post.attrs.get("sampling_time", float("nan")))
    scalars = [v for v in post.data_vars if set(post[v].dims) == {"chain", "draw"}]
    ess = az.ess(post[scalars], method="bulk")
    per_var = {v: float(ess[v]) for v in scalars}
    worst = min(per_var, key=per_var.get)
    # leapfrog steps of the kept draws; tuning steps are not stored by default, so scale
    # by (tune + draws) / draws to estimate the total
    steps_kept = int(stats["n_steps"].sum())
    grad_evals = steps_kept * (tune + draws) / draws
    return {
        "patients": n_patients,
        "visits": int(len(design.data["score"])),
        "chains_x_draws": f"{chains}x{draws}",
        "compile_s": sample_wall - sampling,
        "sampling_s": sampling,
        "wall_s": wall,
        "grad_evals": grad_evals,
        "tune": tune,
        "target_accept": float(settings["target_accept"]),
        "ms_per_grad": 1000 * sampling * parallel_chains(settings, chains) / grad_evals,
        "ess_bulk_min": per_var[worst],
        "ess_min_var": worst,
        "ess_per_s": per_var[worst] / sampling,
        "divergences": int(stats["diverging"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--patients", type=int, nargs="+", default=[47, 500, 5000])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--draws", type=int, default=0, help="default: the spec's (1000)")
    parser.add_argument("--tune", type=int, default=0, help="default: the spec's (400)")
    parser.add_argument(
        "--target-accept", type=float, default=0.0, help="default: the spec's (0.8)"
    )
    parser.add_argument("--chains", type=int, default=0, help="default: the spec's (4)")
    args = parser.parse_args()
    if args.child:
        emit(
            child(
                args.patients[0],
                args.seed,
                args.draws,
                args.tune,
                args.chains,
                args.target_accept,
            )
        )
        return
    print(f"machine: {machine()}")
    rows = []
    for n in args.patients:
        row = run_child(
            __file__,
            [
                f"--patients={n}",
                f"--seed={args.seed}",
                f"--draws={args.draws}",
                f"--tune={args.tune}",
                f"--target-accept={args.target_accept}",
                f"--chains={args.chains}",
            ],
        )
        if "error" in row:
            print(f"{n} patients: failed: {row['error']}")
            continue
        rows.append(row)
        print(f"  {n} patients done in {row['wall_s']:.0f} s", flush=True)
    print_table(
        rows,
        [
            "patients",
            "visits",
            "chains_x_draws",
            "tune",
            "target_accept",
            "compile_s",
            "sampling_s",
            "wall_s",
            "grad_evals",
            "ms_per_grad",
            "ess_bulk_min",
            "ess_min_var",
            "ess_per_s",
            "divergences",
            "peak_rss_mib",
        ],
        {
            "compile_s": "{:.1f}",
            "sampling_s": "{:.1f}",
            "wall_s": "{:.1f}",
            "grad_evals": "{:.0f}",
            "ms_per_grad": "{:.3f}",
            "ess_bulk_min": "{:.0f}",
            "ess_per_s": "{:.2f}",
            "peak_rss_mib": "{:.0f}",
        },
    )
    if len(rows) >= 2:
        x = np.log([r["patients"] for r in rows])
        for column in ("ms_per_grad", "sampling_s", "peak_rss_mib"):
            slope = np.polyfit(x, np.log([r[column] for r in rows]), 1)[0]
            print(f"{column} grows as patients^{slope:.2f}")


if __name__ == "__main__":
    main()
