"""Stress cohorts (simulate/stress.py, simulate/indication.py) and the refit they call for."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

import magbayes as mb
from magbayes.fit import _next_fit, prepare, resolve_spec
from magbayes.models import progression
from magbayes.simulate.stress import (
    REAL_LIKE,
    RESPONSE_GRID,
    STRESS_GRID,
    simulate_stressed,
    stress_overrides,
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


def test_response_settings_set_the_ratings_and_leave_the_scores_alone():
    """The response grid changes the ratings' truth, not the visits; its default is the
    simulator's."""
    calibrated = simulate_stressed(RESPONSE_GRID["calibrated"], seed=4)
    plain = mb.simulate_cohort(seed=4).truth["response"]
    for name in ("alpha_rituximab", "patient_sd", "site_sd", "unknown_fraction"):
        assert calibrated.truth["response"][name] == plain[name]
    strong = simulate_stressed(RESPONSE_GRID["rituximab_strong"], seed=4)
    assert strong.truth["response"]["alpha_rituximab"] == 2.5
    assert strong.truth["response"]["alpha_rituximab_x_sural"] == 0.0
    assert strong.files()["visits.csv"] == calibrated.files()["visits.csv"]
    rituximab = strong.treatments["treatment"] == "rituximab"
    good = strong.treatments["response"] == "good"
    assert good[rituximab].mean() > (calibrated.treatments["response"] == "good")[rituximab].mean()
    hidden = simulate_stressed(RESPONSE_GRID["unknown_ratings"], seed=4)
    assert 0.2 < (hidden.treatments["response"] == "unknown").mean() < 0.4
    wide = simulate_stressed(RESPONSE_GRID["wide_patients"], seed=4).truth["response"]
    assert (wide["patient_sd"], wide["site_sd"]) == (2.0, 0.8)


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
    # the sites keep their (partly centred) coordinates: non-centred, two-site cohorts of
    # 150 patients diverged more often in the sites' spreads
    assert refit.section("sites") == spec.section("sites")
    assert refit.section("sampler")["target_accept"] == progression.REFIT_TARGET_ACCEPT
    assert "12 divergent" in why
    chosen = resolve_spec("progression", {"patients": {"parametrisation": "centred"}})
    assert progression.refit_spec(chosen, design, {"divergences": 12}) is None
    careful = resolve_spec("progression", {"sampler": {"target_accept": 0.95}})
    refit, _ = progression.refit_spec(careful, design, {"divergences": 3})
    assert refit.section("sampler")["target_accept"] == 0.95


#: Corners of the stress grid where the default fit once diverged: every fit with centred
#: levels (real_like, tight_levels, sparse_visits), and five of nine after the refit with
#: non-centred patients (dense_visits, visits every 0.4 years).
DIVERGING_CORNERS = ("real_like", "tight_levels", "sparse_visits", "dense_visits")


@pytest.mark.slow
@pytest.mark.parametrize("corner", DIVERGING_CORNERS)
def test_a_diverging_default_fit_is_refitted_non_centred_and_says_so(corner, tmp_path):
    """On cohorts whose levels spread by 1 logit or less, or whose visits pin each patient
    down, the default fit (partly centred patients and sites) has at most 2 divergences at
    these small draws, after a refit in non-centred coordinates where the first fit
    diverged; it covers the truth, and the results folder, the diagnostics and the report
    say what happened."""
    sim = simulate_stressed(STRESS_GRID[corner], seed=1)
    result = mb.fit(
        sim.cohort, "progression", draws=400, tune=400, chains=2, seed=1, prior_predictive=False
    )
    diagnostics = result.diagnostics()
    assert diagnostics["divergences"] <= 2
    if result.earlier_fits:
        first = result.earlier_fits[0]
        if first["divergences"]:
            assert first["spec"]["patients.parametrisation"] == ["auto", "non_centred"]
        else:  # too few effective draws of 2 x 400, without divergences: twice the draws
            assert first["spec"]["sampler.draws"] == [400, 800]
        assert diagnostics["earlier_fits"][0] == first
    else:
        # the first fit did not diverge (on some machines' floating point, e.g.
        # sparse_visits at seed 1): then it must have passed as it was, and say so
        assert diagnostics["divergences"] == 0 and not diagnostics["earlier_fits"]
    post = result.posterior["posterior"]
    truth = sim.truth["progression"]
    # 99% intervals: six checks over the three corners, so that a calibrated model fails
    # one by chance in about 6% of seeds, not 31% (coverage at 90% is bench_robustness.py's)
    for name in ("gamma_rituximab", "slope"):
        low, high = post[name].quantile([0.005, 0.995]).values
        assert low <= truth[name] <= high, name
    folder = result.save(tmp_path / "res")
    again = mb.load_fit(folder)
    assert again.earlier_fits == result.earlier_fits
    report = (folder / "report.md").read_text()
    n_fits = len(result.earlier_fits) + 1
    if result.earlier_fits:
        assert f"These results come from fit {n_fits} of {n_fits}" in report


