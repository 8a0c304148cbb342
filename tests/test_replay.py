"""Tests of replaying a simulated patient under another treatment history (no fits)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from magbayes.predict.strategies import DEFAULT_STRATEGIES, apply_to_cohort
from magbayes.simulate import simulate_cohort
from magbayes.simulate.replay import (
    score_categories,
    true_contrast,
    true_score_distribution,
)
from magbayes.simulate.simulator import STREAMS
from magbayes.simulate.trajectories import draw_scores, irods_beta_shapes

SEED = 3


@pytest.fixture(scope="module", params=["hazard", "scores"])
def sim(request):
    """The 30-patient cohort of seed 3 in each worsening mode."""
    return simulate_cohort(n_patients=30, seed=SEED, worsening_from=request.param)


@pytest.fixture(scope="module")
def sim_hazard():
    return simulate_cohort(n_patients=30, seed=SEED)


def _truth(sim) -> dict:
    """The truth as read back from truth.json (what a user of a written cohort has)."""
    return json.loads(sim.files()["truth.json"])


def _own(sim, pid: str) -> pd.DataFrame:
    return sim.treatments[sim.treatments["patient_id"] == pid].reset_index(drop=True)


def _replayed_at_visits(sim, truth, score: str) -> list[xr.Dataset]:
    """One replay per patient, with their own courses, at their own visit times."""
    out = []
    for pid, visits in sim.visits.groupby("patient_id", sort=False):
        times = visits["years_since_onset"].to_numpy(float)
        out.append(true_score_distribution(truth, pid, _own(sim, pid), times, score=score))
    return out


def _score_stream(seed: int) -> np.random.Generator:
    """The simulator's random stream of the scores, as it was before the scores were drawn."""
    spawned = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return np.random.default_rng(spawned[STREAMS.index("scores")])


def _no_death(sim) -> None:
    # follow-up ending at death would drop visits after the scores were drawn
    assert not (sim.visits["mrs"] == 6).any()


def test_replayed_latent_redraws_every_recorded_score(sim):
    """Own courses: the replayed latent, drawn with the simulator's stream, gives its scores."""
    _no_death(sim)
    truth = _truth(sim)
    eta = np.concatenate([d["latent"].to_numpy() for d in _replayed_at_visits(sim, truth, "incat")])
    redrawn = draw_scores(_score_stream(SEED), eta, truth["progression"])
    # in hazard mode the written INCAT also follows the worsening time (not replayed)
    exact = ["onls", "mrs", "irods"] + (
        ["incat"] if truth["progression"]["exact_for_incat"] else []
    )
    for score in exact:
        recorded = sim.visits[score].to_numpy(float, na_value=np.nan)
        seen = ~np.isnan(recorded)
        assert seen.sum() > 100
        np.testing.assert_array_equal(redrawn[score][seen], recorded[seen], err_msg=score)


@functools.cache
def _simulated(mode: str):
    return simulate_cohort(n_patients=30, seed=SEED, worsening_from=mode)


# hazard mode's written INCAT also follows the worsening time (not replayed): not checked there
@pytest.mark.parametrize(
    ("mode", "score"),
    [("scores", "incat"), ("scores", "onls"), ("scores", "mrs"), ("hazard", "onls"),
     ("hazard", "mrs")],
)  # fmt: skip
def test_p_category_is_the_distribution_the_simulator_draws_from(mode, score):
    """Each recorded score is where the simulator's uniform number falls in P(score <= k)."""
    sim = _simulated(mode)
    _no_death(sim)
    truth = _truth(sim)
    assert truth["progression"]["exact_for_incat"] == (mode == "scores")
    replays = _replayed_at_visits(sim, truth, score)
    p = np.concatenate([d["p_category"].to_numpy() for d in replays])
    expected = np.concatenate([d["expected"].to_numpy() for d in replays])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(expected, p @ score_categories(score))
    stream = _score_stream(SEED)
    uniform = {name: stream.random(len(p)) for name in ("incat", "onls", "mrs")}[score]
    recorded = sim.visits[score].to_numpy(float, na_value=np.nan)
    seen = ~np.isnan(recorded)
    k = recorded[seen].astype(int)
    cumulative = np.hstack([np.zeros((len(p), 1)), np.cumsum(p, axis=1)])[seen]
    rows = np.arange(len(k))
    u = uniform[seen]
    assert (cumulative[rows, k] < u + 1e-12).all()
    assert (u <= cumulative[rows, k + 1] + 1e-12).all()


def test_irods_categories_are_the_beta_in_tenths_of_a_centile(sim_hazard):
    truth = _truth(sim_hazard)
    replay = true_score_distribution(
        truth, "P001", _own(sim_hazard, "P001"), [0.5, 5.0, 11.0], score="irods"
    )
    assert replay.sizes["category"] == 1001
    np.testing.assert_allclose(replay["p_category"].sum("category"), 1.0, atol=1e-9)
    a, b = irods_beta_shapes(replay["latent"].to_numpy(), truth["progression"])
    # rounding to 0.1 moves the mean by far less than a tenth
    np.testing.assert_allclose(replay["expected"], 100 * a / (a + b), atol=0.01)


@pytest.mark.parametrize("pid", ["P004", "P028"])
def test_removing_rituximab_from_a_sural_reduced_patient_raises_incat_at_10_years(sim_hazard, pid):
    truth = _truth(sim_hazard)
    assert truth["patients"][pid]["true_sural_reduced"]
    own = _own(sim_hazard, pid)
    rituximab = own[own["treatment"] == "rituximab"].iloc[0]
    assert rituximab["start_years"] < 10
    never = own[own["treatment"] != "rituximab"].copy()
    with_it = true_score_distribution(truth, pid, own, 10.0)
    without = true_score_distribution(truth, pid, never, 10.0)
    assert float(without["expected"][0]) > float(with_it["expected"][0]) + 0.3
    prog = truth["progression"]
    gamma = prog["gamma_rituximab"] + prog["gamma_rituximab_x_sural"]
    gamma += prog["gamma_later_line"] * (rituximab["line"] >= 2)
    gained = float(without["latent"][0] - with_it["latent"][0])
    assert gained == pytest.approx(-gamma * (10 - rituximab["start_years"]))


