"""Predictions of the worsening model: a patient's worsening-free probability under strategies.

The closed-form hazard is checked against numerical integration and against the fit's own
pointwise log-likelihood; a fitted patient's "as observed" prediction at the end of their
follow-up against the fit's posterior predictive; a new patient (importance sampling)
against the same patient fitted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad

import magbayes as mb
from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.models import survival
from magbayes.models.patient_context import flat
from magbayes.models.worsening.predictions import (
    Baseline,
    Hazard,
    WorseningPredictor,
    outcome_log_likelihood,
    treatment_stretches,
)
from magbayes.predict import Strategy, write_predictions

AS_OBSERVED = Strategy("as observed", "as_observed")


def _params(n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "baseline_log_hazard": rng.normal(-2.0, 0.3, (n, 3)),
        "weibull_shape": rng.uniform(0.7, 1.6, n),
        "weibull_log_scale": rng.normal(2.0, 0.2, n),
        "beta_sural_reduced": rng.normal(0, 0.3, n),
        "beta_rituximab": rng.normal(-0.3, 0.3, n),
        "beta_rituximab_x_sural": rng.normal(-0.3, 0.3, n),
        "beta_treatment": rng.normal(0, 0.3, (n, 1)),
    }


@pytest.mark.parametrize("grid", [np.array([0.0, 2.0, 5.0, np.inf]), None])
def test_cumulative_hazard_is_the_integral_of_the_hazard(grid):
    params = _params()
    courses = pd.DataFrame(
        {
            "treatment": ["ivig", "rituximab", "ivig", "rituximab"],
            "start_years": [0.5, 3.0, 4.0, 6.5],
        }
    )
    starts, counts = treatment_stretches(courses, ["ivig"], "courses_started")
    assert counts.tolist() == [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2]]
    ever = treatment_stretches(courses, ["ivig"], "ever")[1]
    assert ever.max() == 1
    lp = np.array([0.1, -0.2, 0.3])
    reduced = np.array([0.0, 1.0, 1.0])
    hazard = Hazard(params, Baseline(params, grid), lp, reduced, starts, counts)
    a, b = np.array([1.0, 1.0, 2.5]), np.array([7.0, 3.5, 9.0])
    closed = hazard.cumulative(a, b)
    for s in range(3):

        def h(t, s=s):
            return float(np.exp(hazard.log_at(np.full(3, t))[s]))

        breaks = [x for x in (0.5, 2.0, 3.0, 4.0, 5.0, 6.5) if a[s] < x < b[s]]
        value = quad(h, a[s], b[s], points=breaks, limit=200)[0]
        assert closed[s] == pytest.approx(value, rel=1e-8)
    # the interval-censored log-likelihood is log(S(L) - S(R)) from the entry
    outcome = {
        "entry_years": 1.0,
        "lower_years": 3.0,
        "upper_years": 5.0,
        "kind": survival.INTERVAL,
    }
    survive = np.exp(-hazard.cumulative(np.full(3, 1.0), np.array([3.0, 3.0, 3.0])))
    later = np.exp(-hazard.cumulative(np.full(3, 1.0), np.array([5.0, 5.0, 5.0])))
    np.testing.assert_allclose(
        outcome_log_likelihood(hazard, outcome), np.log(survive - later), rtol=1e-10
    )


def _renamed(cohort: Cohort, old: str, new: str, site: str | None = None) -> Cohort:
    """The cohort with one patient's id (and optionally site) changed in every table."""
    patients = cohort.patients.reset_index()
    patients["patient_id"] = patients["patient_id"].replace(old, new)
    if site is not None:
        patients.loc[patients["patient_id"] == new, "site"] = site
    visits, treatments = cohort.visits.copy(), cohort.treatments.copy()
    visits["patient_id"] = visits["patient_id"].replace(old, new)
    treatments["patient_id"] = treatments["patient_id"].replace(old, new)
    return Cohort.from_frames(patients, visits, treatments)


@pytest.mark.slow
def test_the_patient_hazard_reproduces_the_fits_log_likelihood(worsening_fit, worsening_sim):
    predictor = WorseningPredictor(worsening_fit, worsening_sim.cohort, seed=1)
    pointwise = flat(worsening_fit.posterior["log_likelihood"]["worsening"])
    constant = predictor.constant
    prevalence = predictor.params["sural_reduced_prevalence"]
    unknown = 0
    for i, pid in enumerate(str(p) for p in constant["patient"].values):
        lp = predictor.context(pid)["patient_lp"]
        outcome = predictor.observed_outcome(pid)
        starts, counts = treatment_stretches(
            predictor.courses(pid), predictor.treatments, predictor.exposure
        )

        def under(status, lp=lp, outcome=outcome, starts=starts, counts=counts):
            hazard = Hazard(
                predictor.params,
                predictor.baseline,
                lp,
                np.full(predictor.n, status),
                starts,
                counts,
            )
            return outcome_log_likelihood(hazard, outcome)

        if bool(constant["sural_known"].values[i]):
            mine = under(float(constant["sural_reduced"].values[i]))
        else:
            unknown += 1
            mine = np.logaddexp(np.log(prevalence) + under(1.0), np.log1p(-prevalence) + under(0.0))
        np.testing.assert_allclose(mine, pointwise[:, i], rtol=1e-9, atol=1e-9)
    assert unknown > 0  # the mixture over the early-sural status is checked too


