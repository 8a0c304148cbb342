"""The figures of a results folder (``figures/*.png``), each readable at a glance.

Every figure function takes a :class:`~magbayes.fit.FitResult` and a path, draws one
figure with labelled axes and units, saves it as PNG and returns its caption. A figure
that does not apply to a model (trajectories of a model without a score at each visit,
survival curves of a model without a hazard) raises :class:`NotApplicable` with the
reason, which the report states. :func:`draw_figures` draws them all.

ArviZ draws the predictive check, the forest plot, the prior/posterior of the headline
contrast and the rank plots; matplotlib draws the clinical ones (trajectories, survival
curves).
"""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure as MplFigure

from magbayes.models import get_model
from magbayes.models.base import ModelFigure, NotApplicable
from magbayes.report.labels import (
    effects,
    outcome_variable,
    score_axis_label,
    score_name,
)

if TYPE_CHECKING:
    from magbayes.fit import FitResult

#: Resolution of the saved figures (dots per inch).
DPI = 110

#: Colours: observed data, posterior predictive, prior, benefit shading.
OBSERVED = "#222222"
PREDICTED = "#1f77b4"
PRIOR = "#999999"
BENEFIT = "#2ca02c"
SITE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True)
class DrawnFigure:
    """A figure written into the results folder.

    Attributes
    ----------
    name : str
        File stem (``"trajectories"``).
    path : pathlib.Path
        Where the PNG was written.
    title : str
        Heading in the report.
    caption : str
        What the figure shows and how to read it.
    """

    name: str
    path: Path
    title: str
    caption: str


@dataclass(frozen=True)
class SkippedFigure:
    """A figure not drawn for this fit, with the reason (stated in the report)."""

    name: str
    title: str
    reason: str


# ----------------------------------------------------------------------------- helpers


