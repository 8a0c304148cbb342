"""Results of a worsening fit: group benefits, survival curves, hazard ratios, their files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from magbayes.errors import SpecError
from magbayes.labels import Effect, covariate_effects, score_name, treatment_name, vector_effects
from magbayes.models.worsening.definition import DEFAULTS
from magbayes.models.worsening.design import hazard_grid
from magbayes.spec import Spec


def _posterior_dataset(posterior: xr.DataTree | xr.Dataset) -> xr.Dataset:
    if isinstance(posterior, xr.DataTree):
        node = posterior["posterior"] if "posterior" in posterior.children else posterior
        return node.to_dataset()
    return posterior


def _cumulative_baseline(post: xr.Dataset, spec: Spec, years: np.ndarray) -> xr.DataArray:
    """``H0(t)`` from onset at each of ``years``, per draw."""
    t = xr.DataArray(np.asarray(years, float), dims="years", coords={"years": years})
    if "baseline_log_hazard" in post:
        grid = hazard_grid(spec)
        if grid is None:
            raise SpecError("spec has a Weibull baseline but the posterior is piecewise")
        lo, hi = grid[:-1], grid[1:]
        overlap = np.clip(
            np.minimum(np.asarray(years)[:, None], hi[None, :]) - lo[None, :], 0.0, None
        )
        width = xr.DataArray(overlap, dims=("years", "hazard_piece"))
        hazard = np.exp(post["baseline_log_hazard"])
        width = width.assign_coords(hazard_piece=hazard["hazard_piece"].values)
        return (hazard * width).sum("hazard_piece").assign_coords(years=years)
    shape, log_scale = post["weibull_shape"], post["weibull_log_scale"]
    return np.exp(shape * (np.log(t.clip(min=1e-12)) - log_scale)) * (t > 0)


def survival_curves(
    posterior: xr.DataTree | xr.Dataset,
    spec: Spec,
    *,
    years: np.ndarray | None = None,
    rituximab_start_years: float | None = None,
) -> xr.DataArray:
    """Probability of remaining free of confirmed worsening, from onset, per draw.

    For a reference patient (covariates at the cohort mean or the reference category, a
    typical site: frailty 0, no other treatment), by early-sural status, without
    rituximab or with one course started at ``rituximab_start_years``.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        A fit's DataTree (or its posterior group).
    spec : Spec
        The fit's resolved spec (for the baseline grid and figure defaults).
    years : numpy.ndarray, optional
        Times since onset (years); default 0 to ``[figures] horizon_years`` (12).
    rituximab_start_years : float, optional
        When rituximab starts (years since onset); default ``[figures]
        rituximab_start_years``.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, sural_status, rituximab, years) with sural_status
        ``["reduced", "preserved"]`` and rituximab ``["without", "with"]``.
    """
    post = _posterior_dataset(posterior)
    figures = {**DEFAULTS["figures"], **spec.section("figures")}
    if years is None:
        years = np.linspace(0.0, float(figures["horizon_years"]), 121)
    years = np.asarray(years, float)
    start = float(
        figures["rituximab_start_years"] if rituximab_start_years is None else rituximab_start_years
    )
    h_all = _cumulative_baseline(post, spec, years)
    h_before = _cumulative_baseline(post, spec, np.minimum(years, start)).assign_coords(years=years)
    h_after = h_all - h_before
    curves = []
    for status in ("reduced", "preserved"):
        is_reduced = status == "reduced"
        base_lhr = post["beta_sural_reduced"] if is_reduced else 0.0
        rtx_lhr = post["beta_rituximab"] + (post["beta_rituximab_x_sural"] if is_reduced else 0.0)
        without = np.exp(-h_all * np.exp(base_lhr))
        with_rtx = np.exp(-(h_before + h_after * np.exp(rtx_lhr)) * np.exp(base_lhr))
        curves.append(xr.concat([without, with_rtx], dim="rituximab"))
    out = xr.concat(curves, dim="sural_status")
    out = out.assign_coords(
        sural_status=["reduced", "preserved"], rituximab=["without", "with"], years=years
    )
    out.name = "probability_free_of_worsening"
    out.attrs["rituximab_start_years"] = start
    return out.transpose("chain", "draw", "sural_status", "rituximab", "years")


def survival_curve_table(curves: xr.DataArray, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Posterior mean and HDI of each survival curve (long table)."""
    mean = curves.mean(("chain", "draw"))
    band = az.hdi(curves, prob=hdi_prob)
    table = xr.Dataset(
        {
            "mean": mean,
            "hdi_low": band.sel(ci_bound="lower", drop=True),
            "hdi_high": band.sel(ci_bound="upper", drop=True),
        }
    ).to_dataframe()
    table["hdi_prob"] = hdi_prob
    return table.reset_index()