def _failed(spec, divergences=0, r_hat_max=1.004, ess_bulk_min=900, earlier=()):
    reasons = []
    if r_hat_max > 1.01:
        reasons.append(f"R-hat {r_hat_max:.3f} > 1.01 (patient_sd)")
    if ess_bulk_min < 400:
        reasons.append(f"bulk ESS {ess_bulk_min:.0f} < 400 (cutpoints)")
    if divergences:
        reasons.append(f"{divergences} divergent transition(s)")
    diagnostics = {
        "passed": not reasons,
        "reasons": reasons,
        "divergences": divergences,
        "r_hat_max": r_hat_max,
        "ess_bulk_min": ess_bulk_min,
        "sampling_seconds": 0.0,
        "wall_seconds": 0.0,
    }
    return SimpleNamespace(spec=spec, earlier_fits=list(earlier), diagnostics=lambda: diagnostics)


def test_the_next_fit_follows_what_the_failed_fit_showed(real_like_design):
    """Divergences: other coordinates, once; a narrow R-hat or ESS miss without
    divergences: twice the draws, once; anything else is reported as it is."""
    _, spec, design = real_like_design
    assert _next_fit(_failed(spec), design) is None  # passed
    coordinates, _ = _next_fit(_failed(spec, divergences=40), design)
    assert coordinates.section("patients")["parametrisation"] == "non_centred"
    longer, why = _next_fit(_failed(spec, r_hat_max=1.0103), design)
    assert longer.section("sampler")["draws"] == 2 * spec.section("sampler")["draws"]
    assert longer.section("sampler")["tune"] == 2 * spec.section("sampler")["tune"]
    assert "R-hat 1.010" in why
    # a real convergence failure, too few effective draws, divergences after the refit
    assert _next_fit(_failed(spec, r_hat_max=1.05), design) is None
    assert _next_fit(_failed(spec, ess_bulk_min=150), design) is None
    # half the effective draws wanted, or more: twice the draws
    longer, why = _next_fit(_failed(spec, ess_bulk_min=250), design)
    assert longer.section("sampler")["draws"] == 2 * spec.section("sampler")["draws"]
    assert "bulk ESS 250" in why
    after_refit = [{"why": "the first fit (patients sampled centred) had 40 divergent ..."}]
    assert _next_fit(_failed(coordinates, divergences=2, earlier=after_refit), design) is None
    # after the refit in other coordinates, a narrow R-hat miss still gets the longer fit
    again, _ = _next_fit(_failed(coordinates, r_hat_max=1.012, earlier=after_refit), design)
    assert again.section("sampler")["draws"] == 2 * spec.section("sampler")["draws"]
    # and only once
    both = [*after_refit, {"why": why}]
    assert _next_fit(_failed(again, r_hat_max=1.012, earlier=both), design) is None
    # a longer fit that diverges still gets the refit in other coordinates, then nothing more
    after_longer = [{"why": why}]
    refit, _ = _next_fit(_failed(longer, divergences=3, earlier=after_longer), design)
    assert refit.section("patients")["parametrisation"] == "non_centred"
    assert refit.section("sampler")["draws"] == 2 * spec.section("sampler")["draws"]
    both = [*after_longer, {"why": "the first fit (patients sampled partly centred) had 3 ..."}]
    assert _next_fit(_failed(refit, divergences=1, earlier=both), design) is None
    assert _next_fit(_failed(refit, r_hat_max=1.012, earlier=both), design) is None


def test_a_fit_is_refitted_at_most_once_each_way(real_like_design, monkeypatch):
    """mb.fit hands each fit what was tried before it: a first fit that keeps missing R-hat
    narrowly and then diverges is fitted three times, never more."""
    import importlib

    fitting = importlib.import_module("magbayes.fit")  # the module, not magbayes.fit()

    sim, _, _ = real_like_design
    outcomes = iter([{"r_hat_max": 1.012}, {"divergences": 2}, {"r_hat_max": 1.012}, {}])
    calls = []

    def fake_fit_once(cohort, spec, sampler, progress, prior_predictive, command):
        calls.append(spec)
        failed = _failed(spec, **next(outcomes))
        failed.timing = {}
        return failed, None

    monkeypatch.setattr(fitting, "_fit_once", fake_fit_once)
    monkeypatch.setattr(fitting, "add_timing", lambda result, cohort: None)
    result = fitting.fit(sim.cohort, "progression")
    assert len(calls) == 3
    assert [len(fit["why"]) > 0 for fit in result.earlier_fits] == [True, True]
    assert calls[2].section("patients")["parametrisation"] == "non_centred"
