"""NUTS samplers on the same progression model and data: nutpie, PyMC, numpyro, blackjax.

Each sampler runs through ``pm.sample(nuts_sampler=...)`` on the same model (47-patient
simulated cohort, default progression spec) with the same draws and the spec's tuning steps
and target acceptance (nutpie also gets the spec's extra trajectory doubling), chains on
every available core, in a fresh Python process (compilation included, peak memory its own).
JAX samplers get one XLA host device per core so that numpyro's chains run in parallel as
nutpie's and PyMC's do (blackjax's run as one vectorised batch: PyMC's parallel path for it
fails with more chains than devices), and the model with its dims and data frozen
(``freeze_dims_and_data``: JAX needs static shapes). A sampler whose package is not installed
is skipped with a message (``pip install numpyro`` / ``pip install "blackjax<1.6"``; both need
``jax``). blackjax 1.6 and later
are skipped too: PyMC (6.4 included) passes ``progress_bar`` to ``blackjax.window_adaptation``,
which since 1.6 hands unknown arguments to the NUTS kernel, and the first warm-up step raises
a TypeError (pymc-devs/pymc#8367). Printed:

- ``wall_s``: ``pm.sample`` wall time, compilation included, seconds;
- ``sampling_s``: the sampler's own sampling time where it reports one, seconds;
- ``ess_bulk_min``: smallest bulk ESS over the scalar parameters, and which;
- ``ess_per_wall_s``: ``ess_bulk_min / wall_s``; ``ess_per_s``: per sampling second;
- ``divergences``; ``r_hat_max`` (scalar parameters); ``peak_rss_mib``.

Usage::

    .venv/bin/python benchmarks/bench_samplers.py
    .venv/bin/python benchmarks/bench_samplers.py --samplers nutpie pymc --draws 500 --tune 500
    # with JAX samplers installed in another environment that also sees magbayes:
    .venv/bin/python benchmarks/bench_samplers.py --jax-python /path/to/jaxenv/bin/python
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import emit, machine, print_table, progression_settings, run_child  # noqa: E402

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
NEEDS = {"numpyro": ("jax", "numpyro"), "blackjax": ("jax", "blackjax")}


def child(sampler: str, n_patients: int, seed: int, draws: int, tune: int, chains: int) -> dict:
    import importlib.util

    missing = [m for m in NEEDS.get(sampler, ()) if importlib.util.find_spec(m) is None]
    if missing:
        needed = ", ".join(missing)
        return {"sampler": sampler, "skipped": f"not installed: {needed}; pip install {sampler}"}
    if sampler == "blackjax":
        from importlib.metadata import version

        installed = version("blackjax")
        if tuple(int(p) for p in installed.split(".")[:2] if p.isdigit()) >= (1, 6):
            return {
                "sampler": sampler,
                "skipped": f"blackjax {installed} fails inside pm.sample (pymc-devs/pymc#8367); "
                'install "blackjax<1.6"',
            }
    if sampler in NEEDS:
        os.environ.setdefault(
            "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
        )
    import warnings

    import arviz as az
    import pymc as pm

    from magbayes.fit import prepare, resolve_spec, starting_values
    from magbayes.simulate import simulate_cohort

    warnings.simplefilter("ignore")
    cohort = simulate_cohort(n_patients=n_patients, n_sites=2, seed=seed).cohort
    spec = resolve_spec("progression")
    _, design, model = prepare(cohort, spec)
    # every sampler starts where mb.fit does
    start = starting_values(spec, design)
    if sampler in NEEDS:
        from pymc.model.transform.optimization import freeze_dims_and_data

        # JAX needs static shapes (e.g. the arguments of arange): freeze dims and data
        model = freeze_dims_and_data(model)
    from magbayes.sampler import sample_options, sample_posterior

    settings = progression_settings(draws=draws, tune=tune, chains=chains, seed=seed)
    options = sample_options(settings, sampler)
    if sampler == "numpyro":
        options["nuts"] = {"chain_method": "parallel"}
    elif sampler == "blackjax":
        # PyMC's parallel blackjax path fails when there are more chains than XLA devices
        # ("cannot select an axis to squeeze out", 4 chains on 2 cores): chains as a batch
        options["nuts"] = {"chain_method": "vectorized"}
    started = time.perf_counter()
    if sampler == "nutpie":
        # what mb.fit does (compile cache and starting values included)
        tree = sample_posterior(model, settings, start=start)
    else:
        tree = pm.sample(
            model=model,
            **options,
            initvals=start or None,
            progressbar=False,
            compute_convergence_checks=False,
        )
    wall = time.perf_counter() - started
    post = tree["posterior"].to_dataset()
    stats = tree["sample_stats"]
    scalars = [v for v in post.data_vars if set(post[v].dims) == {"chain", "draw"}]
    ess = az.ess(post[scalars], method="bulk")
    rhat = az.rhat(post[scalars])
    per_var = {v: float(ess[v]) for v in scalars}
    worst = min(per_var, key=per_var.get)
    sampling = post.attrs.get("sampling_time")
    sampling = float(sampling) if sampling is not None else float("nan")
    divergent = "diverging" if "diverging" in stats else None
    return {
        "sampler": sampler,
        "chains_x_draws": f"{chains}x{draws}",
        "wall_s": wall,
        "sampling_s": sampling,
        "ess_bulk_min": per_var[worst],
        "ess_min_var": worst,
        "ess_per_wall_s": per_var[worst] / wall,
        "ess_per_s": per_var[worst] / sampling if sampling == sampling else float("nan"),
        "divergences": int(stats[divergent].sum()) if divergent else None,
        "r_hat_max": float(max(float(rhat[v]) for v in scalars)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--patients", type=int, default=47)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=0, help="default: the spec's")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--jax-python",
        help="interpreter for numpyro and blackjax (an environment with jax installed); "
        "default: this one",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="per sampler, seconds")
    args = parser.parse_args()
    if args.child:
        emit(child(args.samplers[0], args.patients, args.seed, args.draws, args.tune, args.chains))
        return
    print(f"machine: {machine()}")
    rows = []
    for sampler in args.samplers:
        row = run_child(
            __file__,
            [
                f"--samplers={sampler}",
                f"--patients={args.patients}",
                f"--seed={args.seed}",
                f"--draws={args.draws}",
                f"--tune={args.tune}",
                f"--chains={args.chains}",
            ],
            python=args.jax_python if sampler in NEEDS else None,
            timeout=args.timeout,
        )
        row.setdefault("sampler", sampler)
        if "skipped" in row:
            print(f"{sampler}: skipped ({row['skipped']})")
            continue
        if "error" in row:
            print(f"{sampler}: failed: {row['error']}")
            continue
        print(f"  {sampler} done in {row['wall_s']:.0f} s", flush=True)
        rows.append(row)
    print_table(
        rows,
        [
            "sampler",
            "chains_x_draws",
            "wall_s",
            "sampling_s",
            "ess_bulk_min",
            "ess_min_var",
            "ess_per_wall_s",
            "ess_per_s",
            "divergences",
            "r_hat_max",
            "peak_rss_mib",
        ],
        {
            "wall_s": "{:.1f}",
            "sampling_s": "{:.1f}",
            "ess_bulk_min": "{:.0f}",
            "ess_per_wall_s": "{:.2f}",
            "ess_per_s": "{:.2f}",
            "r_hat_max": "{:.3f}",
            "peak_rss_mib": "{:.0f}",
        },
    )


if __name__ == "__main__":
    main()
