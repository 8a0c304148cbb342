"""magbayes (PyMC + nutpie) beside brms (R, Stan) on an equivalent progression model.

Both fit the same data: a 47-patient simulated cohort, INCAT at each visit, patients whose
early-sural status is unknown left out and no baseline covariates (brms would drop rows with
missing covariates, magbayes imputes them: leaving them out keeps the models equal). The
models (magbayes spec: ``[early_sural] missing = "exclude"``, ``[covariates] baseline = []``):

    INCAT ~ cumulative logit, 10 ordered thresholds
    eta = years + years:sural_reduced + rituximab_years + rituximab_years:sural_reduced
          + <treatment>_years ... + later_line_years
          + (1 + years | patient)      sd ~ HalfNormal(patient_level_sd, patient_rate_sd),
                                       corr ~ LKJ(2) (= Beta(2, 2) on (corr + 1) / 2)
          + (1 | site) + (0 + years | site)   sd ~ HalfNormal(site_sd), HalfNormal(site_sd / 4)
    b ~ Normal(0, sd) with the progression spec's prior sds

Differences that remain: magbayes's site offsets sum to zero (``ZeroSumNormal``), brms's are
independent; the thresholds' priors differ in form (brms: Normal(0, intercept_sd) on each
threshold; magbayes: its own cutpoint parametrisation, see ``magbayes/models/progression``);
both are weak next to ~470 visits, so the two posteriors of the interaction should agree
closely (printed). The timings include compilation (Stan's C++ build, nutpie's numba
build) and are taken in fresh processes. Skipped with a message when R, brms or rstan
is not installed (Debian:
``apt-get install r-cran-brms``).

Printed per tool: ``wall_s`` (compilation + sampling), ``compile_s``, ``sampling_s``,
``ess_bulk_min`` over the population-level scalars (slopes, thresholds, standard deviations,
correlation), ``ess_contrast`` (bulk ESS of the rituximab x early-sural interaction),
``ess_per_s`` (``ess_bulk_min / sampling_s``), ``ess_per_wall_s``, ``divergences``, and the
interaction's posterior mean and sd (the two should agree).

Usage::

    .venv/bin/python benchmarks/bench_brms.py
    .venv/bin/python benchmarks/bench_brms.py --draws 500 --tune 500 --chains 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import emit, machine, print_table, progression_settings, run_child  # noqa: E402

OVERRIDES = {"early_sural": {"missing": "exclude"}, "covariates": {"baseline": []}}

R_SCRIPT = r"""
suppressMessages({library(brms); library(posterior)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
chains <- as.integer(args[2]); draws <- as.integer(args[3]); tune <- as.integer(args[4])
seed <- as.integer(args[5]); cores <- as.integer(args[6])
treat <- strsplit(args[7], ",")[[1]]
prior_sd <- as.list(setNames(as.numeric(strsplit(args[9], ",")[[1]]),
                             strsplit(args[8], ",")[[1]]))
d$y <- d$incat + 1L
terms <- c("years", "years:sural_reduced", "rituximab_years",
           "rituximab_years:sural_reduced", paste0(treat, "_years"), "later_line_years")
f <- as.formula(paste("y | thres(10) ~", paste(terms, collapse = " + "),
                      "+ (1 + years | patient) + (1 | site) + (0 + years | site)"))
pr <- c(
  set_prior(paste0("normal(0,", prior_sd$slope_sd, ")"), class = "b", coef = "years"),
  set_prior(paste0("normal(0,", prior_sd$sural_rate_sd, ")"), class = "b",
            coef = "years:sural_reduced"),
  set_prior(paste0("normal(0,", prior_sd$rituximab_sd, ")"), class = "b",
            coef = "rituximab_years"),
  set_prior(paste0("normal(0,", prior_sd$interaction_sd, ")"), class = "b",
            coef = "rituximab_years:sural_reduced"),
  set_prior(paste0("normal(0,", prior_sd$later_line_sd, ")"), class = "b",
            coef = "later_line_years"),
  set_prior(paste0("normal(0,", prior_sd$patient_level_sd, ")"), class = "sd",
            group = "patient", coef = "Intercept"),
  set_prior(paste0("normal(0,", prior_sd$patient_rate_sd, ")"), class = "sd",
            group = "patient", coef = "years"),
  set_prior(paste0("normal(0,", prior_sd$site_sd, ")"), class = "sd", group = "site",
            coef = "Intercept"),
  set_prior(paste0("normal(0,", prior_sd$site_sd / 4, ")"), class = "sd", group = "site",
            coef = "years"),
  set_prior("lkj(2)", class = "cor")
)
for (t in treat) pr <- c(pr, set_prior(paste0("normal(0,", prior_sd$treatment_sd, ")"),
                                        class = "b", coef = paste0(t, "_years")))
pr <- c(pr, set_prior(paste0("normal(0,", prior_sd$threshold_sd, ")"), class = "Intercept"))
t0 <- Sys.time()
model <- brm(f, data = d, family = cumulative("logit"), prior = pr, chains = 0,
             backend = "rstan", silent = 2, refresh = 0)
t1 <- Sys.time()
fit <- update(model, recompile = FALSE, chains = chains, iter = tune + draws, warmup = tune,
              cores = cores, seed = seed, control = list(adapt_delta = 0.9), refresh = 0,
              silent = 2)
t2 <- Sys.time()
dr <- as_draws_df(fit)
keep <- grep("^(b_|sd_|cor_)", variables(dr), value = TRUE)
s <- summarise_draws(subset_draws(dr, variable = keep), "mean", "sd", "ess_bulk", "rhat")
contrast <- "b_rituximab_years:sural_reduced"
cat("compile_s=", as.numeric(difftime(t1, t0, units = "secs")), "\n", sep = "")
cat("sampling_s=", as.numeric(difftime(t2, t1, units = "secs")), "\n", sep = "")
cat("ess_bulk_min=", min(s$ess_bulk), "\n", sep = "")
cat("ess_min_var=", s$variable[which.min(s$ess_bulk)], "\n", sep = "")
cat("r_hat_max=", max(s$rhat), "\n", sep = "")
cat("ess_contrast=", s$ess_bulk[s$variable == contrast], "\n", sep = "")
cat("contrast_mean=", s$mean[s$variable == contrast], "\n", sep = "")
cat("contrast_sd=", s$sd[s$variable == contrast], "\n", sep = "")
cat("divergences=", rstan::get_num_divergent(fit$fit), "\n", sep = "")
cat("brms_version=", as.character(packageVersion("brms")), "\n", sep = "")
"""


def _data(n_patients: int, seed: int):
    from magbayes.fit import prepare, resolve_spec
    from magbayes.simulate import simulate_cohort

    cohort = simulate_cohort(n_patients=n_patients, n_sites=2, seed=seed).cohort
    spec = resolve_spec("progression", OVERRIDES)
    return cohort, spec, prepare(cohort, spec)


def visits_table(n_patients: int, seed: int):
    """The design's visits as a data frame for brms (one row per visit)."""
    import pandas as pd

    _, _, (_, design, _) = _data(n_patients, seed)
    d = design.data
    patient = [design.coords["patient"][i] for i in d["patient_of_visit"]]
    sites = design.coords["site"]
    site = [sites[d["site_of_patient"][i]] for i in d["patient_of_visit"]]
    table = pd.DataFrame(
        {
            "patient": patient,
            "site": site,
            "incat": d["score"].astype(int),
            "years": d["years_since_onset"],
            "sural_reduced": d["sural_reduced"][d["patient_of_visit"]].astype(int),
            "rituximab_years": d["rituximab_years"],
            "later_line_years": d["later_line_years"],
        }
    )
    for k, name in enumerate(design.coords["treatment"]):
        table[f"{name}_years"] = d["treatment_years"][:, k]
    return table, list(design.coords["treatment"]), design


def child_magbayes(n_patients: int, seed: int, draws: int, tune: int, chains: int) -> dict:
    import warnings

    import arviz as az

    warnings.simplefilter("ignore")
    started = time.perf_counter()
    _, spec, (_, design, model) = _data(n_patients, seed)
    from magbayes.fit import starting_values
    from magbayes.sampler import sample_posterior

    settings = progression_settings(draws=draws, tune=tune, chains=chains, seed=seed)
    # what mb.fit does (compile cache and starting values included)
    tree = sample_posterior(model, settings, start=starting_values(spec, design))
    wall = time.perf_counter() - started
    post = tree["posterior"].to_dataset()
    names = [
        "level_intercept",
        "slope",
        "rate_sural_reduced",
        "gamma_rituximab",
        "gamma_rituximab_x_sural",
        "gamma_later_line",
        "gamma_treatment",
        "patient_sd",
        "patient_corr",
        "site_level_sd",
        "site_slope_sd",
        "cutpoints",
    ]
    names = [n for n in names if n in post]
    ess = az.ess(post[names], method="bulk")
    rhat = az.rhat(post[names])
    per_var = {n: float(ess[n].min()) for n in names}
    worst = min(per_var, key=per_var.get)
    sampling = float(post.attrs.get("sampling_time", float("nan")))
    contrast = post["gamma_rituximab_x_sural"]
    return {
        "tool": "magbayes (nutpie)",
        "visits": int(len(design.data["score"])),
        "wall_s": wall,
        "compile_s": wall - sampling,
        "sampling_s": sampling,
        "ess_bulk_min": per_var[worst],
        "ess_min_var": worst,
        "r_hat_max": float(max(float(rhat[n].max()) for n in names)),
        "ess_contrast": float(ess["gamma_rituximab_x_sural"]),
        "contrast_mean": float(contrast.mean()),
        "contrast_sd": float(contrast.std()),
        "divergences": int(tree["sample_stats"]["diverging"].sum()),
    }


def run_brms(n_patients: int, seed: int, draws: int, tune: int, chains: int) -> dict:
    import os

    from magbayes.fit import resolve_spec

    if shutil.which("Rscript") is None:
        return {"skipped": "R is not installed (apt-get install r-cran-brms)"}
    check = subprocess.run(
        ["Rscript", "-e", "suppressMessages({library(brms); library(rstan)})"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        return {"skipped": "brms or rstan is not installed (apt-get install r-cran-brms)"}
    table, treatments, design = visits_table(n_patients, seed)
    priors = resolve_spec("progression", OVERRIDES).section("priors")
    keys = [
        "slope_sd",
        "sural_rate_sd",
        "rituximab_sd",
        "interaction_sd",
        "later_line_sd",
        "patient_level_sd",
        "patient_rate_sd",
        "site_sd",
        "treatment_sd",
    ]
    values = [float(priors[k]) for k in keys]
    # thresholds: one wide normal prior each (the magbayes model parametrises its cutpoints
    # its own way, see the module docstring)
    keys.append("threshold_sd")
    values.append(float(priors.get("intercept_sd", priors.get("cutpoint_sd", 10.0))))
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "visits.csv", Path(tmp) / "fit.R"
        table.to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        command = [
            "/usr/bin/time",
            "-f",
            "@@MAXRSS@@%M",
            "Rscript",
            str(script),
            str(csv),
            str(chains),
            str(draws),
            str(tune),
            str(seed),
            str(min(chains, os.cpu_count() or 1)),
            ",".join(treatments),
            ",".join(keys),
            ",".join(str(v) for v in values),
        ]
        if shutil.which("/usr/bin/time") is None:
            command = command[3:]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-5:]}
    values: dict = {"tool": "brms (rstan)", "visits": len(table), "wall_s": wall}
    for line in done.stdout.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            try:
                values[key] = float(value)
            except ValueError:
                values[key] = value
    for line in done.stderr.splitlines():
        if line.startswith("@@MAXRSS@@"):
            values["peak_rss_mib"] = int(line[len("@@MAXRSS@@") :]) / 1024
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--patients", type=int, default=47)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument(
        "--tune", type=int, default=0, help="tuning steps (default: brms 1000, magbayes its spec's)"
    )
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--skip-brms", action="store_true", help="run the magbayes side only")
    args = parser.parse_args()
    if args.child:
        emit(child_magbayes(args.patients, args.seed, args.draws, args.tune, args.chains))
        return
    print(f"machine: {machine()}")
    settings = [
        f"--patients={args.patients}",
        f"--seed={args.seed}",
        f"--draws={args.draws}",
        f"--tune={args.tune}",
        f"--chains={args.chains}",
    ]
    rows = []
    brms = (
        {"skipped": "--skip-brms"}
        if args.skip_brms
        else run_brms(args.patients, args.seed, args.draws, args.tune or 1000, args.chains)
    )
    if "skipped" in brms:
        print(f"brms: skipped ({brms['skipped']})")
    elif "error" in brms:
        print(f"brms: failed: {brms['error']}")
    else:
        rows.append(brms)
        print(f"  brms {brms.get('brms_version', '')} done in {brms['wall_s']:.0f} s", flush=True)
    mine = run_child(__file__, settings)
    if "error" in mine:
        print(f"magbayes: failed: {mine['error']}")
    else:
        rows.append(mine)
    for row in rows:
        row["ess_per_s"] = row["ess_bulk_min"] / row["sampling_s"]
        row["ess_per_wall_s"] = row["ess_bulk_min"] / row["wall_s"]
    print(
        f"{args.patients} patients (unknown early-sural status left out), "
        f"{args.chains} chains x {args.draws} draws after {args.tune or 'brms 1000 / the spec'}"
        " tuning steps"
    )
    print_table(
        rows,
        [
            "tool",
            "visits",
            "wall_s",
            "compile_s",
            "sampling_s",
            "ess_bulk_min",
            "ess_min_var",
            "ess_contrast",
            "ess_per_s",
            "ess_per_wall_s",
            "divergences",
            "r_hat_max",
            "contrast_mean",
            "contrast_sd",
            "peak_rss_mib",
        ],
        {
            "wall_s": "{:.1f}",
            "compile_s": "{:.1f}",
            "sampling_s": "{:.1f}",
            "ess_bulk_min": "{:.0f}",
            "ess_contrast": "{:.0f}",
            "ess_per_s": "{:.2f}",
            "ess_per_wall_s": "{:.2f}",
            "divergences": "{:.0f}",
            "r_hat_max": "{:.3f}",
            "contrast_mean": "{:.3f}",
            "contrast_sd": "{:.3f}",
            "peak_rss_mib": "{:.0f}",
        },
    )


if __name__ == "__main__":
    main()