@pytest.mark.slow
def test_as_observed_at_the_end_of_follow_up_is_the_posterior_predictive(
    worsening_fit, worsening_sim
):
    predictor = WorseningPredictor(worsening_fit, worsening_sim.cohort, seed=2)
    replicated = flat(worsening_fit.posterior["posterior_predictive"]["worsening"])
    constant = predictor.constant
    gaps, scale = [], []
    for i, pid in enumerate(str(p) for p in constant["patient"].values):
        if not bool(constant["sural_known"].values[i]):
            continue  # the predictive draws an unknown status from the prevalence
        end = float(constant["end_of_follow_up_years"].values[i])
        free, _ = predictor.worsening_free(pid, AS_OBSERVED, np.array([end]))
        predicted = float(free.mean())
        share = float((replicated[:, i] == 0).mean())
        gaps.append(predicted - share)
        scale.append(np.sqrt(max(predicted * (1 - predicted), 1e-4) / predictor.n))
    gaps, scale = np.asarray(gaps), np.asarray(scale)
    assert len(gaps) >= 30
    assert np.all(np.abs(gaps) < 4.5 * scale + 1e-3), np.max(np.abs(gaps) / scale)
    assert abs(gaps.mean()) < 3 * np.sqrt(np.sum(scale**2)) / len(gaps)


@pytest.mark.slow
def test_a_new_patient_agrees_with_the_same_patient_fitted(worsening_fit, worsening_sim):
    cohort = worsening_sim.cohort
    constant = worsening_fit.posterior["constant_data"]
    ids = [str(p) for p in constant["patient"].values]
    known = np.asarray(constant["sural_known"].values, bool)
    seen = np.asarray(constant["worsening_seen"].values, bool)
    complete = np.isfinite(np.asarray(constant["covariate_value"].values)).all(axis=1)
    unknown_id = ids[int(np.nonzero(~known & complete)[0][0])]
    known_id = ids[int(np.nonzero(known & complete & seen)[0][0])]
    years = np.arange(0.0, 12.5, 1.0)
    for pid in (unknown_id, known_id):
        renamed = _renamed(cohort, pid, "NEW1")
        fitted = mb.predict(worsening_fit, cohort, times=years, patients=[pid], seed=3)
        new = mb.predict(worsening_fit, renamed, times=years, patients=["NEW1"], seed=3)
        a = fitted["predictions"]["worsening_free"].values[0]
        b = new["predictions"]["worsening_free"].values[0]
        assert not bool(new["predictions"]["fitted"].values[0])
        if pid == known_id:
            # nothing about this patient is unknown: every candidate is the same patient
            np.testing.assert_allclose(a, b, atol=1e-12)
        else:
            np.testing.assert_allclose(a, b, atol=0.03)
    # a site the fit has not seen: its frailty comes from the spread, so the band is wider
    elsewhere = _renamed(cohort, known_id, "NEW2", site="centre_Z")
    new_site = mb.predict(worsening_fit, elsewhere, times=years, patients=["NEW2"], seed=3)
    same_site = mb.predict(worsening_fit, cohort, times=years, patients=[known_id], seed=3)

    def width(tree):
        p = tree["predictions"]
        return float((p["worsening_free_hdi_high"] - p["worsening_free_hdi_low"]).mean())

    assert width(new_site) > width(same_site)


@pytest.mark.slow
def test_worsening_predictions_are_written_and_bad_requests_refused(
    worsening_fit, worsening_sim, tmp_path
):
    cohort = worsening_sim.cohort
    patients = [str(p) for p in worsening_fit.posterior["constant_data"]["patient"].values[:2]]
    tree = mb.predict(worsening_fit, cohort, times=[0, 4, 8, 12], patients=patients)
    ds = tree["predictions"]
    free = ds["worsening_free"].values
    assert np.all(np.diff(free, axis=-1) <= 1e-12)  # never rises with time
    assert np.all((ds["worsening_free_hdi_low"] <= ds["worsening_free"]).values)
    # "never" has no rituximab start; "prompt" starts at 1 year since onset
    starts = ds["rituximab_start"].sel(strategy="prompt").values
    np.testing.assert_allclose(starts, 1.0)
    assert np.isnan(ds["rituximab_start"].sel(strategy="never").values).all()
    out = write_predictions(tree, cohort, tmp_path / "pred")
    table = pd.read_csv(out / "predictions.csv")
    assert {"worsening_free", "worsening_free_hdi_low", "worsening_free_hdi_high"} <= set(table)
    assert len(table) == 2 * 3 * 4
    assert (out / "figures" / f"{patients[0]}.png").is_file()
    assert not (out / "p_category.csv").exists()
    with pytest.raises(SpecError, match="threshold does not apply"):
        mb.predict(worsening_fit, cohort, threshold=4, patients=patients)
    with pytest.raises(SpecError, match="INCAT rise"):
        mb.predict(worsening_fit, cohort, strategies=[Strategy("rise", "on_rise", incat_rise=2)])
    moved = cohort.patients.reset_index()
    first = patients[0]
    other = [
        s
        for s in moved["site"].unique()
        if s != moved.loc[moved.patient_id == first, "site"].iloc[0]
    ]
    moved.loc[moved["patient_id"] == first, "site"] = other[0]
    impostor = Cohort.from_frames(moved, cohort.visits, cohort.treatments)
    with pytest.raises(SpecError, match=f"patient {first} of the cohort is not the fit's"):
        mb.predict(worsening_fit, impostor, patients=[first])
