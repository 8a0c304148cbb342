"""Predictions for patients under treatment strategies, checked against simulated truth.

The simulator knows every patient's parameters: a fit on each patient's early visits
predicts the later ones, a new patient's prediction (importance sampling) is compared
with a refit that includes them, and a fitted patient's prediction at their own visits
with the fit's posterior predictive.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest

import magbayes as mb
from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.predict import Strategy, parse_times, write_predictions

pytestmark = pytest.mark.slow

AS_OBSERVED = Strategy("as observed", "as_observed")


def _subset(cohort: Cohort, *, drop: tuple[str, ...] = (), before: dict | None = None) -> Cohort:
    """The cohort without some patients, and with each patient's visits cut at a time."""
    visits = cohort.visits[~cohort.visits["patient_id"].isin(drop)]
    if before is not None:
        cut = visits["patient_id"].map(before).fillna(np.inf)
        visits = visits[visits["years_since_onset"] <= cut]
    return Cohort.from_frames(
        cohort.patients[~cohort.patients.index.isin(drop)].reset_index(),
        visits,
        cohort.treatments[~cohort.treatments["patient_id"].isin(drop)],
    )


@pytest.fixture(scope="module")
def sim():
    return mb.simulate_cohort(n_patients=60, n_sites=2, seed=31)


