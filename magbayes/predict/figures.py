"""One figure per patient: observed visits and the predicted score under each strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from magbayes.labels import score_axis_label

#: Colours of the strategies, in order.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def plot_patient(predictions: xr.Dataset, cohort: Any, patient: str, path: str | Path) -> Path:
    """Draw one patient's predictions: one line and band per strategy on one panel.

    Each strategy's mean predicted score (line), its 50% (darker) and 94% (lighter)
    predictive bands, its rituximab start (dotted), and the patient's observed visits
    (black points).
    """
    score = str(predictions.attrs.get("score", "incat"))
    sub = predictions.sel(patient=patient)
    years = np.asarray(predictions["time"].values, float)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
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
    kind = "fitted patient" if bool(sub["fitted"]) else "new patient"
    ax.set_title(f"{patient} ({kind}): mean, 50% and 94% predictive bands", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
