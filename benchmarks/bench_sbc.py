"""SBC benchmark: >= 200 fits per model, uniformity results, wall time with 1 and 2 workers.

For each model and each worker count, a fresh SBC run (``magbayes.sbc.run_sbc``) on a local
Dask cluster with that many worker processes: parameters and data drawn from the model's
prior on a 47-patient simulated design, refitted with nutpie (compiled once per worker),
truth ranked among the thinned draws. Printed per run: wall time (worker start-up and
compilation included), fits per minute, failed fits, mean sampling seconds per fit, mean
divergent transitions per fit; then the per-parameter uniformity table of the run with the
most fits.

The runs are kept in ``--out`` (default ``$TMPDIR/magbayes-bench/sbc``; one folder per
model and worker count): a rerun with ``--resume`` completes an interrupted run instead of
starting afresh (the wall time is then that of the completion only).

Usage::

    .venv/bin/python benchmarks/bench_sbc.py        # 3 models, 200 fits, 1 and 2 workers
    .venv/bin/python benchmarks/bench_sbc.py --models progression --fits 200 --workers 2
    .venv/bin/python benchmarks/bench_sbc.py --models progression --fits 40 --workers 1 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine, print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["progression", "worsening", "response"])
    parser.add_argument("--fits", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--patients", type=int, default=47)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--thin", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument(
        "--out", default=str(Path(tempfile.gettempdir()) / "magbayes-bench" / "sbc")
    )
    parser.add_argument("--resume", action="store_true", help="complete earlier runs")
    args = parser.parse_args()

    from magbayes.fit import resolve_spec
    from magbayes.sbc import ModelStructure, SBCSettings, run_sbc

    print(f"machine: {machine()}")
    settings = SBCSettings(
        fits=args.fits,
        seed=args.seed,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        thin=args.thin,
    )
    print(
        f"per fit: {args.chains} chains x ({args.tune} tune + {args.draws} draws), thin "
        f"{args.thin} -> {settings.n_draws} ranked draws; {args.patients}-patient design"
    )
    for model in args.models:
        structure = ModelStructure(resolve_spec(model), n_patients=args.patients)
        try:
            structure.build()
        except ValueError as err:
            print(f"\n== {model}: skipped: {err}\n", flush=True)
            continue
        rows, largest = [], None
        for workers in args.workers:
            out = Path(args.out) / f"{model}-workers{workers}"
            if out.exists() and not args.resume:
                shutil.rmtree(out)
            started = time.perf_counter()
            result = run_sbc(structure, out, settings, workers=workers, progress=False)
            wall = time.perf_counter() - started
            fits = result.fits
            ok = fits[fits["status"] == "ok"]
            rows.append(
                {
                    "model": model,
                    "workers": workers,
                    "fits": len(fits),
                    "run_now": len(result.ran),
                    "failed": result.n_failed,
                    "wall_s": wall,
                    "fits_per_min": 60 * len(result.ran) / wall if result.ran else float("nan"),
                    "setup_s_per_worker": float(
                        fits.loc[fits["setup_seconds"] > 0, "setup_seconds"].mean()
                    ),
                    "sampling_s_per_fit": float(ok["sampling_seconds"].mean()),
                    "divergences_per_fit": float(ok["divergences"].mean()),
                    "fits_with_divergences": int((ok["divergences"] > 0).sum()),
                    "draws_off_support": int(fits["warning"].fillna("").astype(str).ne("").sum()),
                }
            )
            if largest is None or len(fits) > len(largest.fits):
                largest = result
            print(f"  {model}: {workers} worker(s) done in {wall:.0f} s", flush=True)
        print(f"\n== {model}: wall time by number of workers ==")
        print_table(
            rows,
            [
                "model",
                "workers",
                "fits",
                "run_now",
                "failed",
                "wall_s",
                "fits_per_min",
                "setup_s_per_worker",
                "sampling_s_per_fit",
                "divergences_per_fit",
                "fits_with_divergences",
            ],
            {
                "wall_s": "{:.0f}",
                "fits_per_min": "{:.2f}",
                "setup_s_per_worker": "{:.0f}",
                "sampling_s_per_fit": "{:.1f}",
                "divergences_per_fit": "{:.2f}",
            },
        )
        if largest is not None and largest.uniformity.empty:
            errors = largest.fits["error"].dropna().unique()[:3]
            print(f"\n== {model}: no fit succeeded: {'; '.join(map(str, errors))}\n")
        elif largest is not None:
            table = largest.uniformity
            print(
                f"\n== {model}: uniformity of ranks over {int(table['n_fits'].max())} fits "
                f"(flag threshold p < {table.attrs.get('flag_threshold', float('nan')):.2g}) =="
            )
            print_table(
                table.to_dict("records"),
                [
                    "parameter",
                    "n_fits",
                    "n_draws",
                    "p_chi_square",
                    "p_pit_ecdf",
                    "mean_fractional_rank",
                    "flag",
                ],
                {
                    "p_chi_square": "{:.3g}",
                    "p_pit_ecdf": "{:.3g}",
                    "mean_fractional_rank": "{:.3f}",
                },
            )
            flagged = table.loc[table["flag"] == "non-uniform", "parameter"].tolist()
            print(f"non-uniform: {', '.join(flagged) if flagged else 'none'}")
            for parameter in flagged:
                print_breakdown(largest, parameter)
            print(f"files: {largest.out}\n", flush=True)


def print_breakdown(result, parameter: str) -> None:
    """Where a flagged parameter's ranks go wrong: by divergences and by true value.

    Splitting fits by an outcome of sampling is itself a selection (ranks within a subset
    need not be uniform even for a calibrated sampler), so this locates a problem; it does
    not test one.
    """
    import numpy as np

    ranks = result.ranks
    ok = ranks[(ranks["status"] == "ok") & (ranks["parameter"] == parameter)]
    fits = result.fits.set_index("fit")
    ok = ok.assign(
        divergent=fits.loc[ok["fit"], "divergences"].to_numpy() > 0,
        fraction=ok["rank"] / ok["n_draws"],
    )
    ok = ok.assign(truth_third=np.digitize(ok["truth"], ok["truth"].quantile([1 / 3, 2 / 3])))
    rows = []
    for label, sub in [
        ("no divergences", ok[~ok["divergent"]]),
        ("divergences", ok[ok["divergent"]]),
        *[(f"true value, third {k + 1}", ok[ok["truth_third"] == k]) for k in range(3)],
    ]:
        rows.append(
            {
                "fits": label,
                "n": len(sub),
                "mean_fractional_rank": float(sub["fraction"].mean()) if len(sub) else np.nan,
                "truth_range": f"{sub['truth'].min():.3g} to {sub['truth'].max():.3g}"
                if len(sub)
                else "",
            }
        )
    print(f"\n   {parameter}: mean fractional rank (0.5 when calibrated) by subset")
    print_table(rows, ["fits", "n", "mean_fractional_rank", "truth_range"], {})


if __name__ == "__main__":
    main()
