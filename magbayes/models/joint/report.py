"""The joint model's own section of the report: the association and the events' check.

The association is a log hazard ratio per latent logit of current disability, a scale few
readers know; the section gives it as a hazard ratio, per latent logit and per one
between-patient standard deviation of the level (how far apart two patients of the cohort
typically are), with the posterior probability that more disability means a higher hazard
and its Monte Carlo error, then the events observed against those the model expects.
"""

from __future__ import annotations

from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from magbayes.labels import score_name
from magbayes.models.base import ReportSection

#: What a ratio above 1 means, by ``[event] kind``.
_SOONER = {"death": "die", "death_or_dropout": "die or are lost to follow-up"}


def _row(what: str, log_ratio: xr.DataArray, prob: float) -> dict[str, str]:
    """One row: the hazard ratio's mean and HDI, and P(log ratio > 0) with its MCSE."""
    from magbayes.report.headline import probability_with_mcse

    ratio = np.exp(log_ratio)
    hdi = az.hdi(ratio, prob=prob)
    p, mcse = probability_with_mcse(log_ratio > 0)
    return {
        "hazard ratio": what,
        "mean": f"{float(ratio.mean()):.2f}",
        f"{round(100 * prob)}% HDI": (
            f"{float(hdi.sel(ci_bound='lower')):.2f} to {float(hdi.sel(ci_bound='upper')):.2f}"
        ),
        "P(> 1)": f"{p:.3f}",
        "MCSE of P": f"{mcse:.3f}",
    }


def report_sections(result: Any) -> list[ReportSection]:
    """The association of the event with the trajectory, and the event part's check."""
    post = result.posterior["posterior"]
    event = str(result.spec.section("event")["kind"]).replace("_", " ")
    score = score_name(result.spec)
    prob = result.hdi_prob
    association = post["association"]
    rows = [_row(f"per latent {score} logit of current disability", association, prob)]
    spread = None
    if "patient_sd" in post:
        spread = post["patient_sd"].sel(patient_effect="level")
        rows.append(
            _row(
                "per between-patient sd of the level (a patient typically that much more "
                "disabled than another)",
                association * spread,
                prob,
            )
        )
    if "association_slope" in post:
        rows.append(
            _row(
                f"per latent {score} logit per year of current change in disability",
                post["association_slope"],
                prob,
            )
        )
    paragraphs = [
        f"The hazard of {event} rises with the patient's current latent disability: the "
        "association, as a hazard ratio (the exponential of its draws). A ratio above 1 "
        f"means that the more disabled {_SOONER[result.spec.section('event')['kind']]} "
        "sooner, which is the informative dropout the joint model corrects the trajectory "
        "for; with a ratio near 1 the trajectory is the progression model's."
    ]
    if "posterior_predictive" in result.posterior.children and "observed_data" in (
        result.posterior.children
    ):
        observed = int((result.posterior["observed_data"]["end_of_follow_up"].values > 0).sum())
        expected = result.posterior["posterior_predictive"]["end_of_follow_up"].sum("patient")
        hdi = az.hdi(expected, prob=prob)
        paragraphs.append(
            f"Check of the event part: {observed} {event} events observed, "
            f"{float(expected.mean()):.1f} expected over the observed time at risk "
            f"({round(100 * prob)}% predictive interval "
            f"{float(hdi.sel(ci_bound='lower')):.0f} to {float(hdi.sel(ci_bound='upper')):.0f}; "
            "figure *Events observed and predicted*). The score's checks are the "
            "progression model's, in *Figures*."
        )
    return [
        ReportSection(
            f"Association of {event} with disability",
            tuple(paragraphs),
            pd.DataFrame(rows),
            f"Hazard ratios of {event}: posterior mean, {round(100 * prob)}% HDI, and the "
            "posterior probability that the ratio exceeds 1 with its Monte Carlo standard "
            "error.",
        )
    ]
