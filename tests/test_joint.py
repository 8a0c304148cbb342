"""The joint model of a cohort: event arrays, its likelihood against a direct computation,
and recovery of the association and the trajectory under informative dropout."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

import magbayes as mb
from magbayes.errors import SpecError
from magbayes.fit import prepare, resolve_spec
from magbayes.models.joint.events import (
    CENSORED,
    EVENT,
    EVENT_IN_INTERVAL,
    event_arrays,
)


@pytest.fixture(scope="module")
def dropout_sim():
    return mb.simulate_cohort(
        n_patients=30, seed=2, end_of_follow_up=True, death_alpha=0.5, interval_censored_share=0.5
    )


def test_event_arrays_cover_the_time_at_risk_and_code_the_outcomes(dropout_sim):
    cohort = dropout_sim.cohort
    ids = list(cohort.patient_ids)
    entry = np.full(len(ids), 0.5)
    arrays = event_arrays(cohort, ids, entry, breaks=np.array([0.0, 4.0, np.inf]))
    follow = cohort.follow_up.reindex(ids)
    # the weights of each patient's nodes add up to their time at risk, and nodes lie in it
    at_risk = np.bincount(arrays.node_patient, arrays.node_weight, minlength=len(ids))
    np.testing.assert_allclose(at_risk, arrays.end - arrays.entry, atol=1e-12)
    assert np.all(arrays.node_years > arrays.entry[arrays.node_patient])
    assert np.all(arrays.node_years < arrays.end[arrays.node_patient])
    died = follow["end_reason"].astype(str).to_numpy() == "death"
    interval = follow["end_lower_years"].notna().to_numpy()
    assert interval.sum() >= 2
    np.testing.assert_array_equal(arrays.outcome == CENSORED, ~died)
    np.testing.assert_array_equal(arrays.outcome == EVENT_IN_INTERVAL, died & interval)
    np.testing.assert_array_equal(arrays.outcome == EVENT, died & ~interval)
    # the nodes after the lower bound of an interval event integrate over (lower, end]
    after = np.bincount(
        arrays.node_patient, arrays.node_weight * arrays.node_after_lower, minlength=len(ids)
    )
    expected = np.where(died & interval, arrays.end - arrays.lower, 0.0)
    np.testing.assert_allclose(after, expected, atol=1e-12)
    # Gauss-Legendre on each stretch integrates a smooth hazard as scipy does
    i = int(np.argmax(arrays.end - arrays.entry))
    mine = arrays.node_patient == i
    f = lambda t: 0.02 * np.exp(0.3 * t) * (1.4 * t**0.4)  # noqa: E731
    quad = integrate.quad(f, arrays.entry[i], arrays.end[i])[0]
    assert abs(np.sum(arrays.node_weight[mine] * f(arrays.node_years[mine])) - quad) < 1e-8 * quad


def test_the_joint_model_needs_the_end_of_follow_up_and_known_covariates(dropout_sim):
    plain = mb.simulate_cohort(n_patients=12, seed=3).cohort
    with pytest.raises(SpecError, match="end of follow-up"):
        prepare(plain, resolve_spec("joint"))
    with pytest.raises(SpecError, match="not among the model's covariates"):
        prepare(dropout_sim.cohort, resolve_spec("joint", {"event": {"covariates": ["height"]}}))


def _direct_log_likelihood(point, design, i, cohort):
    """The end of follow-up's log-likelihood of patient i, by hand (Weibull, scipy quad)."""
    d = design.data
    level = point["patient_level"][i]
    rate = point["patient_rate"][i] + point["rate_sural_reduced"] * d["sural_reduced"][i]
    gamma = dict(zip(design.coords["treatment"], point["gamma_treatment"], strict=True))
    pid = design.coords["patient"][i]
    courses = cohort.treatments[cohort.treatments["patient_id"] == pid]
    reduced = float(d["sural_reduced"][i] == 1)

    def eta(t, per_year=False):
        """The latent disability at t, or (per_year) its rate of change there."""
        value = rate if per_year else level + rate * t
        for _, c in courses.iterrows():
            since = float(t >= c["start_years"]) if per_year else max(t - c["start_years"], 0.0)
            if c["treatment"] == "rituximab":
                value += since * (
                    point["gamma_rituximab"] + reduced * point["gamma_rituximab_x_sural"]
                )
            else:
                value += since * gamma.get(c["treatment"], 0.0)
            if c["line"] >= 2:
                value += since * point["gamma_later_line"]
        return value

    cov = design.coords["covariate"].index("age_at_onset")
    x = d["covariate_value"][i, cov]
    site = d["site_of_patient"][i]
    fixed = point["event_site_frailty"][site] + point["event_beta_covariate"][0] * x
    k, log_scale = point["weibull_shape"], point["weibull_log_scale"]

    def log_hazard(t):
        rituximab = float(
            (courses["treatment"] == "rituximab")
            .to_numpy()[courses["start_years"].to_numpy() <= t]
            .sum()
        )
        return (
            np.log(k)
            - log_scale
            + (k - 1) * (np.log(t) - log_scale)
            + fixed
            + point["event_rituximab"] * rituximab
            + point["association"] * eta(t)
            + point.get("association_slope", 0.0) * eta(t, per_year=True)
        )

    hazard = lambda t: np.exp(log_hazard(t))  # noqa: E731
    entry, end = d["event_entry_years"][i], d["event_end_years"][i]
    breaks = sorted(set(courses["start_years"]) | {d["event_lower_years"][i]})
    breaks = [b for b in breaks if np.isfinite(b) and entry < b < end]
    outcome = d["event_outcome"][i]
    if outcome == EVENT_IN_INTERVAL:
        lower = d["event_lower_years"][i]
        before = integrate.quad(hazard, entry, lower, points=breaks or None, limit=200)[0]
        after = integrate.quad(hazard, lower, end, points=breaks or None, limit=200)[0]
        return -before + np.log(-np.expm1(-after))
    total = integrate.quad(hazard, entry, end, points=breaks or None, limit=200)[0]
    return -total + (log_hazard(end) if outcome == EVENT else 0.0)


