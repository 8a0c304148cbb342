"""The joint model's figure of one patient's predictions (``magbayes predict``).

Two panels: the predicted scores under each strategy (the progression model's drawing,
:func:`magbayes.models.progression.figures.draw_patient`), and the probability of being
free of the event given event-free at the time of prediction, with its HDI band.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from magbayes.models.progression.figures import COLOURS, draw_patient, patient_kind


def draw_event_free(ax: Any, predictions: xr.Dataset, patient: str) -> None:
    """One patient's event-free probability on ``ax``: one line and HDI band per strategy.

    The time of prediction (dashed) and, where the cohort records the patient's event, its
    time (a black cross).
    """
    sub = predictions.sel(patient=patient)
    years = np.asarray(predictions["time"].values, float)
    start = float(sub["event_free_from"])
    later = years > start
    # every curve starts at 1 at the time of prediction
    x = np.concatenate([[start], years[later]])
    for k, strategy in enumerate(predictions["strategy"].values):
        colour = COLOURS[k % len(COLOURS)]
        row = sub.sel(strategy=strategy)

        def from_start(name: str, row: xr.Dataset = row) -> np.ndarray:
            return np.concatenate([[1.0], row[name].values[later]])

        ax.fill_between(
            x,
            from_start("event_free_hdi_low"),
            from_start("event_free_hdi_high"),
            color=colour,
            alpha=0.15,
            lw=0,
        )
        ax.plot(x, from_start("event_free"), color=colour, lw=1.6, label=str(strategy))
    ax.axvline(start, color="#555555", ls="--", lw=1, label="time of prediction")
    seen = float(sub["event_seen_at"])
    if np.isfinite(seen):
        ax.plot(
            [seen],
            [0.0],
            "x",
            color="black",
            ms=7,
            label=f"{predictions.attrs.get('event')} recorded",
        )
    ax.set_xlim(years.min(), years.max())
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("years since onset")
    ax.set_ylabel(f"P(no {predictions.attrs.get('event', 'event')})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")


def plot_patient(predictions: xr.Dataset, cohort: Any, patient: str, path: str | Path) -> Path:
    """Draw one patient's predictions: scores (left) and event-free probability (right)."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    draw_patient(left, predictions, cohort, patient)
    left.set_title("mean, 50% and 94% predictive bands", fontsize=10)
    draw_event_free(right, predictions, patient)
    hdi = round(100 * float(predictions.attrs.get("hdi_prob", 0.94)))
    right.set_title(f"given none by the time of prediction: mean and {hdi}% HDI", fontsize=10)
    fig.suptitle(f"{patient} ({patient_kind(predictions, patient)})", fontsize=11)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
