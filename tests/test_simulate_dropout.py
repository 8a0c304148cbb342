"""The simulator's end of follow-up: informative death and loss to follow-up.

Off by default (files byte-identical to a simulator without the option); when on, the
cohort validates with the new patients.csv columns, mortality matches the configured
Weibull hazard at ``death_alpha = 0`` and rises with disability when ``death_alpha > 0``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad

import magbayes as mb
from magbayes.cli import main
from magbayes.cohort.read import load_cohort
from magbayes.simulate import dropout, trajectories
from magbayes.simulate.dropout import weibull_cumulative, weibull_scale_years
from magbayes.simulate.stress import (
    STRESS_GRID,
    STRONG_DROPOUT,
    StressSetting,
    simulate_stressed,
    stress_overrides,
)
from magbayes.simulate.write import truth_json

#: SHA-256 of the files of ``simulate_cohort(n_patients=30, seed=3)`` as the simulator
#: wrote them before the end of follow-up existed (for truth.json: its magbayes version
#: replaced by "X" and every float rounded to 9 significant digits, see
#: :func:`rounded_truth`), and of the real-like stress cohort with seed 5 (its three
#: tables, then its truth.json as above).
BEFORE = {
    "patients.csv": "ec1e7699f799d023c66663a6a2a93ba785061ce7e9171e0b60633ae2bde39b8d",
    "visits.csv": "6c1ddd342a66d7c126851c7ef0352ba984b7f9d16fd9e9ca3e96830c3e8d6fba",
    "treatments.csv": "3d5ce387393cd70ee562ede2a862fe919ec6829b2b78a52a184924ae22096dca",
    "truth.json": "9e5796a2e220342498842930830dcd50d1ca207174b19e68308c475a4df54ef2",
}
#: The real-like stress cohort of seed 5: its CSVs as before the option, and its truth.json
#: with the response settings of a stress setting recorded in ``generator.overrides``
#: (their defaults: alpha_rituximab 1.4, patient_sd 0.7, site_sd 0.2, 5% unknown ratings).
BEFORE_REAL_LIKE = "08cc2b3ab6d1a529be150f043d57a83aef9a1dfa3e49a88200e2aacd86d26857"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def rounded_truth(truth: dict) -> str:
    """truth.json's text with every float rounded to 9 significant digits.

    Its floats are written at full precision, and their last digits change with the numpy
    and libm builds (seen between two installs of the same versions' ranges); 9 digits
    keep every change of the random stream or of a formula visible.
    """

    def rounded(value):
        if isinstance(value, float):
            return float(f"{value:.9g}")
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rounded(item) for item in value]
        return value

    return truth_json(rounded(json.loads(truth_json(truth))))


def ends_of(sim) -> pd.DataFrame:
    """The truth's end of follow-up per patient, with infinite times for 'none'."""
    table = pd.DataFrame(sim.truth["end_of_follow_up"]["patients"]).T
    for column in ("death_years", "lost_years"):
        table[column] = table[column].astype(float).fillna(math.inf)
    for column in ("at_risk_from_years", "at_risk_until_years", "latent_at_entry"):
        table[column] = table[column].astype(float)
    return table


def exits(ends: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """When each patient left the risk set, and whether by death (the true times)."""
    leave = np.minimum(
        np.minimum(ends["death_years"], ends["lost_years"]), ends["at_risk_until_years"]
    )
    died = np.isfinite(ends["death_years"]) & (ends["death_years"] <= ends["lost_years"])
    return leave, died


# ---------------------------------------------------------------------------- off
def test_off_is_byte_identical_to_the_simulator_without_the_option():
    sim = mb.simulate_cohort(n_patients=30, seed=3)
    files = sim.files()
    for name in ("patients.csv", "visits.csv", "treatments.csv"):
        assert sha(files[name]) == BEFORE[name], name
    truth = copy.deepcopy(sim.truth)
    truth["generator"]["magbayes_version"] = "X"
    assert sha(rounded_truth(truth)) == BEFORE["truth.json"]
    assert "end_of_follow_up" not in sim.truth
    explicit = mb.simulate_cohort(n_patients=30, seed=3, end_of_follow_up=False)
    assert explicit.files() == files
    real_like = simulate_stressed(STRESS_GRID["real_like"], seed=5)
    real_like_files = real_like.files()
    real_like_truth = json.loads(real_like_files.pop("truth.json"))
    real_like_truth["generator"]["magbayes_version"] = "X"
    text = "".join(real_like_files.values()) + rounded_truth(real_like_truth)
    assert sha(text) == BEFORE_REAL_LIKE


def test_dropout_settings_without_the_option_are_refused_not_ignored():
    with pytest.raises(ValueError, match="only with end_of_follow_up=True"):
        mb.simulate_cohort(n_patients=5, seed=1, death_alpha=0.5)
    with pytest.raises(ValueError, match="only with end_of_follow_up=True"):
        mb.simulate_cohort(n_patients=5, seed=1, dropout={"lost_hazard": 0.1})
    with pytest.raises(ValueError, match="death_hazard"):
        mb.simulate_cohort(n_patients=5, seed=1, end_of_follow_up=True, death_hazard=1.5)


# ---------------------------------------------------------------------------- on
@pytest.fixture(scope="module")
def with_ends():
    return mb.simulate_cohort(
        n_patients=200, seed=8, end_of_follow_up=True, interval_censored_share=0.5
    )


def test_the_simulated_cohort_validates_with_the_new_columns(tmp_path, with_ends):
    sim = with_ends
    assert list(sim.patients.columns[-3:]) == ["end_years", "end_reason", "end_lower_years"]
    sim.write(tmp_path / "cohort")
    cohort = load_cohort(tmp_path / "cohort")
    assert cohort.has_end_of_follow_up
    table = cohort.follow_up
    truth = ends_of(sim)
    np.testing.assert_allclose(table["end_years"], truth["end_years"].astype(float))
    assert table["end_reason"].tolist() == truth["end_reason"].tolist()
    reasons = set(table["end_reason"])
    assert {"death", "lost_to_follow_up", "study_end"} <= reasons
    assert (table["end_years"] >= table["last_visit_years"]).all()
    interval = table["end_lower_years"].notna()
    assert interval.any() and table.loc[interval, "died"].all()
    assert (table.loc[interval, "end_lower_years"] == table.loc[interval, "last_visit_years"]).all()


def test_visits_after_the_end_are_removed_and_the_rest_unchanged(with_ends):
    off = mb.simulate_cohort(n_patients=200, seed=8)
    truth = ends_of(with_ends)
    contact = pd.DataFrame(with_ends.truth["end_of_follow_up"]["patients"]).T
    visits = off.visits
    limit = visits["patient_id"].map(truth["end_years"].astype(float))
    lower = visits["patient_id"].map(contact["end_lower_years"].astype(float))
    # a visit is kept up to the end (up to the lower bound for an interval-censored death)
    keep = visits["years_since_onset"] <= lower.fillna(limit)
    expected = visits[keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(with_ends.visits, expected)
    assert len(with_ends.visits) < len(off.visits)
    last = with_ends.visits.groupby("patient_id")["years_since_onset"].max()
    starts = with_ends.treatments.groupby("patient_id")["start_years"].max()
    assert (starts <= last.reindex(starts.index)).all()


def test_interval_censored_deaths_lie_between_two_contacts(with_ends):
    truth = ends_of(with_ends)
    off = mb.simulate_cohort(n_patients=200, seed=8).visits
    interval = truth[truth["end_lower_years"].notna()]
    assert len(interval) >= 3
    for pid, row in interval.iterrows():
        scheduled = off.loc[off["patient_id"] == pid, "years_since_onset"].to_numpy()
        death = row["death_years"]
        assert row["end_lower_years"] == pytest.approx(scheduled[scheduled < death].max())
        assert row["end_years"] == pytest.approx(scheduled[scheduled >= death].min())
        assert row["end_lower_years"] < death <= row["end_years"] + 1e-3
    exact = truth[(truth["end_reason"] == "death") & truth["end_lower_years"].isna()]
    np.testing.assert_allclose(
        exact["end_years"].astype(float), exact["death_years"].round(3), atol=1e-9
    )


def test_latent_path_is_the_latent_disability_at_the_visits():
    sim = mb.simulate_cohort(n_patients=20, seed=2)
    truth = sim.truth
    ids = list(truth["patients"])
    level = np.array([truth["patients"][p]["level"] for p in ids])
    rate = np.array([truth["patients"][p]["rate"] for p in ids])
    z = np.array([list(truth["patients"][p]["covariates_standardised"].values()) for p in ids])
    effect = trajectories.covariate_effect(z, truth["progression"]["beta_covariate"])
    courses = pd.DataFrame(truth["courses"])
    eta = trajectories.latent_disability(
        sim.visits, ids, level, rate, effect, courses, courses["gamma"].to_numpy()
    )
    for i, pid in enumerate(ids):
        own = sim.visits["patient_id"] == pid
        mine = courses[courses["patient_id"] == pid]
        path = trajectories.latent_path(
            sim.visits.loc[own, "years_since_onset"].to_numpy(),
            level[i],
            rate[i],
            effect[i],
            mine["start_years"].to_numpy(),
            mine["gamma"].to_numpy(),
        )
        np.testing.assert_allclose(path, eta[own.to_numpy()], rtol=1e-12, atol=1e-12)


def test_thinning_draws_follow_the_hazard_exactly():
    shape, scale, alpha, reference = 1.4, weibull_scale_years(0.05, 1.4), 0.8, 7.0
    starts, gamma = np.array([3.0, 6.5]), np.array([-0.6, 0.9])

    def eta(t):
        return trajectories.latent_path(t, 5.0, 0.5, 0.3, starts, gamma)

    hazard = dropout.proportional_hazard(
        lambda t: dropout.weibull_hazard(t, shape, scale), alpha, eta, reference
    )
    rng = np.random.default_rng(0)
    draws = np.array([dropout.draw_event_time(rng, hazard, 1.0, 11.0, starts) for _ in range(6000)])
    for t in (2.5, 5.0, 8.0, 11.0):
        cumulative, _ = quad(lambda u: float(hazard(np.array([u]))[0]), 1.0, t, points=[3.0, 6.5])
        expected = 1.0 - math.exp(-cumulative)
        observed = np.mean(draws <= t)
        assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / len(draws))
    assert np.isinf(draws).any() and np.isfinite(draws).any()


def test_weibull_scale_gives_the_annual_mortality_at_five_years():
    scale = weibull_scale_years(0.02, 1.4)
    increment = weibull_cumulative(6.0, 1.4, scale) - weibull_cumulative(5.0, 1.4, scale)
    assert 1 - math.exp(-increment) == pytest.approx(0.02)
    assert scale == pytest.approx(33.59, abs=0.01)


def test_with_alpha_zero_mortality_matches_the_configured_hazard():
    sim = mb.simulate_cohort(n_patients=2500, seed=21, end_of_follow_up=True, death_alpha=0.0)
    ends = ends_of(sim)
    base = sim.truth["end_of_follow_up"]["death_baseline"]
    shape, scale = base["shape"], base["scale_years"]
    assert base["annual_mortality"] == 0.02
    leave, died = exits(ends)
    # over all follow-up: deaths against the cumulative hazard at risk (Poisson)
    expected = float(
        (
            weibull_cumulative(leave, shape, scale)
            - weibull_cumulative(ends["at_risk_from_years"], shape, scale)
        ).sum()
    )
    observed = int(died.sum())
    assert abs(observed - expected) < 3.5 * math.sqrt(expected), (observed, expected)
    # in the year 5 to 6 after onset, among patients at risk for all of it: binomial 2%
    at_risk = (
        (ends["at_risk_from_years"] <= 5.0)
        & (ends["at_risk_until_years"] >= 6.0)
        & (ends["death_years"] > 5.0)
        & (ends["lost_years"] >= 6.0)
    )
    deaths = int((at_risk & (ends["death_years"] <= 6.0)).sum())
    n = int(at_risk.sum())
    assert n > 800
    p = 0.02
    assert abs(deaths - n * p) < 3.5 * math.sqrt(n * p * (1 - p)), (deaths, n)


def test_with_alpha_above_zero_mortality_rises_with_disability():
    sim = mb.simulate_cohort(n_patients=1500, seed=22, end_of_follow_up=True, death_alpha=0.3)
    ends = ends_of(sim)
    leave, died = exits(ends)
    years = leave - ends["at_risk_from_years"]
    tertile = pd.qcut(ends["latent_at_entry"], 3, labels=False)
    rates = [died[tertile == k].sum() / years[tertile == k].sum() for k in range(3)]
    assert rates[0] < rates[1] < rates[2]
    assert rates[2] > 2.5 * rates[0]
    # the cohort's records agree: deaths by tertile of the latent disability at entry
    recorded = sim.cohort.follow_up["died"]
    assert int(recorded.sum()) == int(died.sum())


def test_cli_options_reach_truth_json(tmp_path, capsys):
    out = tmp_path / "sim"
    args = ["simulate", "--out", str(out), "--patients", "25", "--seed", "6"]
    options = ["--death-alpha", "0.7", "--death-hazard", "0.03", "--lost-hazard", "0.05"]
    options += ["--lost-alpha", "0.1", "--interval-censored-share", "0.4"]
    assert main([*args, *options]) == 2
    assert "need --end-of-follow-up" in capsys.readouterr().err
    assert main([*args, "--end-of-follow-up", *options]) == 0
    assert "end of follow-up: death" in capsys.readouterr().out
    truth = json.loads((out / "truth.json").read_text())
    section = truth["end_of_follow_up"]
    assert section["association"]["death_alpha"] == 0.7
    assert section["association"]["lost_alpha"] == 0.1
    assert section["death_baseline"]["annual_mortality"] == 0.03
    assert section["death_baseline"]["shape"] == 1.4
    assert section["death_baseline"]["scale_years"] == pytest.approx(weibull_scale_years(0.03, 1.4))
    assert section["lost_baseline"]["hazard_per_year"] == 0.05
    assert section["interval_censored_share"] == 0.4
    assert set(section["patients"]) == set(truth["patients"])
    assert truth["generator"]["end_of_follow_up"] is True
    assert "end_reason" in (out / "patients.csv").read_text().splitlines()[0]
    assert load_cohort(out).has_end_of_follow_up
    plain = tmp_path / "plain"
    assert main(["simulate", "--out", str(plain), "--patients", "25", "--seed", "6"]) == 0
    assert "end_of_follow_up" not in json.loads((plain / "truth.json").read_text())


def test_stress_settings_carry_death_alpha():
    assert all(setting.death_alpha is None for setting in STRESS_GRID.values())
    assert "end_of_follow_up" not in stress_overrides(STRESS_GRID["real_like"])
    overrides = stress_overrides(STRONG_DROPOUT)
    assert overrides["end_of_follow_up"] is True
    # per INCAT category: divided by the cutpoint spacing to be per latent logit
    assert overrides["dropout"]["death_alpha"] == pytest.approx(1.5 / 0.9)
    assert overrides["dropout"]["disability_reference"] == pytest.approx(7.5 * 0.9 / 3.0)
    calibrated = stress_overrides(StressSetting(death_alpha=0.6))
    assert calibrated["dropout"]["death_alpha"] == pytest.approx(0.2)
    assert "death_alpha=1.5" in STRONG_DROPOUT.label()
    sim = simulate_stressed(STRONG_DROPOUT, seed=3)
    assert sim.cohort.has_end_of_follow_up
    assert sim.truth["end_of_follow_up"]["association"]["death_alpha"] == pytest.approx(1.5 / 0.9)


def test_a_last_visit_with_mrs_6_is_a_death_at_that_visit():
    # mRS 6 made common by a low last cutpoint (latent logit 12 instead of 32)
    sim = mb.simulate_cohort(
        n_patients=100,
        seed=4,
        end_of_follow_up=True,
        progression={"cutpoints": {"mrs": [1.0, 3.0, 5.0, 7.0, 9.0, 12.0]}},
    )
    ends = ends_of(sim)
    from_scores = ends[ends["death_from"] == "mrs_6"]
    assert len(from_scores) >= 5
    last = sim.visits.groupby("patient_id").tail(1).set_index("patient_id")
    for pid, row in from_scores.iterrows():
        assert row["end_reason"] == "death" and pd.isna(row["end_lower_years"])
        assert row["end_years"] == pytest.approx(last.at[pid, "years_since_onset"])
        # drawn later than the visit (or not at all) by the hazards
        assert min(row["death_years"], row["lost_years"]) >= row["end_years"] - 1e-3
    # the mRS written at that visit, when not hidden, is 6
    shown = last.loc[from_scores.index, "mrs"].dropna()
    assert (shown == 6).all()
