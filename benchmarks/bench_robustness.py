"""Robustness of the shipped defaults on cohorts they were not tuned to.

Draws cohorts over a grid of stress settings (:mod:`magbayes.simulate.stress`: spreads of
levels and rates, cutpoint spacing, visit patterns, covariates with and without effects,
unknown early-sural statuses, rituximab started on observed worsening, site effects from
none to large; 47 to 300 patients), all with no sural x rituximab interaction (the null),
fits each with a model's shipped default spec (``--model``: progression, worsening or
response) exactly as ``magbayes fit`` does (``mb.fit``, the automatic refits included) and
prints one row per grid setting. The response model has a grid of its own
(``RESPONSE_GRID``: rituximab's benefit, the patients' and sites' spreads, unknown ratings
and statuses, cohort size), since the ratings do not depend on the disability settings.

- ``fits``, ``passed``: fits and how many passed the convergence gate (R-hat <= 1.01, bulk
  ESS >= 400, no divergences); ``refits``: how many needed a refit (other coordinates, or
  twice the draws); ``div_first``: median divergences of the first fit; ``wall_s``: median;
- ``p_extreme``: fits whose headline P was below 0.05 or above 0.95 (about 10% expected
  under the null);
- ``cover_*``: how many 90% intervals (equal-tailed) covered the true value, for
  ``rtx_preserved`` (``gamma_rituximab``; ``alpha_`` for response), ``rtx_reduced``
  (+ ``..._rituximab_x_sural``), ``rtx_line2`` (+ ``..._later_line``), ``interaction`` and,
  for progression, ``slope``. The stress cohorts take confirmed worsening from the scores,
  with no true hazard, so worsening fits have no coverage columns.

Then the totals: gate pass rate, the share of extreme null headlines, ArviZ's PIT-ECDF
uniformity test (``pot_c``) of the null headline probabilities, and each coverage with its
two-sided binomial p-value against 90%. Every fit is one row of ``--out`` (CSV, with its
model), so a run can be stopped and resumed, and ``--summarise`` re-prints the tables of a
finished file.

Usage::

    .venv/bin/python benchmarks/bench_robustness.py --seeds 4 --out robustness.csv
    .venv/bin/python benchmarks/bench_robustness.py --settings real_like indication_150
    .venv/bin/python benchmarks/bench_robustness.py --model response --out response.csv
    .venv/bin/python benchmarks/bench_robustness.py --summarise robustness.csv more.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import xarray as xr
from scipy.stats import binomtest

import magbayes as mb
from magbayes.simulate.stress import (
    RESPONSE_GRID,
    STRESS_GRID,
    StressSetting,
    simulate_stressed,
)

#: Each model's grid: the disability settings for progression and worsening, the
#: response's own settings for the ratings (they do not depend on the disability ones).
GRIDS = {"progression": STRESS_GRID, "worsening": STRESS_GRID, "response": RESPONSE_GRID}

COVERED = ("rtx_preserved", "rtx_reduced", "rtx_line2", "interaction", "slope")


def _rituximab_effects(values, prefix: str) -> dict:
    """Rituximab's effects by sural status and line, from draws or true values."""
    rtx = values[f"{prefix}_rituximab"]
    return {
        "rtx_preserved": rtx,
        "rtx_reduced": rtx + values[f"{prefix}_rituximab_x_sural"],
        "rtx_line2": rtx + values[f"{prefix}_later_line"],
        "interaction": values[f"{prefix}_rituximab_x_sural"],
    }


def _progression_effects(values) -> dict:
    return {**_rituximab_effects(values, "gamma"), "slope": values["slope"]}


#: Per model: the effects whose coverage is counted, from posterior draws (a Dataset) or
#: true values (a dict), and where the truth is in truth.json. The stress cohorts take
#: confirmed worsening from the scores, where no true hazard exists: the worsening model
#: is checked for its gate and its null headline only.
EFFECTS = {
    "progression": (_progression_effects, "progression"),
    "response": (lambda values: _rituximab_effects(values, "alpha"), "response"),
    "worsening": (None, None),
}


def fit_one(name: str, setting: StressSetting, seed: int, model: str = "progression") -> dict:
    """Simulate one cohort of a setting, fit the model's default spec, return one CSV row."""
    sim = simulate_stressed(setting, seed=seed)
    started = time.perf_counter()
    result = mb.fit(sim.cohort, model, seed=seed, prior_predictive=False)
    wall = time.perf_counter() - started
    diagnostics = result.diagnostics()
    post = result.posterior["posterior"].to_dataset()
    row = {
        "model": model,
        "setting": name,
        "seed": seed,
        "n_patients": setting.n_patients,
        "passed": diagnostics["passed"],
        "divergences": diagnostics["divergences"],
        "r_hat_max": diagnostics["r_hat_max"],
        "ess_bulk_min": diagnostics["ess_bulk_min"],
        "r_hat_max_variable": diagnostics["r_hat_max_variable"],
        "ess_bulk_min_variable": diagnostics["ess_bulk_min_variable"],
        "refitted": bool(result.earlier_fits),
        "fits_run": len(result.earlier_fits) + 1,
        "divergences_first": (result.earlier_fits or [diagnostics])[0]["divergences"],
        "wall_s": wall,
        "p_headline": result.headline()["p_sural_predicts_rituximab_benefit"],
        "rituximab_courses": int((sim.treatments["treatment"] == "rituximab").sum()),
    }
    effects, truth_key = EFFECTS[model]
    if effects is None:
        return row
    truth = effects(sim.truth[truth_key])
    for key, draws in effects(post).items():
        low, high = (float(q) for q in draws.quantile([0.05, 0.95], dim=("chain", "draw")))
        row[f"cover_{key}"] = bool(low <= truth[key] <= high)
        row[f"mean_{key}"] = float(draws.mean())
        row[f"true_{key}"] = truth[key]
    return row


