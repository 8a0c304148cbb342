"""Prior predictive checks: what a model's priors imply, drawn before the data are used.

``magbayes fit MODEL --data COHORT --out DIR --prior-only`` calls
:func:`magbayes.fit.sample_prior` and then :func:`write_prior_check`, which writes a small
folder:

``figures/prior_trajectories.png``
    (models of a score over time) the score over 0-12 years since onset implied by the
    priors, for every patient of the cohort seen once every half year;
``figures/NAME.png``
    the model's own prior figures (its definition's ``prior_figures``: the worsening
    model's survival curves drawn from the prior);
``figures/prior_predictive.png``
    (other models) the prior predictive distribution of the outcome beside the observed;
``prior_summary.csv``
    the priors of the population-level parameters (mean, sd, interval);
``prior_trajectories.csv``
    (score models) the predicted score by year: mean, quantiles, and the share of
    predictions at each end of the scale;
``manifest.json``
    provenance (command, resolved spec, seed, data SHA-256, versions).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure as MplFigure

from magbayes.atomic import atomic_folder, write_json
from magbayes.cohort.tables import SCORES
from magbayes.models import get_model
from magbayes.report.figures import (
    DPI,
    OBSERVED,
    PREDICTED,
    PRIOR,
    draw_rootogram,
)
from magbayes.report.labels import outcome_variable, score_axis_label, score_name

if TYPE_CHECKING:
    from magbayes.fit import PriorSample

#: Horizon and spacing of the grid of visits (years since onset).
HORIZON_YEARS = 12.0
STEP_YEARS = 0.5


def prior_visit_years(model: str) -> np.ndarray | None:
    """Years since onset at which to draw a model's prior predictive (``None``: own visits).

    A model with a trajectory (a score at each visit, its definition's ``has_trajectory``)
    is drawn at 0, 0.5, ..., 12 years for every patient, so the figure shows what the
    priors say about the whole follow-up.
    """
    if get_model(model).has_trajectory:
        return np.arange(0.0, HORIZON_YEARS + STEP_YEARS / 2, STEP_YEARS)
    return None


def prior_summary(sample: PriorSample) -> pd.DataFrame:
    """Mean, sd and HDI of each population-level parameter under the prior (ArviZ)."""
    names = get_model(sample.model).present_summary_vars(sample.tree["prior"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(
            sample.tree,
            group="prior",
            var_names=names,
            kind="stats",
            ci_prob=sample.hdi_prob,
            ci_kind="hdi",
            round_to="none",
        )
    return table.apply(pd.to_numeric, errors="coerce")


def _score(sample: PriorSample) -> str:
    return str(sample.spec.section("outcome").get("score", "incat"))


def _predicted_by_visit(sample: PriorSample) -> pd.DataFrame:
    """Long table of prior predictive scores: draw, patient, years, score (printed units)."""
    tree = sample.tree
    var = outcome_variable(sample.model)
    predicted = tree["prior_predictive"][var]
    const = tree["constant_data"]
    if "visit" not in predicted.dims or "years_since_onset" not in const.data_vars:
        raise ValueError(f"the {sample.model} model's outcome is not a score at each visit")
    values = np.asarray(predicted.stack(sample=("chain", "draw")).transpose("sample", "visit"))
    values = values.astype(float)
    if _score(sample) == "irods":
        values = values * 100.0
    years = np.asarray(const["years_since_onset"].values, float)
    patients = np.asarray(const["patient_of_visit"].values, int)
    n_draws, n_visits = values.shape
    return pd.DataFrame(
        {
            "draw": np.repeat(np.arange(n_draws), n_visits),
            "patient": np.tile(patients, n_draws),
            "years": np.tile(years, n_draws),
            "score": values.ravel(),
        }
    )


def trajectory_table(sample: PriorSample) -> pd.DataFrame:
    """Prior predictive score by year since onset, over all draws and patients.

    Columns: ``years_since_onset``, ``mean``, ``q05``, ``q25``, ``q50``, ``q75``, ``q95``
    (score units), ``share_at_lowest`` and ``share_at_highest`` (the share of predicted
    scores at each end of the scale: priors that pile predictions there are too wide).
    """
    long = _predicted_by_visit(sample)
    low, high, _ = SCORES[_score(sample)]
    rows = []
    for year, cell in long.groupby("years", sort=True):
        values = cell["score"].to_numpy()
        q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
        rows.append(
            {
                "years_since_onset": float(year),
                "mean": float(values.mean()),
                "q05": q[0],
                "q25": q[1],
                "q50": q[2],
                "q75": q[3],
                "q95": q[4],
                "share_at_lowest": float(np.mean(values <= low)),
                "share_at_highest": float(np.mean(values >= high)),
            }
        )
    return pd.DataFrame(rows)


def plot_prior_trajectories(sample: PriorSample, path: str | Path, n_lines: int = 40) -> str:
    """Spaghetti and bands of the score over years since onset implied by the priors.

    Parameters
    ----------
    sample : PriorSample
        Prior draws on a grid of years (:func:`prior_visit_years`).
    path : str or pathlib.Path
        PNG to write.
    n_lines : int
        Single-patient trajectories drawn in the left panel.

    Returns
    -------
    str
        Caption.
    """
    long = _predicted_by_visit(sample)
    table = trajectory_table(sample)
    score = _score(sample)
    low, high, _ = SCORES[score]
    name = score_name(score)
    rng = np.random.default_rng(sample.seed)
    pairs = long[["draw", "patient"]].drop_duplicates().to_numpy()
    picked = pairs[rng.choice(len(pairs), size=min(n_lines, len(pairs)), replace=False)]

    fig = MplFigure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 0.8]})
    ax = axes[0]
    by_pair = long.set_index(["draw", "patient"]).sort_index()
    for draw, patient in picked:
        rows = by_pair.loc[(draw, patient)].sort_values("years")
        ax.plot(rows["years"], rows["score"], color=PREDICTED, alpha=0.35, lw=1)
    ax.set_title(f"{len(picked)} single-patient trajectories drawn from the prior", fontsize=10)

    ax = axes[1]
    years = table["years_since_onset"]
    ax.fill_between(years, table["q05"], table["q95"], color=PRIOR, alpha=0.3, lw=0)
    ax.fill_between(years, table["q25"], table["q75"], color=PRIOR, alpha=0.5, lw=0)
    ax.plot(years, table["q50"], color=OBSERVED, lw=1.2, label="prior median")
    ax.plot(years, table["mean"], color=PREDICTED, lw=1.5, label="prior mean")
    observed = sample.observed_visits
    if score in observed.columns:
        seen = observed[observed[score].notna()]
        jitter = rng.uniform(-0.15, 0.15, len(seen))
        ax.plot(
            seen["years_since_onset"],
            seen[score].astype(float) + jitter,
            ".",
            color="#d62728",
            alpha=0.35,
            ms=3,
            label="observed visits (jittered)",
        )
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("All patients: prior 50% and 90% central intervals", fontsize=10)
    for ax in axes[:2]:
        ax.set_xlabel("years since onset")
        ax.set_ylabel(score_axis_label(score), fontsize=9)
        ax.set_ylim(low - 0.5 if high <= 12 else low - 2, high + 0.5 if high <= 12 else high + 2)
        ax.set_xlim(0, float(years.max()))
        ax.grid(alpha=0.3)

    ax = axes[2]
    last = long[long["years"] == long["years"].max()]["score"]
    if SCORES[score][2]:
        values = np.arange(int(low), int(high) + 1)
        shares = [(last == v).mean() for v in values]
        ax.bar(values, shares, color=PRIOR, edgecolor=OBSERVED)
        ax.set_xticks(values)
    else:
        ax.hist(last, bins=20, range=(low, high), color=PRIOR, edgecolor=OBSERVED, density=True)
    ax.set_xlabel(f"{name} at {float(long['years'].max()):g} years since onset")
    ax.set_ylabel("share of prior predictions")
    ax.set_title("Prior predictive distribution at the horizon", fontsize=10)
    ax.grid(alpha=0.3)
    fig.suptitle(
        f"What the priors of the {sample.model} model imply for {name}, before seeing the "
        f"scores ({int(long['draw'].nunique())} prior draws, every patient seen every "
        f"{STEP_YEARS:g} year)",
        fontsize=11,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return (
        f"Left: single patients' {name} trajectories drawn from the priors (each line one "
        "draw of one patient, with their own covariates and treatment courses). Middle: "
        "median, mean and central 50% / 90% intervals over all draws and patients, with the "
        "cohort's observed visits (red). Right: the predicted score at the horizon. Priors "
        "are clinically sane when trajectories look like possible patients: not jumping "
        "between the ends of the scale, and not piling up at 0 or at the maximum."
    )


def plot_prior_predictive(sample: PriorSample, path: str | Path) -> str:
    """Prior predictive distribution of the outcome beside the observed one (rootogram)."""
    tree = sample.tree
    var = outcome_variable(sample.model)
    draw_rootogram(
        tree,
        var,
        path,
        what=f"{var} (observed: black)",
        group="prior_predictive",
        ci_prob=sample.hdi_prob,
        title="Prior predictive check",
    )
    return f"Counts of each value of {var}: observed (black) and predicted from the prior."


def write_prior_check(sample: PriorSample, folder: str | Path) -> list[Path]:
    """Write the prior predictive check folder (atomically).

    Parameters
    ----------
    sample : PriorSample
        From :func:`magbayes.fit.sample_prior`.
    folder : str or pathlib.Path
        Folder to write (replaced if it exists).

    Returns
    -------
    list of pathlib.Path
        The files written (final paths).
    """
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        written = _write_prior_files(sample, tmp)
        written.append(write_json(tmp / "manifest.json", sample.manifest()))
    return [folder / p.relative_to(tmp) for p in written]


def _write_prior_files(sample: PriorSample, out: Path) -> list[Path]:
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    written = []
    prior_summary(sample).to_csv(out / "prior_summary.csv", index_label="parameter")
    written.append(out / "prior_summary.csv")
    var = outcome_variable(sample.model)
    per_visit = "visit" in sample.tree["prior_predictive"][var].dims
    if per_visit and "years_since_onset" in sample.tree["constant_data"].data_vars:
        trajectory_table(sample).to_csv(out / "prior_trajectories.csv", index=False)
        plot_prior_trajectories(sample, figures / "prior_trajectories.png")
        written += [out / "prior_trajectories.csv", figures / "prior_trajectories.png"]
    for figure in get_model(sample.model).prior_figures:
        figure.draw(sample, figures / f"{figure.name}.png")
        written.append(figures / f"{figure.name}.png")
    if "observed_data" in sample.tree.children and not per_visit:
        plot_prior_predictive(sample, figures / "prior_predictive.png")
        written.append(figures / "prior_predictive.png")
    return written


def describe(sample: PriorSample) -> str:
    """A few lines for the terminal: what the priors imply."""
    lines = [f"prior predictive check of the {sample.model} model ({_draws(sample)} draws)"]
    var = outcome_variable(sample.model)
    if "visit" in sample.tree["prior_predictive"][var].dims and sample.visit_years:
        table = trajectory_table(sample)
        name = score_name(_score(sample))
        for year in (1.0, 5.0, 10.0, float(table["years_since_onset"].max())):
            row = table.iloc[(table["years_since_onset"] - year).abs().argmin()]
            lines.append(
                f"  {name} at {row['years_since_onset']:g} y: median {row['q50']:g}, "
                f"90% interval [{row['q05']:g}, {row['q95']:g}], "
                f"{100 * row['share_at_highest']:.0f}% at the top of the scale"
            )
    return "\n".join(lines)


def _draws(sample: PriorSample) -> int:
    prior: xr.DataTree = sample.tree["prior"]
    return int(prior.sizes.get("chain", 1) * prior.sizes.get("draw", 0))
