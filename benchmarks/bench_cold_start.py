"""The first fit on a new machine: each default spec with an empty compile directory, then warm.

For each shipped model (``--models``; default progression, worsening, response and joint),
two fits in fresh Python processes on the same simulated 47-patient cohort (joint: with
the end of follow-up), both with the spec's sampler settings:

1. **cold**: PyTensor's compile directory and numba's cache directory (``NUMBA_CACHE_DIR``)
   are a fresh temporary folder, so numba, PyTensor's C back end and magbayes' compile cache
   start empty (the user's own directories are untouched);
2. **warm**: the same compile directory, a second process, another seed: what every later fit
   with that spec costs.

Printed, one row per model and fit, in seconds: ``wall_s`` (the ``magbayes.fit`` call;
refits included, ``fits`` says how many ran), ``build_s`` (design, model graph, starting
values and everything not listed after it), ``compile_s`` (the sampler's log-density
callback: numba compiling it, or loading it from the cache), ``sampling_s`` (nutpie's tuning
and draws), ``determ_s`` (the constrained parameters and deterministics, from all draws at
once), ``loglik_s``, ``ppc_s`` and ``prior_s`` (log-likelihood, posterior predictive and
prior draws, vectorised over the draws with nothing compiled: ``magbayes.model_draws``),
``timing_s`` (the timing answer), and ``compiled_from`` (``compiled``: compiled now and
stored; ``cache``: loaded). The targets of issue 23 are on the cold row (progression <= 45 s,
worsening and response <= 30 s) and the warm progression row (<= 10 s).

Usage::

    .venv/bin/python benchmarks/bench_cold_start.py
    .venv/bin/python benchmarks/bench_cold_start.py --models progression --seed 7
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import emit, machine, print_table, run_child  # noqa: E402

MODELS = ("progression", "worsening", "response", "joint")

#: The columns in seconds, in the order printed.
SECONDS = (
    "wall_s",
    "build_s",
    "compile_s",
    "sampling_s",
    "determ_s",
    "loglik_s",
    "ppc_s",
    "prior_s",
    "timing_s",
)


def child(model: str, seed: int) -> dict:
    """One fit of a model's default spec in this process; its parts' times."""
    import warnings

    from magbayes.fit import fit
    from magbayes.models import get_model
    from magbayes.simulate import simulate_cohort

    warnings.simplefilter("ignore")
    # the joint model's cohort needs each patient's end of follow-up
    options = get_model(model).simulation_options
    cohort = simulate_cohort(n_patients=47, seed=seed, **options).cohort
    started = time.perf_counter()
    result = fit(cohort, model, seed=seed, progress=False)
    wall = time.perf_counter() - started
    timing = result.timing
    post = result.posterior["posterior"]
    sampling = float(post.attrs.get("sampling_time", float("nan")))
    deterministics = float(post.attrs.get("deterministics_time", 0.0))
    parts = {
        "compile_s": timing["sampling_seconds"] - sampling - deterministics,
        "sampling_s": sampling,
        "determ_s": deterministics,
        "loglik_s": timing.get("log_likelihood_seconds", 0.0),
        "ppc_s": timing.get("posterior_predictive_seconds", 0.0),
        "prior_s": timing.get("prior_seconds", 0.0),
        "timing_s": timing.get("timing_answer_seconds", 0.0),
    }
    diagnostics = result.diagnostics()
    return {
        "model": model,
        "wall_s": wall,
        "build_s": wall - sum(parts.values()) if not result.earlier_fits else float("nan"),
        **parts,
        "fits": len(result.earlier_fits) + 1,
        "compiled_from": post.attrs.get("compiled_from", "-"),
        "divergences": diagnostics["divergences"],
        "ess_bulk_min": diagnostics["ess_bulk_min"],
        "passed": diagnostics["passed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--model", default="progression", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        emit(child(args.model, args.seed))
        return
    print(f"machine: {machine()}")
    rows = []
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    numba_cache = os.environ.get("NUMBA_CACHE_DIR")
    for model in args.models:
        with tempfile.TemporaryDirectory(prefix=f"magbayes-cold-{model}-") as folder:
            os.environ["PYTENSOR_FLAGS"] = ",".join(
                part for part in (flags, f"base_compiledir={folder}") if part
            )
            # numba's own cached functions (its library's, the installed packages') too
            os.environ["NUMBA_CACHE_DIR"] = str(Path(folder) / "numba-cache")
            for fit, seed in (("cold", args.seed), ("warm", args.seed + 1)):
                row = run_child(__file__, [f"--model={model}", f"--seed={seed}"])
                row.update(model=model, fit=fit)
                rows.append(row)
                if "error" in row:
                    print(f"{model} {fit}: failed: {row['error']}")
                else:
                    print(f"{model} {fit}: {row['wall_s']:.1f} s", flush=True)
    os.environ["PYTENSOR_FLAGS"] = flags
    if numba_cache is None:
        os.environ.pop("NUMBA_CACHE_DIR", None)
    else:
        os.environ["NUMBA_CACHE_DIR"] = numba_cache
    print_table(
        [r for r in rows if "error" not in r],
        [
            "model",
            "fit",
            *SECONDS,
            "fits",
            "compiled_from",
            "divergences",
            "ess_bulk_min",
            "passed",
            "peak_rss_mib",
        ],
        {key: "{:.1f}" for key in SECONDS} | {"ess_bulk_min": "{:.0f}", "peak_rss_mib": "{:.0f}"},
    )


if __name__ == "__main__":
    main()