def hazard_ratio_table(posterior: xr.DataTree | xr.Dataset, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Hazard ratios of confirmed worsening with HDIs.

    Each row is one effect: ``hazard_ratio`` is the posterior median of the HR (exp of the
    median log HR), ``hdi_low`` / ``hdi_high`` the exp of the HDI of the log HR
    (``arviz.hdi``), ``p_below_1`` the posterior probability that the HR is below 1
    (fewer worsenings). Covariate HRs are per 1 sd (continuous) or 0 -> 1 (binary).
    """
    post = _posterior_dataset(posterior)
    effects: list[tuple[str, xr.DataArray]] = [
        ("rituximab, sural-preserved", post["beta_rituximab"]),
        ("rituximab, sural-reduced", post["beta_rituximab"] + post["beta_rituximab_x_sural"]),
        ("ratio of rituximab HRs, reduced / preserved", post["beta_rituximab_x_sural"]),
        ("early sural reduction, without rituximab", post["beta_sural_reduced"]),
    ]
    for var, dim, label in (
        ("beta_treatment", "treatment", "treatment"),
        ("beta_covariate", "covariate", "covariate"),
    ):
        if var in post:
            for name in post[dim].values:
                effects.append((f"{label}: {name}", post[var].sel({dim: name}, drop=True)))
    rows = []
    for name, draws in effects:
        band = az.hdi(draws, prob=hdi_prob)
        rows.append(
            {
                "effect": name,
                "hazard_ratio": float(np.exp(draws.median())),
                "hdi_low": float(np.exp(band.sel(ci_bound="lower"))),
                "hdi_high": float(np.exp(band.sel(ci_bound="upper"))),
                "hdi_prob": hdi_prob,
                "p_below_1": float((draws < 0).mean()),
            }
        )
    return pd.DataFrame(rows)


def plot_survival_curves(
    curves: xr.DataArray,
    path: str | Path,
    hdi_prob: float = 0.94,
    score: str = "INCAT",
    title: str = "Reference patient, typical site",
) -> Path:
    """Draw survival curves by early-sural status, with and without rituximab.

    Two panels (sural-reduced, sural-preserved); posterior mean lines with HDI bands;
    the rituximab start marked.
    """
    from matplotlib.figure import Figure

    table = survival_curve_table(curves, hdi_prob)
    start = curves.attrs.get("rituximab_start_years")
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colours = {"without": "#666666", "with": "#1f77b4"}
    for ax, status in zip(axes, ["reduced", "preserved"], strict=True):
        for rtx in ("without", "with"):
            sub = table[(table["sural_status"] == status) & (table["rituximab"] == rtx)]
            label = "no rituximab" if rtx == "without" else f"rituximab from {start:g} y"
            ax.plot(sub["years"], sub["mean"], color=colours[rtx], label=label)
            ax.fill_between(
                sub["years"], sub["hdi_low"], sub["hdi_high"], color=colours[rtx], alpha=0.2
            )
        if start is not None:
            ax.axvline(start, color="#1f77b4", lw=0.8, ls=":")
        ax.set_title(f"early sural {status}")
        ax.set_xlabel("years since onset")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"probability free of confirmed {score} worsening")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{title}; bands: {int(round(hdi_prob * 100))}% HDI", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_outputs(result: Any, folder: str | Path) -> list[Path]:
    """Write the worsening model's tables into a results folder.

    ``survival_curves.csv`` (posterior mean and HDI of each curve of
    :func:`survival_curves`) and ``hazard_ratios.csv`` (:func:`hazard_ratio_table`). The
    report calls this, and draws ``figures/survival_curves.png`` with
    :func:`plot_survival_curves`.

    Parameters
    ----------
    result : magbayes.fit.FitResult
        The fit (its ``posterior`` DataTree, ``spec`` and ``hdi_prob`` are used).
    folder : str or pathlib.Path
        The results folder.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hdi_prob = result.hdi_prob
    curves = survival_curves(result.posterior, result.spec)
    paths = [folder / "survival_curves.csv", folder / "hazard_ratios.csv"]
    survival_curve_table(curves, hdi_prob).to_csv(paths[0], index=False)
    hazard_ratio_table(result.posterior, hdi_prob).to_csv(paths[1], index=False)
    return paths


# ----------------------------------------------------------------------------- words


def draw_survival_curves(result: Any, path: Path) -> str:
    """``figures/survival_curves.png``: the fit's survival curves (caption returned)."""
    curves = survival_curves(result.posterior, result.spec)
    plot_survival_curves(curves, path, result.hdi_prob, score_name(result.spec))
    start = curves.attrs.get("rituximab_start_years")
    return (
        "Probability of remaining free of confirmed worsening against years since onset, "
        "for a reference patient (covariates at the cohort mean or reference category, a "
        "typical site), by early-sural status, without rituximab and with rituximab "
        f"started at {start:g} years since onset: posterior mean (line) and "
        f"{round(100 * result.hdi_prob)}% HDI (band)."
    )


def draw_prior_survival_curves(sample: Any, path: Path) -> str:
    """``figures/prior_survival_curves.png``: survival curves implied by the priors."""
    curves = survival_curves(sample.tree["prior"].to_dataset(), sample.spec)
    plot_survival_curves(
        curves,
        path,
        sample.hdi_prob,
        score_name(sample.spec),
        title="Survival curves implied by the priors (before seeing the data)",
    )
    return "Survival curves drawn from the prior: mean and HDI band by group."


def effects(result: Any) -> list[Effect]:
    """The worsening model's effects: log hazard ratios of treatments and covariates."""
    post = result.posterior["posterior"]
    unit = f"log hazard ratio of confirmed {score_name(result.spec)} worsening"
    out = [
        Effect("rituximab × early sural reduction", "beta_rituximab_x_sural", {}, unit),
        Effect("rituximab, sural-preserved", "beta_rituximab", {}, unit),
        Effect("early sural reduction, without rituximab", "beta_sural_reduced", {}, unit),
        Effect("course in line ≥ 2", "beta_later_line", {}, unit),
    ]
    out += vector_effects(post, "beta_treatment", "treatment", treatment_name, unit)
    out += covariate_effects(post, result.standardisation, unit)
    return out


def methods_sentence(result: Any) -> str:
    """What the worsening model is, for the methods paragraph."""
    change = result.spec.section("outcome")["change"]
    return (
        f"Time from the baseline visit to confirmed {score_name(result.spec)} worsening (at "
        f"least {change} point(s) above baseline, confirmed at the next visit) was modelled "
        "with a Bayesian proportional-hazards model with interval censoring, site frailties "
        "and time-varying treatment exposure; rituximab's hazard ratio was allowed to differ "
        "with early sural reduction."
    )


def plot_patient_worsening(
    predictions: xr.Dataset, cohort: Any, patient: str, path: str | Path
) -> Path:
    """Draw one patient's worsening-free probability under each strategy, on one panel.

    Each strategy's posterior mean (line) and HDI (band), its rituximab start (dotted),
    the patient's baseline visit (grey line) and, if seen, the visit that first showed a
    confirmed worsening (black cross at the bottom).
    """
    from matplotlib.figure import Figure

    from magbayes.models.progression.figures import COLOURS

    sub = predictions.sel(patient=patient)
    years = np.asarray(predictions["time"].values, float)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for k, strategy in enumerate(predictions["strategy"].values):
        colour = COLOURS[k % len(COLOURS)]
        row = sub.sel(strategy=strategy)
        ax.fill_between(
            years,
            row["worsening_free_hdi_low"],
            row["worsening_free_hdi_high"],
            color=colour,
            alpha=0.15,
            lw=0,
        )
        ax.plot(years, row["worsening_free"], color=colour, lw=1.6, label=str(strategy))
        start = float(row["rituximab_start"])
        if np.isfinite(start):
            ax.axvline(start, color=colour, ls=":", lw=1)
    ax.axvline(float(sub["at_risk_from"]), color="#888888", lw=0.8, label="baseline visit")
    seen = float(sub["worsening_seen_by"])
    if np.isfinite(seen):
        ax.plot([seen], [0.02], "x", color="#222222", ms=7, label="worsening seen")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("years since onset")
    ax.set_ylabel(
        f"probability free of confirmed {predictions.attrs.get('score', '').upper()} worsening"
    )
    kind = "fitted patient" if bool(sub["fitted"]) else "new patient"
    band = round(100 * float(predictions.attrs.get("hdi_prob", 0.94)))
    ax.set_title(f"{patient} ({kind}): posterior mean and {band}% HDI", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
