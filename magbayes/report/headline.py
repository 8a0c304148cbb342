"""The headline: posterior probability that early sural reduction predicts rituximab benefit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
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
        **({"timing": timing_summary(result)} if "timing" in result.posterior.children else {}),
    }


def timing_summary(result: FitResult) -> dict[str, Any]:
    """The ``timing`` section of ``headline.json``: prompt against delayed rituximab.

    For each early-sural group and each measure (expected score, P(disabled) at the
    horizon): the posterior mean of prompt minus delayed, its HDI and MCSE, and the
    probability that prompt is better, with its MCSE; and a sentence a paper can quote.
    """
    timing = result.posterior["timing"].to_dataset()
    attrs = dict(timing.attrs)
    better = {
        "expected_score": -1 if attrs.get("expected_score_prompt_better") == "negative" else 1,
        "p_disabled": -1,
    }
    out: dict[str, Any] = {
        "prompt": {"strategy": attrs.get("prompt"), "start_years": attrs.get("prompt_start_years")},
        "delayed": {
            "strategy": attrs.get("delayed"),
            "start_years": attrs.get("delayed_start_years"),
        },
        "horizon_years": attrs.get("horizon_years"),
        "disabled": attrs.get("disabled"),
        "patients": attrs.get("patients"),
        "assumptions": (
            "treatment was decided on what was recorded (no unmeasured confounding); each "
            "course changes the rate of progression linearly from its start; every other "
            "treatment as observed"
        ),
    }
    for group in ("sural_reduced", "sural_preserved"):
        entry: dict[str, Any] = {}
        for measure, sign in better.items():
            draws = timing[measure].sel(group=group)
            finite = bool(np.isfinite(draws.values).all())
            if not finite:
                entry[measure] = None
                continue
            hdi = az.hdi(draws, prob=result.hdi_prob)
            mcse = az.mcse(draws.to_dataset(name="d"), method="mean")["d"]
            p, p_mcse = probability_with_mcse(sign * draws > 0)
            entry[measure] = {
                "mean": float(draws.mean()),
                "hdi_low": float(hdi.sel(ci_bound="lower")),
                "hdi_high": float(hdi.sel(ci_bound="upper")),
                "hdi_prob": result.hdi_prob,
                "mcse": float(mcse),
                "p_prompt_better": p,
                "mcse_p_prompt_better": p_mcse,
            }
        out[group] = entry
    out["sentence"] = timing_sentence(out)
    return out


def timing_sentence(timing: dict[str, Any]) -> str:
    """The timing answer in one quotable sentence."""
    parts = []
    for group, words in (("sural_reduced", "with"), ("sural_preserved", "without")):
        e = timing[group].get("expected_score") if timing.get(group) else None
        if e is None:
            continue
        parts.append(
            f"{words} early sural reduction, the expected score at "
            f"{timing['horizon_years']:g} years differed by {e['mean']:+.2f} points "
            f"({round(100 * e['hdi_prob'])}% HDI {e['hdi_low']:+.2f} to {e['hdi_high']:+.2f}; "
            f"P(prompt better) = {e['p_prompt_better']:.2f})"
        )
    return (
        f"Prompt ({timing['prompt']['strategy']}) against delayed rituximab "
        f"({timing['delayed']['strategy']}), every other treatment as observed: "
        + "; ".join(parts)
        + f". This assumes {timing['assumptions']}."
    )