@pytest.mark.parametrize("association", ["value", "value_and_slope"])
def test_the_end_of_follow_up_likelihood_is_the_hazard_integrated_by_hand(dropout_sim, association):
    """Per patient, the model's log-likelihood of the end of follow-up at a random point
    equals the hazard integrated by scipy for known early-sural statuses (the log hazard
    following the current latent disability, and with ``value_and_slope`` its current rate
    of change too)."""
    spec = resolve_spec(
        "joint",
        {"patients": {"parametrisation": "centred"}, "event": {"association": association}},
    )
    cohort, design, model = prepare(dropout_sim.cohort, spec)
    rng = np.random.default_rng(4)
    ip = model.initial_point()
    start = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in ip.items()}
    names = [
        "patient_level",
        "patient_rate",
        "rate_sural_reduced",
        "gamma_treatment",
        "gamma_rituximab",
        "gamma_rituximab_x_sural",
        "gamma_later_line",
        "event_site_frailty",
        "event_beta_covariate",
        "weibull_shape",
        "weibull_log_scale",
        "event_rituximab",
        "association",
    ]
    if association == "value_and_slope":
        names.append("association_slope")
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    values = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")(start)
    point = dict(zip(names, (np.asarray(v) for v in values), strict=True))
    logp = model.compile_logp(vars=[model["end_of_follow_up"]], sum=False, jacobian=False)
    per_patient = np.asarray(logp(start)[0])
    known = design.data["sural_known"].astype(bool)
    outcomes = design.data["event_outcome"]
    checked = set()
    for i in np.nonzero(known)[0]:
        direct = _direct_log_likelihood(point, design, i, cohort)
        # Gauss-Legendre on each stretch against scipy's adaptive quadrature: about 1e-7
        assert abs(per_patient[i] - direct) < 1e-6, (i, per_patient[i], direct)
        checked.add(int(outcomes[i]))
    assert checked == {CENSORED, EVENT, EVENT_IN_INTERVAL}
    assert np.all(np.isfinite(per_patient))


