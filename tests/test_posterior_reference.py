"""The three default models' posteriors are those stored in ``data/posterior_reference.json``.

Each default model's shared fit (conftest.py: a small simulated cohort, fixed seed) is
summarised as ``data/make_posterior_reference.py`` summarised it when the reference was
written: for every element of the population-level parameters, the posterior mean and sd,
and the headline probability. Each must lie within four Monte Carlo standard errors of the
stored value (the MCSE of this fit and of the reference's, combined), plus a floor for
elements fixed at one value. A change of a prior, a likelihood or a parametrisation that
changes the posterior moves some of them by more; a refactor that leaves the model as it was
does not (with the same compiled model the draws are even the same).

Write the reference again (``.venv/bin/python tests/data/make_posterior_reference.py``) only
for a change that is meant to change the posteriors, and say so in its commit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from shared_fits import HEADLINE, posterior_summary

from magbayes import FitResult

REFERENCE = json.loads((Path(__file__).parent / "data" / "posterior_reference.json").read_text())
#: Monte Carlo standard errors allowed between this fit and the reference.
N_MCSE = 4.0
#: Added to every tolerance: elements fixed at one value have no MCSE.
FLOOR = 1e-6


def _within(now: float, mcse_now: float | None, ref: float, mcse_ref: float | None) -> bool:
    combined = math.hypot(_mcse(mcse_now), _mcse(mcse_ref))
    return abs(now - ref) <= N_MCSE * combined + FLOOR


def _mcse(value: float | None) -> float:
    """An MCSE; 0 for an element fixed at one value (no MCSE)."""
    return 0.0 if value is None or math.isnan(value) else float(value)


def differences(result: FitResult, model: str) -> list[str]:
    """Every summary of ``result`` further from the reference of ``model`` than allowed."""
    reference = REFERENCE["models"][model]
    table = posterior_summary(result.posterior, reference["variables"])
    stored = reference["parameters"]
    assert sorted(table.index) == sorted(stored), "the population parameters changed"
    found = []
    for label, ref in stored.items():
        now = table.loc[label]
        for stat in ("mean", "sd"):
            mcse = f"mcse_{stat}"
            if not _within(now[stat], now[mcse], ref[stat], ref[mcse]):
                found.append(
                    f"{label} {stat}: {now[stat]:.4f} (MCSE {now[mcse]:.4f}), reference "
                    f"{ref[stat]:.4f} (MCSE {ref[mcse]:.4f})"
                )
    headline, ref = result.headline(), reference["headline"]
    if not _within(headline[HEADLINE], headline["mcse"], ref["probability"], ref["mcse"]):
        found.append(
            f"{HEADLINE}: {headline[HEADLINE]:.4f} (MCSE {headline['mcse']:.4f}), reference "
            f"{ref['probability']:.4f} (MCSE {ref['mcse']:.4f})"
        )
    return found


def _settings(result: FitResult) -> dict:
    """The sampler settings the fit was asked for: those of its first fit.

    A fit that missed the gate narrowly is run again with more draws (``earlier_fits``
    records each change as ``{"sampler.draws": [before, after]}``); its posterior is the
    same one, with a smaller MCSE, so it is compared with the reference all the same.
    """
    sampler = result.spec.section("sampler")
    settings = {key: int(sampler[key]) for key in ("draws", "tune", "chains", "seed")}
    first: dict[str, int] = {}
    for earlier in result.earlier_fits:
        for key, (before, _) in earlier["spec"].items():
            table, _, name = key.partition(".")
            if table == "sampler" and name in settings:
                first.setdefault(name, int(before))
    return settings | first


@pytest.mark.slow
def test_progression_posterior_is_the_reference(progression_fit):
    result, _ = progression_fit
    assert _settings(result) == REFERENCE["models"]["progression"]["sampler"]
    assert differences(result, "progression") == []


@pytest.mark.slow
def test_worsening_posterior_is_the_reference(worsening_fit):
    assert _settings(worsening_fit) == REFERENCE["models"]["worsening"]["sampler"]
    assert differences(worsening_fit, "worsening") == []


@pytest.mark.slow
def test_response_posterior_is_the_reference(response_fit):
    assert _settings(response_fit) == REFERENCE["models"]["response"]["sampler"]
    assert differences(response_fit, "response") == []