@pytest.fixture(scope="module")
def early(sim):
    """Each patient's first half of visits (at least two) fitted; the rest held out."""
    visits = sim.cohort.visits.sort_values("years_since_onset")
    cut = {}
    for pid, rows in visits.groupby("patient_id"):
        years = rows["years_since_onset"].to_numpy()
        keep = max(2, len(years) // 2)
        if keep < len(years):
            cut[pid] = float(years[keep - 1])
    truncated = _subset(sim.cohort, before=cut)
    fit = mb.fit(truncated, "progression", draws=300, tune=300, chains=2, seed=4, progress=False)
    return truncated, cut, fit


def test_held_out_visits_fall_in_the_predictive_bands_at_the_nominal_rate(sim, early):
    truncated, cut, fit = early
    visits = sim.cohort.visits
    inside = []
    for pid, after in cut.items():
        held = visits[(visits["patient_id"] == pid) & (visits["years_since_onset"] > after)]
        held = held[held["incat"].notna()]
        if held.empty:
            continue
        tree = mb.predict(
            fit,
            truncated,
            times=held["years_since_onset"].to_numpy(),
            strategies=[AS_OBSERVED],
            patients=[pid],
        )
        ds = tree["predictions"].isel(patient=0, strategy=0)
        p = ds["p_category"].values  # (time, category)
        observed = held["incat"].to_numpy(int)
        below = np.array([p[t, : observed[t]].sum() for t in range(len(observed))])
        # the randomised PIT of a discrete score: uniform when the predictions are calibrated
        inside.append((below, below + p[np.arange(len(observed)), observed]))
    low = np.concatenate([a for a, _ in inside])
    high = np.concatenate([b for _, b in inside])
    assert len(low) >= 200
    pit = low + np.random.default_rng(0).random(len(low)) * (high - low)
    # one patient's visits are correlated (their own level and rate), so each standard
    # error comes from the patients, not the visits (cluster-robust, patients as clusters;
    # about 1.9 times the binomial one here)
    sizes = [len(a) for a, _ in inside]
    chunks = np.split(pit, np.cumsum(sizes)[:-1])
    inside_90 = [(chunk > 0.05) & (chunk < 0.95) for chunk in chunks]
    within_90 = np.mean(np.concatenate(inside_90))
    se_90 = np.sqrt(sum((flags - 0.9).sum() ** 2 for flags in inside_90)) / len(pit)
    assert abs(within_90 - 0.9) < 3.5 * se_90, (within_90, se_90)
    # no bias: the PIT's mean is 1/2
    per_patient = np.array([chunk.mean() for chunk in chunks])
    se = per_patient.std(ddof=1) / np.sqrt(len(per_patient))
    assert abs(per_patient.mean() - 0.5) < 3.5 * se, (per_patient.mean(), se)


def test_a_new_patient_agrees_with_a_refit_that_includes_them():
    # 150 patients: the refit's population parameters barely move with one patient more
    # (with 60, this patient's rituximab course moved the prompt prediction at 10 years by
    # 0.13 INCAT through gamma_rituximab alone), so what differs is the patient's own part
    cohort = mb.simulate_cohort(n_patients=150, n_sites=2, seed=32).cohort
    visits = cohort.visits.groupby("patient_id").size()
    new = str(visits.index[np.argmax(visits.to_numpy())])  # a patient with many visits
    without = _subset(cohort, drop=(new,))
    settings = {"seed": 9, "progress": False}  # the spec's 4 x 1,000 draws: MCSE of a mean ~0.03
    fit_without = mb.fit(without, "progression", **settings)
    fit_with = mb.fit(cohort, "progression", **settings)
    times = np.array([2.0, 6.0, 10.0])
    strategies = [Strategy("never", "never"), Strategy("prompt", "at_year", years_since_onset=1)]
    by_importance = mb.predict(
        fit_without, cohort, times=times, strategies=strategies, patients=[new]
    )["predictions"]
    by_refit = mb.predict(fit_with, cohort, times=times, strategies=strategies, patients=[new])[
        "predictions"
    ]
    assert not bool(by_importance["fitted"].item()) and bool(by_refit["fitted"].item())
    assert float(by_importance["importance_ess"].item()) > 5
    np.testing.assert_allclose(by_importance["mean"], by_refit["mean"], atol=0.1)
    np.testing.assert_allclose(by_importance["mean_hdi_low"], by_refit["mean_hdi_low"], atol=0.2)
    np.testing.assert_allclose(by_importance["mean_hdi_high"], by_refit["mean_hdi_high"], atol=0.2)


def test_as_observed_equals_the_fits_posterior_predictive_at_the_visits(early):
    truncated, _, fit = early
    tree = fit.posterior
    const = tree["constant_data"]
    ppc = tree["posterior_predictive"]["score"].astype(float)
    patients = [str(p) for p in const["patient"].values]
    known = np.asarray(const["sural_known"].values, bool)
    patient_of_visit = np.asarray(const["patient_of_visit"].values, int)
    years = np.asarray(const["years_since_onset"].values, float)
    checked = 0
    for i in np.nonzero(known)[0][:8]:
        visits = np.nonzero(patient_of_visit == i)[0]
        predicted = mb.predict(
            fit, truncated, times=years[visits], strategies=[AS_OBSERVED], patients=[patients[i]]
        )["predictions"].isel(patient=0, strategy=0)
        draws = ppc.isel(visit=visits)
        replicated = draws.mean(("chain", "draw")).values
        se = draws.std(("chain", "draw")).values / np.sqrt(
            draws.sizes["chain"] * draws.sizes["draw"]
        )
        assert np.all(np.abs(predicted["mean"].values - replicated) < 4 * se + 0.02)
        checked += 1
    assert checked == 8


def test_the_timing_answer_is_in_the_headline_with_intervals_and_mcse(early):
    truncated, _, fit = early
    headline = fit.headline()
    timing = headline["timing"]
    for group in ("sural_reduced", "sural_preserved"):
        for measure in ("expected_score", "p_disabled"):
            entry = timing[group][measure]
            assert entry["hdi_low"] <= entry["mean"] <= entry["hdi_high"]
            assert 0.0 <= entry["p_prompt_better"] <= 1.0 and entry["mcse"] >= 0.0
    assert "This assumes" in timing["sentence"]
    # the fit's timing group is saved with the results and read back
    assert "timing" in fit.posterior.children


def test_predictions_are_written_and_bad_requests_refused(early, tmp_path):
    truncated, _, fit = early
    tree = mb.predict(
        fit, truncated, times=parse_times("0:4:2"), patients=truncated.patient_ids[:2]
    )
    out = write_predictions(tree, truncated, tmp_path / "pred")
    table = pd.read_csv(out / "predictions.csv")
    assert set(table["strategy"]) == {"prompt", "delayed", "never"}
    assert len(table) == 2 * 3 * 3
    assert (out / "figures" / f"{truncated.patient_ids[0]}.png").is_file()
    p = pd.read_csv(out / "p_category.csv").groupby(["patient", "strategy", "time"])["p_category"]
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-9)
    with pytest.raises(SpecError, match="not patients of the cohort"):
        mb.predict(fit, truncated, patients=["nobody"])
    with pytest.raises(SpecError, match="START:STOP:STEP"):
        parse_times("soon")
    # another patient under a fitted patient's id is refused, not predicted from their posterior
    first = truncated.patient_ids[0]
    moved = truncated.visits.copy()
    moved.loc[moved["patient_id"] == first, "years_since_onset"] += 0.1
    impostor = Cohort.from_frames(truncated.patients.reset_index(), moved, truncated.treatments)
    with pytest.raises(SpecError, match=f"patient {first} of the cohort is not the fit's"):
        mb.predict(fit, impostor, patients=[first])


