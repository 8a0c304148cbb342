"""Stress cohorts (simulate/stress.py, simulate/indication.py) and the refit they call for."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import magbayes as mb
from magbayes.fit import prepare, resolve_spec
from magbayes.models import progression
from magbayes.simulate.stress import StressSetting, simulate_stressed, stress_overrides

#: The cohorts on which the default fit failed its gate before the refit existed (levels
#: spread about 1 logit, cutpoints 0.9 apart, no covariate effects, statuses known).
REAL_LIKE = StressSetting(
    level_sd=1.0,
    rate_sd=0.1,
    cutpoint_spacing=0.9,
    covariate_effects=False,
    unknown_sural_share=0.0,
    site_level_sd=0.2,
)


def test_default_simulation_is_unchanged_by_the_indication_option():
    planned = mb.simulate_cohort(n_patients=30, seed=11, worsening_from="scores")
    explicit = mb.simulate_cohort(
        n_patients=30,
        seed=11,
        worsening_from="scores",
        treatments={"rituximab_trigger_incat_rise": 0.0},
    )
    assert planned.files()["visits.csv"] == explicit.files()["visits.csv"]
    assert planned.files()["treatments.csv"] == explicit.files()["treatments.csv"]


def test_rituximab_on_worsening_starts_after_the_observed_rise_and_keeps_earlier_scores():
    rise, lag = 2.0, 0.25
    planned = mb.simulate_cohort(n_patients=120, seed=4, worsening_from="scores")
    sim = mb.simulate_cohort(
        n_patients=120,
        seed=4,
        worsening_from="scores",
        treatments={"rituximab_trigger_incat_rise": rise, "rituximab_trigger_lag_years": lag},
    )
    assert sim.truth["generator"]["overrides"]["treatments"]["rituximab_trigger_incat_rise"] == 2
    courses = sim.treatments
    rituximab = courses[courses["treatment"] == "rituximab"]
    assert 10 < len(rituximab) < 120
    visits = sim.visits
    for _, course in rituximab.iterrows():
        own = visits[visits["patient_id"] == course["patient_id"]]
        rise_seen = own["incat"] - own["incat"].iloc[0] >= rise
        first_risen = own.loc[rise_seen, "years_since_onset"].min()
        # started `lag` after the first visit that showed the rise, and only then
        assert course["start_years"] == pytest.approx(first_risen + lag, abs=1e-3)
        # its line counts the courses started before it
        earlier = courses[
            (courses["patient_id"] == course["patient_id"])
            & (courses["start_years"] < course["start_years"])
        ]
        assert course["line"] == len(earlier) + 1
    # patients never treated with rituximab never showed the rise
    treated = set(rituximab["patient_id"])
    for pid, own in visits.groupby("patient_id"):
        if pid not in treated:
            last_start_possible = own["years_since_onset"].max() - lag
            before = own[own["years_since_onset"] <= last_start_possible]
            assert not (before["incat"] - own["incat"].iloc[0] >= rise).any()
    # the same random numbers: the visits of a patient without any rituximab in either
    # cohort, and with the same other courses, have the same scores
    same = set(planned.visits["patient_id"]) - treated
    same -= set(
        planned.treatments.loc[planned.treatments["treatment"] == "rituximab", "patient_id"]
    )
    pid = sorted(same)[0]
    np.testing.assert_array_equal(
        planned.visits.loc[planned.visits["patient_id"] == pid, "incat"].to_numpy(),
        visits.loc[visits["patient_id"] == pid, "incat"].to_numpy(),
    )


def test_rituximab_on_worsening_needs_scores_as_the_worsening_truth():
    with pytest.raises(ValueError, match="worsening_from='scores'"):
        mb.simulate_cohort(n_patients=10, seed=1, treatments={"rituximab_trigger_incat_rise": 2})


def test_stress_setting_scales_the_latent_scale_with_the_cutpoints():
    setting = dataclasses.replace(REAL_LIKE, interaction=-0.35)
    overrides = stress_overrides(setting)
    prog = overrides["progression"]
    f = 0.9 / 3.0
    assert prog["cutpoints"]["incat"][1] - prog["cutpoints"]["incat"][0] == pytest.approx(3 * f)
    assert prog["patient_sd"] == [1.0, 0.1]
    assert overrides["sural_rituximab_effect"] == pytest.approx(-0.35 * f)
    assert set(prog["beta_covariate"].values()) == {0.0}
    sim = simulate_stressed(setting, seed=3)
    assert sim.truth["progression"]["gamma_rituximab_x_sural"] == pytest.approx(-0.35 * f)
    assert sim.truth["generator"]["overrides"]["progression"]["patient_sd"] == [1.0, 0.1]
    # every early-sural status known, as the setting asks
    assert sim.patients["sural_snap_uv"].notna().all()


@pytest.fixture(scope="module")
def real_like_design():
    sim = simulate_stressed(REAL_LIKE, seed=1)
    spec = resolve_spec("progression")
    _, design, _ = prepare(sim.cohort, spec)
    return sim, spec, design


def test_refit_spec_goes_non_centred_only_after_divergences_and_only_from_auto(real_like_design):
    _, spec, design = real_like_design
    assert progression.refit_spec(spec, design, {"divergences": 0}) is None
    refit, why = progression.refit_spec(spec, design, {"divergences": 12})
    assert refit.section("patients")["parametrisation"] == "non_centred"
    assert refit.section("sampler")["target_accept"] == progression.REFIT_TARGET_ACCEPT
    assert "12 divergent" in why
    chosen = resolve_spec("progression", {"patients": {"parametrisation": "centred"}})
    assert progression.refit_spec(chosen, design, {"divergences": 12}) is None
    careful = resolve_spec("progression", {"sampler": {"target_accept": 0.95}})
    refit, _ = progression.refit_spec(careful, design, {"divergences": 3})
    assert refit.section("sampler")["target_accept"] == 0.95


@pytest.mark.slow
def test_a_diverging_default_fit_is_refitted_non_centred_and_says_so(real_like_design, tmp_path):
    """On a cohort whose levels spread by 1 logit the default fit (centred levels) diverges;
    the refit in non-centred coordinates has far fewer divergences, covers the truth, and
    the results folder, the diagnostics and the report say what happened."""
    sim, _, _ = real_like_design
    result = mb.fit(
        sim.cohort, "progression", draws=400, tune=400, chains=2, seed=1, prior_predictive=False
    )
    first = result.refitted_from
    assert first is not None and first["divergences"] > 5
    assert first["spec"]["patients.parametrisation"] == ["auto", "non_centred"]
    diagnostics = result.diagnostics()
    assert diagnostics["divergences"] <= 2 < first["divergences"]
    assert diagnostics["refitted_from"] == first
    post = result.posterior["posterior"]
    truth = sim.truth["progression"]
    for name in ("gamma_rituximab", "slope"):
        low, high = post[name].quantile([0.03, 0.97]).values
        assert low <= truth[name] <= high, name
    folder = result.save(tmp_path / "res")
    again = mb.load_fit(folder)
    assert again.refitted_from["divergences"] == first["divergences"]
    report = (folder / "report.md").read_text()
    assert "These results come from a second fit" in report