@pytest.mark.slow
def test_joint_model_recovers_the_association_and_the_rate_under_informative_dropout(
    joint_simulated, joint_cohort, joint_fit
):
    """Strong informative death (the shared joint fit, ``shared_fits.joint_sim``): the joint
    model's 90% intervals cover the true association and mean rate; the progression model's
    estimate of the rate on the same cohort is shown."""
    import arviz as az
    from shared_fits import JOINT_RUN

    sim = joint_simulated
    joint, _ = joint_fit
    post = joint.posterior["posterior"]
    truth = {
        "association": sim.truth["end_of_follow_up"]["association"]["death_alpha"],
        "slope": sim.truth["progression"]["slope"],
    }
    options = dict(JOINT_RUN, progress=False, prior_predictive=False)
    progression_fit = mb.fit(joint_cohort, "progression", **options)
    trajectory_only = progression_fit.posterior["posterior"]
    bias = float(trajectory_only["slope"].mean()) - truth["slope"]
    for name, true in truth.items():
        hdi = az.hdi(post[name], prob=0.9)
        low, high = float(hdi.sel(ci_bound="lower")), float(hdi.sel(ci_bound="upper"))
        assert low <= true <= high, (name, low, true, high, f"progression slope bias {bias:+.3f}")
    assert "end_of_follow_up" in joint.posterior["log_likelihood"]
    assert joint.posterior["posterior_predictive"]["end_of_follow_up"].sizes["patient"] == 90
    # magbayes compare: the joint model's scores against the progression model's, by PSIS-LOO
    from magbayes.report.compare import compare_fits

    table = compare_fits({"joint": joint, "progression": progression_fit}).table
    assert set(table["model"]) == {"joint", "progression"}
    assert table["n_observations"].nunique() == 1


def test_answer_fits_the_joint_model_only_with_the_end_of_follow_up(dropout_sim):
    from magbayes.models import get_model

    joint = get_model("joint")
    assert joint.applies_to(dropout_sim.cohort)
    assert not joint.applies_to(mb.simulate_cohort(n_patients=12, seed=3).cohort)
    assert get_model("progression").applies_to(dropout_sim.cohort)


@pytest.mark.slow
def test_without_an_association_the_joint_headline_agrees_with_the_progression_model():
    """With no association (alpha = 0) deaths say nothing about the trajectory, so the joint
    model's headline and interaction are the progression model's, within Monte Carlo error
    and what the association's own uncertainty moves."""
    sim = mb.simulate_cohort(
        n_patients=60, seed=41, end_of_follow_up=True, death_alpha=0.0, worsening_from="scores"
    )
    assert sim.truth["end_of_follow_up"]["association"]["death_alpha"] == 0.0
    options = dict(draws=300, tune=400, chains=2, seed=5, progress=False, prior_predictive=False)
    joint = mb.fit(sim.cohort, "joint", **options)
    progression = mb.fit(sim.cohort, "progression", **options)
    alpha = joint.posterior["posterior"]["association"]
    low, high = (float(q) for q in alpha.quantile([0.05, 0.95]))
    assert low <= 0.0 <= high
    headline = {
        name: fit.headline()["p_sural_predicts_rituximab_benefit"]
        for name, fit in (("joint", joint), ("progression", progression))
    }
    assert abs(headline["joint"] - headline["progression"]) < 0.1, headline
    for name in ("gamma_rituximab_x_sural", "gamma_rituximab", "slope"):
        draws = {
            label: fit.posterior["posterior"][name]
            for label, fit in (("joint", joint), ("progression", progression))
        }
        spread = float(draws["progression"].std())
        gap = float(draws["joint"].mean() - draws["progression"].mean())
        assert abs(gap) < 0.3 * spread, (name, gap, spread)


@pytest.fixture(scope="module")
def joint_slope_fit(joint_cohort):
    """The shared joint cohort fitted with ``[event] association = "value_and_slope"``."""
    from shared_fits import JOINT_RUN

    return mb.fit(
        joint_cohort,
        "joint",
        **JOINT_RUN,
        overrides={"event": {"association": "value_and_slope"}},
        progress=False,
        prior_predictive=False,
    )