def test_a_course_started_after_10_years_changes_nothing_at_10_years(sim_hazard):
    truth = _truth(sim_hazard)
    own = _own(sim_hazard, "P008")
    assert own.empty
    late = pd.DataFrame(
        {"patient_id": ["P008"], "treatment": ["rituximab"], "line": [1], "start_years": [10.5]}
    )
    at = [10.0, 12.0]
    before = true_score_distribution(truth, "P008", own, at)
    after = true_score_distribution(truth, "P008", late, at)
    np.testing.assert_array_equal(after["p_category"][0], before["p_category"][0])
    assert float(after["expected"][1]) < float(before["expected"][1])


def test_true_contrast_groups_by_the_true_sural_status(sim_hazard):
    truth = _truth(sim_hazard)
    cohort = sim_hazard.cohort
    ids = list(cohort.patients.index)
    derived = cohort.patients["sural_reduced"]
    assert derived.isna().any()  # some statuses are undefined in the data
    true_status = pd.Series({pid: truth["patients"][pid]["true_sural_reduced"] for pid in ids})
    strategies = {
        "as_observed": {pid: _own(sim_hazard, pid) for pid in ids},
        "never": {
            pid: _own(sim_hazard, pid)
            .query("treatment != 'rituximab'")
            .assign(line=lambda t: np.arange(1, len(t) + 1))
            for pid in ids
        },
    }
    table = true_contrast(truth, cohort, strategies, years=10.0, threshold=4)
    assert list(table.columns) == ["strategy", "group", "n_patients", "expected", "p_at_or_above"]
    assert len(table) == 6
    for strategy, by_patient in strategies.items():
        one = {
            pid: true_score_distribution(truth, pid, by_patient[pid], 10.0).isel(time=0)
            for pid in ids
        }
        expected = pd.Series({pid: float(d["expected"]) for pid, d in one.items()})
        at_or_above = pd.Series(
            {
                pid: float(d["p_category"].sel(category=slice(4, None)).sum())
                for pid, d in one.items()
            }
        )
        groups = {
            "all": true_status.index,
            "sural_reduced": true_status.index[true_status],
            "sural_preserved": true_status.index[~true_status],
        }
        for group, members in groups.items():
            row = table[(table["strategy"] == strategy) & (table["group"] == group)].iloc[0]
            assert row["n_patients"] == len(members)
            assert row["expected"] == pytest.approx(expected[members].mean(), rel=1e-12)
            assert row["p_at_or_above"] == pytest.approx(at_or_above[members].mean(), rel=1e-12)
    assert table.attrs["exact"] is False  # INCAT of a hazard-mode cohort


def _default_strategy_contrast(sim) -> pd.DataFrame:
    """true_contrast of magbayes.predict's default strategies, indexed by group and strategy."""
    cohort = sim.cohort
    strategies = {}
    for strategy in DEFAULT_STRATEGIES:
        treatments = apply_to_cohort(strategy, cohort).treatments
        strategies[strategy.name] = {
            pid: treatments[treatments["patient_id"] == pid] for pid in cohort.patients.index
        }
    return true_contrast(_truth(sim), cohort, strategies).set_index(["group", "strategy"])


def test_default_strategies_replay_and_prompt_rituximab_helps_sural_reduced_most(sim_hazard):
    """The strategy tables of magbayes.predict replay as they are (lines renumbered there)."""
    table = _default_strategy_contrast(sim_hazard)
    reduced = table.loc["sural_reduced", "expected"]
    # the earlier rituximab, the less disability at 10 years
    assert reduced["prompt"] < reduced["delayed"] < reduced["never"]
    # the same patients and courses, without the interaction
    null = _default_strategy_contrast(
        simulate_cohort(n_patients=30, seed=SEED, sural_rituximab_effect=0.0)
    )

    def gap(t):  # benefit of prompt over never: sural-reduced minus sural-preserved
        benefit = t.loc[(slice(None), "never"), "expected"].droplevel("strategy")
        benefit -= t.loc[(slice(None), "prompt"), "expected"].droplevel("strategy")
        return benefit["sural_reduced"] - benefit["sural_preserved"]

    assert gap(table) > gap(null) + 0.3


def test_invalid_courses_are_refused_with_their_context(sim_hazard):
    truth = _truth(sim_hazard)
    own = _own(sim_hazard, "P004")
    with pytest.raises(ValueError, match="patient P004, course 1: unknown treatment 'aspirin'"):
        true_score_distribution(truth, "P004", own.assign(treatment="aspirin"), 1.0)
    with pytest.raises(ValueError, match="courses of other patients \\(P005\\)"):
        true_score_distribution(truth, "P004", _own(sim_hazard, "P005"), 1.0)
    with pytest.raises(ValueError, match="line must be 1, 2"):
        true_score_distribution(truth, "P004", own.assign(line=0), 1.0)
    with pytest.raises(ValueError, match="score must be one of"):
        true_score_distribution(truth, "P004", own, 1.0, score="mrc")
    with pytest.raises(ValueError, match="strategy 'never' has no courses for patients P002"):
        ids = list(sim_hazard.cohort.patients.index)
        true_contrast(truth, sim_hazard.cohort, {"never": {ids[0]: own.iloc[0:0]}})
