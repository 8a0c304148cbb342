"""The progression model's own figures: the timing contrast, and one patient's predictions.

Prompt against delayed rituximab by early-sural group (the report), and one patient's
predicted scores under each strategy (``magbayes predict``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from magbayes.labels import score_axis_label
from magbayes.models.base import NotApplicable


def plot_timing(result: Any, path: Path) -> str:
    """``figures/timing.png``: prompt minus delayed rituximab at 10 years, by sural group.

    Reads the fit's ``timing`` group (made by :func:`magbayes.fit.fit` with the cohort).
    """
    import arviz as az
    import xarray as xr

    if "timing" not in result.posterior.children:
        raise NotApplicable("the fit holds no timing contrast (it was made without its cohort)")
    timing = result.posterior["timing"].to_dataset()
    attrs = timing.attrs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = az.plot_forest(
            xr.DataTree.from_dict({"posterior": timing}),
            combined=True,
            ci_kind="hdi",
            ci_probs=(0.5, result.hdi_prob),
            point_estimate="mean",
            figure_kwargs={"figsize": (10, 3.2)},
        )
    fig = pc.viz["figure"].item()
    axes = np.asarray(pc.viz["plot"].values).ravel()
    axes[-1].axvline(0.0, color="#999999", lw=1, ls="--")
    horizon = attrs.get("horizon_years", 10.0)
    fig.suptitle(
        f"{attrs.get('prompt')} minus {attrs.get('delayed')}, at {horizon:g} years since onset",
        fontsize=10,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    score = str(attrs.get("score", "")).upper()
    return (
        f"Difference between prompt rituximab ({attrs.get('prompt')}) and delayed rituximab "
        f"({attrs.get('delayed')}), every other treatment as observed, at {horizon:g} years "
        f"since onset, averaged over the cohort's patients of each early-sural group: in the "
        f"expected {score} (points) and in the probability of being disabled "
        f"({attrs.get('disabled')}). Posterior mean (point), 50% and "
        f"{round(100 * result.hdi_prob)}% HDI (bars); "
        f"{attrs.get('expected_score_prompt_better')} values mean prompt is better. It assumes "
        "that treatment was decided on what was recorded (no unmeasured confounding) and that "
        "each course changes the rate of progression linearly from its start."
    )


#: Colours of the strategies, in order.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def draw_patient(ax: Any, predictions: xr.Dataset, cohort: Any, patient: str) -> None:
    """One patient's predicted scores on ``ax``: one line and band per strategy.

    Each strategy's mean predicted score (line), its 50% (darker) and 94% (lighter)
    predictive bands, its rituximab start (dotted), and the patient's observed visits
    (black points).
    """
    score = str(predictions.attrs.get("score", "incat"))
    sub = predictions.sel(patient=patient)
    years = np.asarray(predictions["time"].values, float)
    for k, strategy in enumerate(predictions["strategy"].values):
        colour = COLOURS[k % len(COLOURS)]
        row = sub.sel(strategy=strategy)
        band = row["band"]
        ax.fill_between(
            years, band.sel(quantile="3%"), band.sel(quantile="97%"), color=colour, alpha=0.10, lw=0
        )
        ax.fill_between(
            years,
            band.sel(quantile="25%"),
            band.sel(quantile="75%"),
            color=colour,
            alpha=0.20,
            lw=0,
        )
        ax.plot(years, row["mean"], color=colour, lw=1.6, label=str(strategy))
        start = float(row["rituximab_start"])
        if np.isfinite(start):
            ax.axvline(start, color=colour, ls=":", lw=1)
    visits = cohort.visits[cohort.visits["patient_id"] == patient]
    if score in visits.columns:
        seen = visits[visits[score].notna()]
        ax.plot(
            seen["years_since_onset"], seen[score], "o", color="#222222", ms=4, label="observed"
        )
    ax.set_xlabel("years since onset")
    ax.set_ylabel(score_axis_label(score))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def patient_kind(predictions: xr.Dataset, patient: str) -> str:
    """``"fitted patient"`` or ``"new patient"``."""
    fitted = bool(predictions["fitted"].sel(patient=patient))
    return "fitted patient" if fitted else "new patient"


def plot_patient(predictions: xr.Dataset, cohort: Any, patient: str, path: str | Path) -> Path:
    """Draw one patient's predictions (:func:`draw_patient`) to ``path``."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    draw_patient(ax, predictions, cohort, patient)
    ax.set_title(
        f"{patient} ({patient_kind(predictions, patient)}): mean, 50% and 94% predictive bands",
        fontsize=10,
    )
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
