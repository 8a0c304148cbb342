"""The headline: posterior probability that early sural reduction predicts rituximab benefit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import arviz as az
import xarray as xr

from magbayes.models import get_model

if TYPE_CHECKING:
    from magbayes.fit import FitResult


def probability_with_mcse(event: xr.DataArray) -> tuple[float, float]:
    """Posterior probability of an event and its Monte Carlo standard error.

    Parameters
    ----------
    event : xarray.DataArray
        Boolean draws with ``chain`` and ``draw`` dimensions.

    Returns
    -------
    probability, mcse : float
        The mean of the indicator and ArviZ's MCSE of that mean (which accounts for
        autocorrelation through the effective sample size).
    """
    indicator = event.astype(float)
    probability = float(indicator.mean())
    if probability in (0.0, 1.0):
        # every draw agrees: the MCSE of a constant indicator is 0 by definition
        return probability, 0.0
    mcse = az.mcse(indicator.to_dataset(name="event"), method="mean")["event"]
    return probability, float(mcse)


def headline_for(result: FitResult) -> dict[str, Any]:
    """``headline.json`` for a fitted model (keys of CONTRACT.md section 4).

    The probability is that of the contrast having the sign that means "more benefit in
    sural-reduced patients" (negative for progression and worsening, positive for
    response).
    """
    spec_headline = get_model(result.model).headline
    posterior = result.posterior["posterior"].to_dataset()
    sign = spec_headline.benefit_sign
    contrast = posterior[spec_headline.contrast_var]
    p, mcse = probability_with_mcse(sign * contrast > 0)
    hdi = az.hdi(contrast, prob=result.hdi_prob)
    groups = spec_headline.group_benefit(posterior)
    p_reduced, mcse_reduced = probability_with_mcse(sign * groups["sural_reduced"] > 0)
    p_preserved, mcse_preserved = probability_with_mcse(sign * groups["sural_preserved"] > 0)
    score = result.spec.section("outcome").get("score", "")
    cohort = result.cohort_summary
    return {
        "question": spec_headline.question,
        "p_sural_predicts_rituximab_benefit": p,
        "mcse": mcse,
        "contrast": {
            "variable": spec_headline.contrast_var,
            "mean": float(contrast.mean()),
            "hdi_low": float(hdi.sel(ci_bound="lower")),
            "hdi_high": float(hdi.sel(ci_bound="upper")),
            "hdi_prob": result.hdi_prob,
            "scale": spec_headline.scale.format(score=score.upper() or "score"),
            "benefit_direction": "negative" if sign < 0 else "positive",
        },
        "p_rituximab_benefit_sural_reduced": p_reduced,
        "mcse_rituximab_benefit_sural_reduced": mcse_reduced,
        "p_rituximab_benefit_sural_preserved": p_preserved,
        "mcse_rituximab_benefit_sural_preserved": mcse_preserved,
        "early_sural_definition": {
            "threshold_uv": result.spec.section("early_sural").get("threshold_uv"),
            "window_years": result.spec.section("early_sural").get("window_years"),
        },
        "n_patients": cohort.get("n_patients"),
        "n_sites": cohort.get("n_sites"),
        "n_visits": cohort.get("n_visits"),
        "model": result.model,
    }