def _save(fig: MplFigure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def _pc_figure(pc) -> MplFigure:
    """The matplotlib figure of an ArviZ ``PlotCollection``."""
    return pc.viz["figure"].item()


def _pc_axes(pc, var: str):
    """The matplotlib axes of one variable in an ArviZ ``PlotCollection``."""
    plot = pc.viz["plot"]
    if var in plot.data_vars:
        return np.asarray(plot[var].values).ravel()[0]
    return np.asarray(plot.to_dataset().to_array().values).ravel()[0]


def _close(fig: MplFigure) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _hdi(draws: xr.DataArray, prob: float) -> tuple[np.ndarray, np.ndarray]:
    band = az.hdi(draws, prob=prob)
    return (
        np.asarray(band.sel(ci_bound="lower").values),
        np.asarray(band.sel(ci_bound="upper").values),
    )


def _wrap(text: str, width: int = 90) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _percent(prob: float) -> str:
    return f"{100 * prob:.0f}%"


def _score_scale(result: FitResult, values: np.ndarray | xr.DataArray):
    """Scores in their printed units (the I-RODS centile is modelled on 0-1)."""
    if str(result.spec.section("outcome").get("score", "incat")) == "irods":
        return values * 100.0
    return values


# ----------------------------------------------------------------------------- trajectories


def _visit_table(result: FitResult, var: str) -> pd.DataFrame:
    tree = result.posterior
    const = tree["constant_data"]
    observed = tree["observed_data"][var]
    if "visit" not in observed.dims or "years_since_onset" not in const.data_vars:
        raise NotApplicable(
            f"the {result.model} model's outcome ({var}) is not a score at each visit"
        )
    patients = list(const["patient"].values)
    patient_of_visit = np.asarray(const["patient_of_visit"].values, int)
    table = pd.DataFrame(
        {
            "visit": np.asarray(observed["visit"].values),
            "patient": [patients[i] for i in patient_of_visit],
            "years": np.asarray(const["years_since_onset"].values, float),
            "observed": np.asarray(_score_scale(result, observed.values), float),
        }
    )
    sites = _labels(tree, "site")
    if "site_of_patient" in const.data_vars and sites:
        site_of_patient = np.asarray(const["site_of_patient"].values, int)
        table["site"] = [sites[site_of_patient[i]] for i in patient_of_visit]
    else:
        table["site"] = "all"
    if "rituximab_years" in const.data_vars:
        table["rituximab_years"] = np.asarray(const["rituximab_years"].values, float)
    else:
        table["rituximab_years"] = 0.0
    if "sural_known" in const.data_vars and "sural_reduced" in const.data_vars:
        known = np.asarray(const["sural_known"].values, bool)
        reduced = np.asarray(const["sural_reduced"].values, int)
        status = np.where(known, np.where(reduced == 1, "sural reduced", "sural preserved"), "")
        table["sural"] = [status[i] or "sural unknown" for i in patient_of_visit]
    else:
        table["sural"] = ""
    return table


def _labels(tree: xr.DataTree, dim: str) -> list:
    """Labels of a dimension, from the first group that has it as a coordinate."""
    for group in ("constant_data", "posterior", "prior"):
        if group in tree.children and dim in tree[group].coords:
            return list(tree[group][dim].values)
    return []


def _pick_patients(table: pd.DataFrame, n: int) -> list[str]:
    """Patients to show: most visits first, rituximab-treated first, spread over sites."""
    per = table.groupby("patient").agg(
        site=("site", "first"),
        visits=("visit", "size"),
        rituximab=("rituximab_years", lambda x: bool((x > 0).any())),
    )
    per = per.sort_values(["rituximab", "visits"], ascending=[False, False], kind="stable")
    by_site = {site: list(group.index) for site, group in per.groupby("site", sort=True)}
    chosen: list[str] = []
    while len(chosen) < n and any(by_site.values()):
        for site in list(by_site):
            if by_site[site] and len(chosen) < n:
                chosen.append(by_site[site].pop(0))
    return chosen


def plot_trajectories(result: FitResult, path: str | Path, n_patients: int = 6) -> str:
    """Observed scores of a few patients and the site means, with posterior predictive bands.

    Parameters
    ----------
    result : FitResult
        A fit whose outcome is a score at each visit (progression).
    path : str or pathlib.Path
        PNG to write.
    n_patients : int
        Patient panels (the most-followed patients, rituximab-treated first, alternating
        sites).

    Returns
    -------
    str
        Caption.
    """
    var = outcome_variable(result.model)
    tree = result.posterior
    if "posterior_predictive" not in tree.children or var not in tree["posterior_predictive"]:
        raise NotApplicable("the fit has no posterior predictive draws of the outcome")
    table = _visit_table(result, var)
    predicted = _score_scale(result, tree["posterior_predictive"][var].astype(float))
    hdi_prob = result.hdi_prob
    chosen = _pick_patients(table, n_patients)
    score_label = score_axis_label(result.spec)
    low_high = _score_range(result)

    n_cols = 3
    n_rows = int(np.ceil(len(chosen) / n_cols)) + 1
    fig = MplFigure(figsize=(12, 3.0 * n_rows), layout="constrained")
    grid = fig.add_gridspec(n_rows, n_cols)
    for k, pid in enumerate(chosen):
        ax = fig.add_subplot(grid[k // n_cols, k % n_cols])
        rows = table[table["patient"] == pid].sort_values("years")
        draws = predicted.sel(visit=rows["visit"].to_numpy())
        wide_lo, wide_hi = _hdi(draws, hdi_prob)
        mid_lo, mid_hi = _hdi(draws, 0.5)
        mean = np.asarray(draws.mean(("chain", "draw")).values)
        years = rows["years"].to_numpy()
        for lo, hi, alpha in ((wide_lo, wide_hi, 0.15), (mid_lo, mid_hi, 0.3)):
            ax.fill_between(years, lo, hi, color=PREDICTED, alpha=alpha, lw=0, step="mid")
        ax.plot(years, mean, color=PREDICTED, lw=1.2)
        ax.plot(rows["years"], rows["observed"], "o", color=OBSERVED, ms=4)
        exposed = rows[rows["rituximab_years"] > 0]
        if len(exposed):
            first = exposed.iloc[0]
            start = float(first["years"] - first["rituximab_years"])
            ax.axvline(start, color="#d62728", ls=":", lw=1.2)
            ax.text(start, low_high[1], " rituximab", color="#d62728", fontsize=7, va="top")
        ax.set_title(f"{pid} · {rows['site'].iloc[0]} · {rows['sural'].iloc[0]}", fontsize=9)
        ax.set_ylim(low_high[0] - 0.5, low_high[1] + 0.5)
        ax.set_xlabel("years since onset")
        if k % n_cols == 0:
            ax.set_ylabel(score_name(result.spec))
        ax.grid(alpha=0.3)

    ax = fig.add_subplot(grid[n_rows - 1, :])
    _plot_site_means(ax, table, predicted, hdi_prob)
    ax.set_ylabel(f"mean {score_name(result.spec)}")
    ax.set_xlabel("years since onset (visits grouped by whole year)")
    ax.set_title("Site means: observed (points) and posterior predictive (line, band)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"{score_label}: observed visits (black); posterior predictive mean (line) with "
        f"50% and {_percent(hdi_prob)} HDI bands (blue)",
        fontsize=10,
    )
    _save(fig, Path(path))
    return (
        f"Observed {score_name(result.spec)} at each visit (black points) of {len(chosen)} "
        f"patients (the most-followed, rituximab-treated first, alternating sites) with the "
        f"posterior predictive mean (line) and 50% / {_percent(hdi_prob)} highest-density "
        "bands of the predicted score at the same visits (steps: scores are whole points); "
        "the dotted red line marks the start of rituximab. Bottom: "
        "the mean score of each site's visits, grouped by whole year since onset, observed "
        "(points) against the model's predicted mean (line and band). Points that fall "
        "outside the bands more often than the band level says point to misfit."
    )


def _score_range(result: FitResult) -> tuple[float, float]:
    from magbayes.cohort.tables import SCORES

    score = str(result.spec.section("outcome").get("score", "incat"))
    low, high, _ = SCORES.get(score, (0, 10, True))
    return float(low), float(high)


def _plot_site_means(ax, table: pd.DataFrame, predicted: xr.DataArray, hdi_prob: float) -> None:
    table = table.assign(year_bin=np.floor(table["years"]).astype(int))
    for k, (site, rows) in enumerate(table.groupby("site", sort=True)):
        colour = SITE_COLOURS[k % len(SITE_COLOURS)]
        xs, obs, mean, lo, hi = [], [], [], [], []
        for year, cell in rows.groupby("year_bin", sort=True):
            draws = predicted.sel(visit=cell["visit"].to_numpy()).mean("visit")
            band_lo, band_hi = _hdi(draws, hdi_prob)
            xs.append(year + 0.5)
            obs.append(cell["observed"].mean())
            mean.append(float(draws.mean()))
            lo.append(float(band_lo))
            hi.append(float(band_hi))
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.plot(xs, mean, color=colour, lw=1.5, label=f"{site}: predicted")
        ax.plot(xs, obs, "o", color=colour, ms=5, mec=OBSERVED, label=f"{site}: observed")


# ----------------------------------------------------------------------------- PPC


def draw_rootogram(
    tree: xr.DataTree,
    var: str,
    path: str | Path,
    *,
    what: str,
    group: str = "posterior_predictive",
    ci_prob: float = 0.94,
    title: str = "Posterior predictive check",
) -> None:
    """Rootogram of a discrete outcome: observed counts against predicted ones (ArviZ).

    Parameters
    ----------
    tree : xarray.DataTree
        With ``observed_data`` and ``group``.
    var : str
        The outcome variable.
    path : str or pathlib.Path
        PNG to write.
    what : str
        The outcome in words (x-axis label).
    group : {"posterior_predictive", "prior_predictive"}
        Predictions to show.
    ci_prob : float
        Probability of the predicted counts' intervals.
    title : str
        Figure title (``what`` is appended).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = az.plot_ppc_rootogram(
            tree,
            var_names=[var],
            group=group,
            ci_prob=ci_prob,
            visuals={"observed_markers": {}},
        )
    fig = _pc_figure(pc)
    ax = _pc_axes(pc, var)
    ax.set_xlabel(what)
    ax.set_ylabel("number of observations (square-root scale)")
    observed = np.asarray(tree["observed_data"][var].values)
    predicted = np.asarray(tree[group][var].values)
    observed, predicted = observed[observed >= 0], predicted[predicted >= 0]  # < 0: empty cells
    if observed.size:
        # every value observed or predicted gets its tick
        high = max(int(observed.max()), int(predicted.max()) if predicted.size else 0)
        ax.set_xticks(np.arange(int(observed.min()), high + 1))
    ax.set_title(f"{title}: {what}", fontsize=10)
    fig.set_size_inches(8, 4)
    _save(fig, Path(path))
    _close(fig)


def plot_ppc(result: FitResult, path: str | Path) -> str:
    """Posterior predictive check of the outcome's distribution (rootogram for counts).

    Parameters
    ----------
    result : FitResult
        Any fit with a ``posterior_predictive`` group.
    path : str or pathlib.Path
        PNG to write.

    Returns
    -------
    str
        Caption.
    """
    tree = result.posterior
    var = outcome_variable(result.model)
    if "posterior_predictive" not in tree.children or var not in tree["posterior_predictive"]:
        raise NotApplicable("the fit has no posterior predictive draws of the outcome")
    observed = tree["observed_data"][var]
    what = get_model(result.model).describe_outcome(result)
    if observed.dtype.kind in "iub":
        draw_rootogram(tree, var, path, what=what, ci_prob=result.hdi_prob)
        return (
            f"Rootogram of {what}: observed counts of each value (black) against the counts "
            f"predicted by the fitted model (markers, with {_percent(result.hdi_prob)} "
            "intervals), on a square-root scale so that small counts stay visible. Observed "
            "counts outside the intervals mean the model mis-predicts how often that value "
            "occurs."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = az.plot_ppc_dist(tree, var_names=[var])
    fig = _pc_figure(pc)
    _pc_axes(pc, var).set_xlabel(what)
    fig.suptitle(f"Posterior predictive check: {what}", fontsize=10)
    _save(fig, Path(path))
    _close(fig)
    return (
        f"Distribution of {what}: observed (black) against replicated data sets from the "
        "fitted model."
    )


# ----------------------------------------------------------------------------- forest


def effects_dataset(result: FitResult, group: str = "posterior") -> xr.Dataset:
    """The fit's effects as one variable each, named readably (for forest plots)."""
    ds = result.posterior[group].to_dataset()
    out = {}
    for effect in effects(result):
        if effect.variable in ds:
            out[effect.label] = effect.draws(ds)
    return xr.Dataset(out)


def plot_forest(result: FitResult, path: str | Path) -> str:
    """Forest plot of the treatment, early-sural and covariate effects.

    Parameters
    ----------
    result : FitResult
        A fit.
    path : str or pathlib.Path
        PNG to write.

    Returns
    -------
    str
        Caption.
    """
    ds = effects_dataset(result)
    if not ds.data_vars:
        raise NotApplicable("the model has no treatment or covariate effects to show")
    units = sorted({e.unit for e in effects(result)})
    hdi_prob = result.hdi_prob
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = az.plot_forest(
            xr.DataTree.from_dict({"posterior": ds}),
            combined=True,
            ci_kind="hdi",
            ci_probs=(0.5, hdi_prob),
            point_estimate="mean",
            figure_kwargs={
                "width_ratios": [1.0, 1.4],
                "figsize": (11, 0.42 * len(ds.data_vars) + 1.6),
            },
        )
    fig = _pc_figure(pc)
    axes = np.asarray(pc.viz["plot"].values).ravel()
    forest_ax = axes[-1]
    forest_ax.axvline(0.0, color=PRIOR, lw=1, ls="--")
    unit_text = get_model(result.model).describe_units(result, units)
    forest_ax.set_xlabel(_wrap(unit_text, 70), fontsize=9)
    for ax in axes[:-1]:
        ax.set_xticks([])
        ax.set_xlabel("")
    fig.suptitle(
        f"Effects: posterior mean (point), 50% (thick) and {_percent(hdi_prob)} (thin) HDI",
        fontsize=10,
    )
    _save(fig, Path(path))
    _close(fig)
    return (
        f"Posterior of each effect: mean (point), 50% (thick bar) and {_percent(hdi_prob)} "
        f"(thin bar) highest-density intervals; dashed line at 0 (no effect). {unit_text}."
    )


# ----------------------------------------------------------------------------- headline


def plot_headline(result: FitResult, path: str | Path) -> str:
    """Prior and posterior of the headline contrast, the benefit side shaded.

    Parameters
    ----------
    result : FitResult
        A fit of a model with a ``HEADLINE``.
    path : str or pathlib.Path
        PNG to write.

    Returns
    -------
    str
        Caption.
    """
    spec = get_model(result.model).headline
    var = spec.contrast_var
    tree = result.posterior
    if var not in tree["posterior"].data_vars:
        raise NotApplicable(f"the posterior has no {var}")
    headline = result.headline()
    has_prior = "prior" in tree.children and var in tree["prior"].data_vars
    sign = spec.benefit_sign
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if has_prior:
            pc = az.plot_prior_posterior(tree, var_names=[var])
            line = pc.viz["dist"][var].sel(group="posterior").item()
            fig, ax = _pc_figure(pc), _pc_axes(pc, var)
            x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        else:
            pc = az.plot_dist(tree, var_names=[var])
            fig, ax = _pc_figure(pc), _pc_axes(pc, var)
            line = ax.get_lines()[0]
            x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    benefit = sign * x > 0
    shade = ax.fill_between(x, 0, y, where=benefit, color=BENEFIT, alpha=0.35, lw=0)
    for legend in list(fig.legends):
        legend.remove()
    handles = [h for h in ax.get_lines() if h.get_xdata().size > 2]
    names = ["prior", "posterior"] if has_prior else ["posterior"]
    ax.legend(
        handles[: len(names)] + [shade],
        names + ["benefit side"],
        loc="upper right",
        fontsize=8,
        frameon=False,
    )
    ax.axvline(0.0, color=OBSERVED, lw=1, ls="--")
    p, mcse = headline["p_sural_predicts_rituximab_benefit"], headline["mcse"]
    direction = "< 0" if sign < 0 else "> 0"
    ax.text(
        0.02,
        0.95,
        f"P(contrast {direction}) = {p:.3f}\n(MCSE {mcse:.3f})",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
        color=BENEFIT,
    )
    ax.set_xlabel(_wrap(headline["contrast"]["scale"], 80), fontsize=9)
    ax.set_ylabel("density")
    ax.set_title(_wrap(spec.question, 80), fontsize=10)
    fig.set_size_inches(8, 4.5)
    _save(fig, Path(path))
    _close(fig)
    prior_text = "prior (blue) and posterior (orange)" if has_prior else "posterior"
    return (
        f"Density of the headline contrast `{var}`: {prior_text}. The shaded area is the "
        f"posterior probability that rituximab's benefit is larger with early sural reduction "
        f"(P = {p:.3f}, Monte Carlo standard error {mcse:.3f}). How far the posterior moved "
        "from the prior shows how much the data say about the question."
    )


# ----------------------------------------------------------------------------- rank


def rank_variables(result: FitResult, max_vars: int = 6) -> xr.Dataset:
    """Variables for rank plots: the headline pair and the worst-converged ones.

    Vector variables contribute their worst element (highest R-hat), labelled
    ``name[coordinate]``.
    """
    headline = get_model(result.model).headline
    post = result.posterior["posterior"].to_dataset()
    diagnostics = result.diagnostics()
    wanted = [headline.contrast_var, headline.main_var]
    for key in ("r_hat_max_variable", "ess_bulk_min_variable", "ess_tail_min_variable"):
        name = diagnostics.get(key)
        if name and name not in wanted:
            wanted.append(name)
    out: dict[str, xr.DataArray] = {}
    for name in wanted:
        if name not in post or len(out) >= max_vars:
            continue
        var = post[name]
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        if not extra:
            out[name] = var
            continue
        rhat = az.rhat(var.to_dataset(name="v"))["v"]
        flat = rhat.stack(element=extra)
        worst = flat.isel(element=int(np.nanargmax(flat.values)))
        coords = {d: worst[d].item() for d in extra}
        label = f"{name}[{', '.join(str(v) for v in coords.values())}]"
        out[label] = var.sel(coords, drop=True)
    return xr.Dataset(out)


def plot_rank(result: FitResult, path: str | Path) -> str:
    """Rank plots of the headline parameters and of the worst-converged ones.

    Parameters
    ----------
    result : FitResult
        A fit with more than one chain.
    path : str or pathlib.Path
        PNG to write.

    Returns
    -------
    str
        Caption (with the convergence verdict).
    """
    post = result.posterior["posterior"]
    if post.sizes.get("chain", 1) < 2:
        raise NotApplicable("rank plots compare chains, and this fit has one chain")
    ds = rank_variables(result)
    diagnostics = result.diagnostics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n_rows = int(np.ceil(len(ds.data_vars) / 3))
        pc = az.plot_rank(
            xr.DataTree.from_dict({"posterior": ds}),
            col_wrap=3,
            figure_kwargs={"figsize": (12, 3.2 * n_rows + 0.8), "layout": "constrained"},
        )
    fig = _pc_figure(pc)
    verdict = "passed" if diagnostics["passed"] else "FAILED: " + "; ".join(diagnostics["reasons"])
    fig.suptitle(_wrap(f"Rank plots by chain (convergence checks {verdict})", 100), fontsize=10)
    _save(fig, Path(path))
    _close(fig)
    return (
        "Rank plots: the draws of all chains are ranked together, and each line is one chain's "
        "empirical distribution of fractional ranks minus the uniform one (Δ-ECDF). Lines "
        "that stay close to zero and to each other mean the chains explore the same "
        "distribution; lines bulging in opposite directions (one chain holding the low "
        "ranks, another the high ones) point to a chain that is stuck or slow. Shown: the "
        "headline contrast, rituximab's "
        "main effect, and the variables with the highest R-hat or lowest effective sample "
        f"size. Convergence checks {verdict}."
    )


# ----------------------------------------------------------------------------- all


#: Figures of every fit, in report order (each model's own come before the rank plots).
FIGURES: tuple[ModelFigure, ...] = (
    ModelFigure("trajectories", "Disability trajectories", plot_trajectories),
    ModelFigure("ppc", "Posterior predictive check", plot_ppc),
    ModelFigure("forest", "Effects", plot_forest),
    ModelFigure("headline", "Headline contrast: prior and posterior", plot_headline),
)

#: The convergence figure, always last.
RANK = ModelFigure("rank", "Rank plots (convergence)", plot_rank)


def figures_of(result: FitResult) -> tuple[ModelFigure, ...]:
    """The figures of a fit, in report order: the shared ones, the model's own, rank plots."""
    return (*FIGURES, *get_model(result.model).figures, RANK)


def draw_figures(
    result: FitResult, folder: str | Path
) -> tuple[list[DrawnFigure], list[SkippedFigure]]:
    """Draw every figure that applies to the fit into ``folder/figures``.

    A figure that does not apply is skipped with its reason; one that fails is skipped
    with the error (and a warning), so that a long fit is never lost to a plotting bug.

    Parameters
    ----------
    result : FitResult
        The fit.
    folder : str or pathlib.Path
        Results folder.

    Returns
    -------
    drawn, skipped : list
        :class:`DrawnFigure` and :class:`SkippedFigure` entries, in report order.
    """
    import matplotlib.pyplot as plt

    out = Path(folder) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    drawn: list[DrawnFigure] = []
    skipped: list[SkippedFigure] = []
    for figure in figures_of(result):
        name, title = figure.name, figure.title
        path = out / f"{name}.png"
        try:
            caption = figure.draw(result, path)
        except NotApplicable as reason:
            skipped.append(SkippedFigure(name, title, f"does not apply: {reason}"))
            continue
        except Exception as err:  # noqa: BLE001 (reported, never silent)
            warnings.warn(f"figure {name} could not be drawn: {err!r}", stacklevel=2)
            skipped.append(SkippedFigure(name, title, f"could not be drawn: {err!r}"))
            continue
        finally:
            plt.close("all")
        drawn.append(DrawnFigure(name, path, title, caption))
    return drawn, skipped