def _extreme(p: pd.Series) -> int:
    return int(((p < 0.05) | (p > 0.95)).sum())


def per_setting(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per grid setting (see the module docstring)."""
    grouped = rows.groupby("setting", sort=False)
    table = pd.DataFrame(
        {
            "n": grouped["n_patients"].first(),
            "fits": grouped.size(),
            "passed": grouped["passed"].sum(),
            "refits": grouped["refitted"].sum(),
            "div_first": grouped["divergences_first"].median(),
            "div_final": grouped["divergences"].median(),
            "wall_s": grouped["wall_s"].median().round(1),
            "p_extreme": grouped["p_headline"].apply(
                lambda p: int(((p < 0.05) | (p > 0.95)).sum())
            ),
        }
    )
    for key in COVERED:
        if f"cover_{key}" in rows:
            table[f"cover_{key}"] = grouped[f"cover_{key}"].sum()
    return table


def totals(rows: pd.DataFrame) -> list[str]:
    """The three targets over every fit: gate, null calibration, coverage."""
    n = len(rows)
    p = rows["p_headline"].to_numpy(float)
    extreme = _extreme(rows["p_headline"])
    pit = xr.Dataset({"p": xr.DataArray(p, dims="fit")})
    p_values, _, _ = pit.azstats.uniformity_test(dim="fit", method="pot_c")
    lines = [
        f"gate passed: {int(rows['passed'].sum())} of {n} ({100 * rows['passed'].mean():.0f}%); "
        f"refitted: {int(rows['refitted'].sum())}",
        f"null headline: P < 0.05 or > 0.95 in {extreme} of {n} ({100 * extreme / n:.0f}%); "
        f"PIT-ECDF uniformity p = {float(p_values['p']):.3f}",
    ]
    for key in COVERED:
        if f"cover_{key}" not in rows:
            continue
        hits = int(rows[f"cover_{key}"].sum())
        test = binomtest(hits, n, 0.9)
        lines.append(f"90% interval covers {key}: {hits} of {n} (binomial p = {test.pvalue:.3f})")
    return lines


def show(rows: pd.DataFrame) -> None:
    """Print the per-setting table and the totals."""
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(per_setting(rows).to_string())
    print()
    for line in totals(rows):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="progression", choices=list(EFFECTS))
    parser.add_argument(
        "--settings",
        nargs="*",
        choices=sorted(set(STRESS_GRID) | set(RESPONSE_GRID)),
        help="grid settings (default: every setting of the model's grid)",
    )
    parser.add_argument("--seeds", type=int, default=4, help="cohorts per setting")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("robustness.csv"))
    parser.add_argument(
        "--summarise",
        type=Path,
        nargs="+",
        help="only print the tables of these CSVs (a later file's row replaces an earlier "
        "file's row of the same setting and seed)",
    )
    args = parser.parse_args()
    grid = GRIDS[args.model]
    settings = args.settings or list(grid)
    unknown = [name for name in settings if name not in grid]
    if unknown:
        parser.error(f"not in the {args.model} grid: {', '.join(unknown)}")
    if args.summarise:
        frames = pd.concat(
            [_with_model(pd.read_csv(path)) for path in args.summarise], ignore_index=True
        )
        frames = frames[frames["model"] == args.model]
        show(frames.drop_duplicates(["setting", "seed"], keep="last"))
        return
    done = _with_model(pd.read_csv(args.out)) if args.out.is_file() else pd.DataFrame()
    done = done[done.get("model", pd.Series(dtype=str)) == args.model]
    seen = set(zip(done.get("setting", []), done.get("seed", []), strict=True))
    for name in settings:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if (name, seed) in seen:
                continue
            row = fit_one(name, grid[name], seed, args.model)
            print(
                f"{name:<16} seed {seed}: passed {row['passed']}, divergences "
                f"{row['divergences_first']} -> {row['divergences']}, P {row['p_headline']:.3f}, "
                f"{row['wall_s']:.0f} s",
                flush=True,
            )
            frame = pd.DataFrame([row])
            frame.to_csv(args.out, mode="a", header=not args.out.is_file(), index=False)
    rows = _with_model(pd.read_csv(args.out))
    show(rows[rows["setting"].isin(settings) & (rows["model"] == args.model)])


def _with_model(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows written before the ``model`` column existed are progression fits."""
    if "model" not in rows:
        rows = rows.assign(model="progression")
    return rows


if __name__ == "__main__":
    main()
