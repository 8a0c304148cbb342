"""The progression model's own figure: prompt against delayed rituximab, by early-sural group."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

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