def test_a_new_patient_at_a_fitted_hospital_gets_its_site_effects(early):
    """Sites are the posterior's (the constant data has no site coordinate): a new patient
    at one of the fit's hospitals takes that hospital's offsets, not an unseen site's, one
    at another hospital an unseen site's, and a fitted patient's id at another hospital is
    refused. (A new patient's level varies too much between draws for the offsets to be
    told apart in their draws: the index is checked, which the offsets are read with.)"""
    from magbayes.models.progression.predictions import Predictor

    truncated, _, fit = early
    sites = [str(x) for x in fit.posterior["posterior"]["site"].values]
    first = truncated.patient_ids[0]
    home = str(truncated.patients.loc[first, "site"])
    away = next(x for x in sites if x != home)
    copies = truncated.patients.loc[[first, first, first]]
    copies.index = pd.Index(["NEW_HOME", "NEW_AWAY", "NEW_ELSEWHERE"], name="patient_id")
    copies["site"] = [home, away, "another_hospital"]
    patients = pd.concat([truncated.patients, copies])
    patients.loc[first, "site"] = away  # the fitted patient's id, at another hospital
    cohort = Cohort.from_frames(patients.reset_index(), truncated.visits, truncated.treatments)
    predictor = Predictor(fit, cohort, seed=1)
    assert predictor.site_index("NEW_HOME") == sites.index(home)
    assert predictor.site_index("NEW_AWAY") == sites.index(away)
    assert predictor.site_index("NEW_ELSEWHERE") is None
    with pytest.raises(
        SpecError, match=f"patient {first} of the cohort .*site {away}, fitted at {home}"
    ):
        mb.predict(fit, cohort, patients=[first])


def test_the_timing_contrast_covers_the_true_contrast_on_a_large_cohort():
    """Prompt minus delayed rituximab at 10 years: the fit's 90% interval covers the truth.

    The truth replays every patient of the cohort under both strategies with their true
    parameters (:func:`magbayes.simulate.replay.true_contrast`), averaged over the
    patients of each true early-sural group; scores-mode worsening, so that the simulated
    INCAT is exactly the score model's.
    """
    from shared_fits import true_timing_contrast

    sim = mb.simulate_cohort(n_patients=300, n_sites=2, seed=41, worsening_from="scores")
    cohort = sim.cohort
    fit = mb.fit(cohort, "progression", draws=500, tune=400, chains=2, seed=2, progress=False)
    timing = fit.posterior["timing"].to_dataset()
    for (group, measure), true in true_timing_contrast(sim, cohort).items():
        hdi = az.hdi(timing[measure].sel(group=group), prob=0.9)
        low, high = float(hdi.sel(ci_bound="lower")), float(hdi.sel(ci_bound="upper"))
        assert low <= true <= high, (group, measure, low, true, high)


def test_irods_predictions_are_centiles_that_match_the_posterior_predictive(sim):
    """The Beta (I-RODS) family: expected centiles at the visits, bands, P(centile <= 50)."""
    fit = mb.fit(
        sim.cohort,
        "progression",
        draws=200,
        tune=300,
        chains=2,
        seed=6,
        progress=False,
        overrides={"outcome": {"score": "irods"}},
        prior_predictive=False,
    )
    tree = fit.posterior
    const = tree["constant_data"]
    ppc = tree["posterior_predictive"]["score"].astype(float)
    patients = [str(p) for p in const["patient"].values]
    known = np.nonzero(np.asarray(const["sural_known"].values, bool))[0][:6]
    patient_of_visit = np.asarray(const["patient_of_visit"].values, int)
    years = np.asarray(const["years_since_onset"].values, float)
    for i in known:
        visits = np.nonzero(patient_of_visit == i)[0]
        predicted = mb.predict(
            fit, sim.cohort, times=years[visits], strategies=[AS_OBSERVED], patients=[patients[i]]
        )["predictions"].isel(patient=0, strategy=0)
        draws = ppc.isel(visit=visits)
        replicated = draws.mean(("chain", "draw")).values
        se = draws.std(("chain", "draw")).values / np.sqrt(
            draws.sizes["chain"] * draws.sizes["draw"]
        )
        assert np.all(np.abs(predicted["mean"].values - replicated) < 4 * se + 0.5)
        band = predicted["band"].values
        assert np.all((band >= 0) & (band <= 100)) and np.all(np.diff(band, axis=-1) >= 0)
        # P(centile <= 50) against the share of predictive draws at or below 50, within
        # 4 Monte Carlo standard errors of that share (from its effective sample size)
        indicator = (draws <= 50).astype(float)
        below = indicator.mean(("chain", "draw")).values
        ess = np.asarray(az.ess(indicator).values, float)
        mcse = np.sqrt(np.clip(below * (1 - below), 0.01, None) / ess)
        assert np.all(np.abs(predicted["p_disabled"].values - below) < 4 * mcse + 0.01)
    ds = mb.predict(fit, sim.cohort, times=[0, 6, 12], patients=[patients[0]])["predictions"]
    assert ds.attrs["score"] == "irods" and ds.attrs["threshold_direction"] == "at or below"
    assert "p_category" not in ds
