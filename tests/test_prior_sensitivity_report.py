"""The response report shows the headline under the spec's alternative priors.

Both tests read the session's shared fits (conftest.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

import magbayes as mb
from magbayes.analyses.prior_sensitivity import prior_sensitivity_writer, write_prior_sensitivity


@pytest.mark.slow
def test_prior_sensitivity_table_is_saved_and_reported(response_sim, response_fit, tmp_path):
    sim, result = response_sim, response_fit
    plain = result.save(tmp_path / "plain")
    assert "Prior sensitivity" not in (plain / "report.md").read_text()

    seen_priors = []

    def recording_fit(cohort, spec, **kwargs):
        seen_priors.append(spec.section("priors")["interaction_sd"])
        return mb.fit(cohort, spec, **kwargs)

    # written with the folder, before its report: the folder is written once
    writer = prior_sensitivity_writer(sim.cohort, fitter=recording_fit)
    folder = result.save(tmp_path / "res", extra=[writer])
    table = writer.table
    default = result.spec.section("priors")["interaction_sd"]
    alternatives = result.spec.section("priors")["sensitivity"]["interaction_sd"]
    # the default refitted with the same settings, then one refit per alternative
    assert seen_priors == [default, *alternatives]
    saved = pd.read_csv(folder / "prior_sensitivity.csv")
    assert sorted(saved["value"]) == sorted([default, *alternatives])
    # same seed and settings: the refitted default reproduces the fit's headline
    refitted = saved.loc[saved["value"] == default, "p_sural_predicts_rituximab_benefit"]
    assert float(refitted.iloc[0]) == pytest.approx(
        result.headline()["p_sural_predicts_rituximab_benefit"], abs=1e-12
    )
    assert len(table) == len(saved)
    report = (folder / "report.md").read_text()
    assert "Prior sensitivity" in report
    for value in alternatives:
        assert f"`interaction_sd` = {value:g}" in report


@pytest.mark.slow
def test_no_alternatives_no_refit(progression_cohort, progression_fit, tmp_path):
    result, _ = progression_fit

    def must_not_fit(*args, **kwargs):
        raise AssertionError("the progression spec has no [priors.sensitivity]")

    assert (
        write_prior_sensitivity(result, progression_cohort, tmp_path, fitter=must_not_fit) is None
    )
    assert not (tmp_path / "prior_sensitivity.csv").exists()