@pytest.mark.slow
def test_the_slope_association_finds_none_where_death_follows_the_current_value(
    joint_simulated, joint_slope_fit
):
    """The simulator's death hazard follows the current latent disability only
    (``death_alpha`` 0.8, no slope term): with the slope association added, the 90%
    intervals cover 0.8 for the value's association and 0 for the slope's."""
    import arviz as az

    post = joint_slope_fit.posterior["posterior"]
    truth = {
        "association": joint_simulated.truth["end_of_follow_up"]["association"]["death_alpha"],
        "association_slope": 0.0,
    }
    for name, true in truth.items():
        hdi = az.hdi(post[name], prob=0.9)
        low, high = float(hdi.sel(ci_bound="lower")), float(hdi.sel(ci_bound="upper"))
        assert low <= true <= high, (name, low, true, high)
    from magbayes.models import get_model

    effects = {e.variable for e in get_model("joint").effects(joint_slope_fit)}
    assert {"association", "association_slope"} <= effects


@pytest.mark.slow
def test_the_slope_fits_predictions_give_its_end_of_follow_up_likelihood(
    joint_slope_fit, joint_cohort
):
    """The prediction code's hazard with the slope term, integrated over each fitted
    patient's time at risk, gives the fit's ``end_of_follow_up`` log-likelihood in every
    draw (unknown early-sural statuses included)."""
    from magbayes.models.joint.predictions import JointPredictor

    predictor = JointPredictor(joint_slope_fit, joint_cohort)
    fitted = joint_slope_fit.posterior["log_likelihood"]["end_of_follow_up"]
    unknown = 0
    for pid in (str(p) for p in fitted["patient"].values):
        theirs = np.asarray(fitted.sel(patient=pid).transpose("chain", "draw").values).ravel()
        mine = predictor.fitted_end_of_follow_up_log_likelihood(pid)
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10, err_msg=pid)
        unknown += predictor._status[pid] is None
    assert unknown >= 5


@pytest.mark.slow
def test_sbc_draws_the_event_where_the_fitted_cumulative_hazard_reaches_its_target():
    """SBC's event times (``magbayes.models.joint.sbc``): on its grid, the cumulative
    hazard is the fitted model's (to 1e-5 at each patient's end of follow-up: two
    quadratures), and a drawn event lies where the fitted model's cumulative hazard reaches
    the exponential draw (to 0.5%, the grid's linear steps); a target beyond the end of
    follow-up leaves the patient censored there. Patients whose early-sural status is known
    (the others' hazard mixes both statuses)."""
    from magbayes.sbc.prior_draws import ModelStructure

    problem = ModelStructure(resolve_spec("joint"), n_patients=20, cohort_seed=2).build()
    completion, generator = problem.completion, problem.generator
    completion.prepare(generator)
    point = generator.initial_point()
    rng = np.random.default_rng(3)
    point = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in point.items()}
    (log_hazard_grid,) = generator.replace_rvs_by_values(completion.outputs(generator)[:1])
    grid = generator.compile_fn(
        log_hazard_grid, inputs=generator.value_vars, on_unused_input="ignore"
    )(point)
    total = np.array([c[-1] for c in completion.cumulative_hazards(grid)])
    n = len(total)
    beyond = np.arange(n) % 2 == 1
    target = np.where(beyond, 3.0 * total, 0.4 * total)
    end, outcome = completion.event_times(grid, target)
    at_risk = total > 0
    np.testing.assert_array_equal(outcome[at_risk], np.where(beyond, CENSORED, EVENT)[at_risk])
    np.testing.assert_array_equal(end[beyond], completion.censor[beyond])

    def fitted_cumulative(data):
        """-log-likelihood of every patient censored at the data's ends: H(entry, end)."""
        for name, value in data.items():
            if name != "end_of_follow_up":
                shared = generator[name]
                shared.set_value(np.asarray(value, dtype=shared.type.dtype))
        generator["event_outcome_observed"].set_value(np.zeros(n, "int32"))
        logp = generator.compile_logp(vars=[generator["end_of_follow_up"]], sum=False)
        return -np.asarray(logp(point)[0])

    known = completion.known & at_risk
    everyone_censored = completion.refit_data(completion.censor.copy(), np.zeros(n, int))
    at_end = fitted_cumulative(everyone_censored)
    np.testing.assert_allclose(at_end[known], total[known], rtol=1e-5)
    at_drawn = fitted_cumulative(completion.refit_data(end, outcome))
    events = known & ~beyond
    assert events.sum() >= 5
    np.testing.assert_allclose(at_drawn[events], target[events], rtol=5e-3)
    assert np.all(end[events] > completion.entry[events])
    assert np.all(end[events] < completion.censor[events])
