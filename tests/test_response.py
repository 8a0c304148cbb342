"""Tests of the response model (magbayes.models.response) and prior sensitivity.

Fits are small (a few hundred draws, two chains) and seeded; most checks need no sampling
at all (design, spec, log-likelihood evaluated at fixed points).
"""

from __future__ import annotations

import functools

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy.special import expit, logsumexp
from shared_fits import RESPONSE_RUN

from magbayes.analyses import prior_sensitivity
from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.fit import fit, prepare, resolve_spec
from magbayes.models import response
from magbayes.models.base import SHARED_DEFAULTS
from magbayes.sampler import sample_posterior
from magbayes.simulate import simulate_cohort
from magbayes.spec import load_spec

DRAWS = dict(draws=300, tune=300, chains=2)


def _spec(**sections):
    """The resolved response spec with some sections overridden."""
    return resolve_spec("response", sections)


def _rebuild(cohort: Cohort, treatments: pd.DataFrame) -> Cohort:
    """The same cohort with another treatments table."""
    patients = cohort.patients.drop(
        columns=["sural_reduced", "n_treatment_lines", "n_visits", "follow_up_years"]
    )
    return Cohort.from_frames(patients, cohort.visits, treatments, source="test")


def _sample(cohort: Cohort, spec, seed: int, **kwargs):
    """Posterior draws of the response model (no predictive draws), sampled as ``mb.fit``
    samples: the spec's ``[sampler]`` settings, the compile cache, nutpie."""
    _, design, model = prepare(cohort, spec)
    settings = {**spec.section("sampler"), **DRAWS, **kwargs, "seed": seed}
    return sample_posterior(model, settings), design


def _point_logps(model: pm.Model, n_points: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Per-patient log-likelihood of the ratings at a few random parameter points."""
    rng = np.random.default_rng(seed)
    logp = model.compile_fn(model.logp(vars=[model["response"]], sum=False)[0])
    start = model.initial_point()
    out = []
    for _ in range(n_points):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in start.items()}
        out.append(np.asarray(logp(point)))
    return out


@pytest.fixture(scope="module")
def sim200():
    """200 patients, a large interaction (alpha_rituximab_x_sural = 3 log-odds)."""
    return simulate_cohort(n_patients=200, n_sites=2, sural_rituximab_effect=-1.5, seed=11)


# --------------------------------------------------------------------------- spec


def test_spec_file_is_the_defaults():
    spec = load_spec("response")
    data = {k: v for k, v in spec.data.items() if k not in ("model", "description")}
    assert data == response.DEFAULTS == dict(response.DEFINITION.defaults)
    # the tables every model shares: the same in the shipped file as for a model in code
    for table, values in SHARED_DEFAULTS.items():
        for key, value in values.items():
            if key in response.DEFAULTS[table]:
                assert response.DEFAULTS[table][key] == value or table == "sampler", (table, key)
    assert response.HEADLINE.contrast_var == "alpha_rituximab_x_sural"
    assert response.HEADLINE.benefit_sign == +1


@pytest.mark.parametrize(
    "override, message",
    [
        ({"outcome": {"likelihood": "probit"}}, "likelihood"),
        ({"outcome": {"partial": "half"}}, "partial"),
        ({"early_sural": {"missing": "zero"}}, "missing"),
        ({"treatments": {"reference": "rituximab"}}, "reference"),
        ({"priors": {"interaction_sd": -1.0}}, "interaction_sd"),
        ({"priors": {"interation_sd": 1.0}}, "interation_sd"),
        ({"priors": {"sensitivity": {"slope_sd": [1.0]}}}, "slope_sd"),
        ({"outcome": {"score": "incat"}}, "score"),
    ],
)
def test_bad_spec_values_are_refused(override, message):
    with pytest.raises(SpecError, match=message):
        response.settings(_spec(**override))


# --------------------------------------------------------------------------- design


def test_design_has_real_labels_and_honest_counts(response_sim):
    design = response.make_design(response_sim.cohort, _spec())
    c, counts = response_sim.cohort, design.counts
    assert design.coords["patient"] == c.patient_ids
    assert design.coords["site"] == c.sites
    assert design.coords["treatment"][0] == "ivig"
    assert "rituximab" not in design.coords["treatment"]
    assert design.coords["covariate"] == response.DEFAULTS["covariates"]["baseline"]
    assert all(label.startswith("P") and " row " in label for label in design.coords["course"])

    left_out = (
        counts["courses_left_out_response_unknown"]
        + counts["courses_left_out_response_missing"]
        + counts["courses_left_out_treatment_not_modelled"]
    )
    assert counts["courses"] == len(c.treatments) == counts["courses_rated"] + left_out
    assert counts["courses_left_out_response_unknown"] == int(
        (c.treatments["response"] == "unknown").sum()
    )
    assert counts["courses_rated"] == len(design.coords["course"])
    assert counts["rituximab_courses_rated"] == (
        counts["rituximab_courses_sural_reduced"]
        + counts["rituximab_courses_sural_preserved"]
        + counts["rituximab_courses_sural_unknown"]
    )
    # the (patient, slot) matrix holds each rated course exactly once
    matrix, slot_course = design.data["response"], design.data["slot_course"]
    assert (slot_course >= 0).sum() == counts["courses_rated"]
    np.testing.assert_array_equal(
        matrix[slot_course >= 0], design.data["course_rating"][slot_course[slot_course >= 0]]
    )
    assert (matrix[slot_course < 0] == response.NO_COURSE).all()
    assert "courses_left_out_response_unknown" in str(design)


def test_partial_is_coded_as_the_spec_says(response_sim):
    ratings = response_sim.cohort.treatments["response"]
    for likelihood, partial, expected in [
        ("logistic", "failure", {"good": 1, "partial": 0, "none": 0}),
        ("logistic", "success", {"good": 1, "partial": 1, "none": 0}),
        ("ordered_logistic", "failure", {"good": 2, "partial": 1, "none": 0}),
    ]:
        spec = _spec(outcome={"likelihood": likelihood, "partial": partial})
        design = response.make_design(response_sim.cohort, spec)
        known = ratings[ratings.isin(["good", "partial", "none"])].map(expected).to_numpy()
        np.testing.assert_array_equal(design.data["course_rating"], known)
    assert design.coords["response_cut"] == ["none|partial", "partial|good"]
    assert design.counts["partial_counted_as"].startswith("middle category")


def test_unknown_ratings_are_left_out_not_counted_as_failures(sim200):
    """Unknown (or empty) ratings, all in one group, change nothing but the counts."""
    cohort = sim200.cohort
    tr = cohort.treatments.copy()
    reduced = cohort.patients["sural_reduced"].eq(True)
    group = tr["treatment"].eq("rituximab") & tr["patient_id"].map(reduced).fillna(False)
    group &= tr["response"].isin(["good", "partial", "none"])
    chosen = tr.index[group][:12]
    assert len(chosen) == 12
    with_unknown = tr.copy()
    with_unknown.loc[chosen[:8], "response"] = "unknown"
    with_unknown.loc[chosen[8:], "response"] = pd.NA  # empty cell in treatments.csv
    a = _rebuild(cohort, with_unknown)
    b = _rebuild(cohort, with_unknown.drop(index=chosen))
    as_failure = with_unknown.copy()
    as_failure.loc[chosen, "response"] = "none"
    f = _rebuild(cohort, as_failure)

    spec = _spec()
    design_a, design_b = response.make_design(a, spec), response.make_design(b, spec)
    assert design_a.coords == design_b.coords
    for name in design_a.data:
        np.testing.assert_array_equal(design_a.data[name], design_b.data[name], err_msg=name)
    unknown_b = design_b.counts["courses_left_out_response_unknown"]
    missing_b = design_b.counts["courses_left_out_response_missing"]
    assert design_a.counts["courses_left_out_response_unknown"] == unknown_b + 8
    assert design_a.counts["courses_left_out_response_missing"] == missing_b + 4
    assert design_a.counts["courses"] == design_b.counts["courses"] + 12
    assert design_a.counts["courses_rated"] == design_b.counts["courses_rated"]

    logp_a = _point_logps(response.build_model(design_a, spec))
    logp_b = _point_logps(response.build_model(design_b, spec))
    logp_f = _point_logps(response.build_model(response.make_design(f, spec), spec))
    for la, lb, lf in zip(logp_a, logp_b, logp_f, strict=True):
        np.testing.assert_array_equal(la, lb)
        assert lf.shape != la.shape or not np.allclose(lf, la)  # the test can tell


def test_unknown_early_sural_is_summed_out_per_patient(sim200):
    """The per-patient log-likelihood equals a hand computation of the mixture."""
    spec = _spec(covariates={"baseline": ["age_at_onset", "pattern_cidp_like"]})
    design = response.make_design(sim200.cohort, spec)
    model = response.build_model(design, spec)
    d = design.data
    assert design.counts["patients_rated_sural_unknown_marginalised"] > 0
    assert design.counts["rituximab_courses_sural_unknown"] > 0
    assert np.isnan(d["covariate_value"]).sum() == 0

    names = [
        "alpha_intercept",
        "alpha_treatment",
        "alpha_rituximab",
        "alpha_rituximab_x_sural",
        "alpha_later_line",
        "beta_covariate",
        "patient_effect",
        "site_effect",
        "sural_reduced_prevalence",
    ]
    wanted = model.replace_rvs_by_values([model[n] for n in names])
    outputs = wanted + model.logp(vars=[model["response"]], sum=False)
    fn = model.compile_fn(outputs)
    rng = np.random.default_rng(5)
    start = model.initial_point()
    point = {k: v + rng.normal(0, 0.7, np.shape(v)) for k, v in start.items()}
    *values, per_patient = fn(point)
    v = dict(zip(names, values, strict=True))

    cp, rit = d["course_patient"], d["course_rituximab"]
    treatment = np.append(v["alpha_treatment"], 0.0)[d["course_treatment"]]
    eta = (
        v["alpha_intercept"]
        + treatment
        + rit * v["alpha_rituximab"]
        + d["course_later_line"] * v["alpha_later_line"]
        + (d["covariate_value"] @ v["beta_covariate"])[cp]
        + v["patient_effect"][cp]
        + v["site_effect"][d["course_site"]]
    )
    y = d["course_rating"]

    def loglik(e):
        return y * np.log(expit(e)) + (1 - y) * np.log(expit(-e))

    rated = list(d["rated_patient"])
    row = np.array([rated.index(p) for p in cp])
    by_patient_preserved = np.bincount(row, loglik(eta), minlength=len(rated))
    by_patient_reduced = np.bincount(
        row, loglik(eta + rit * v["alpha_rituximab_x_sural"]), minlength=len(rated)
    )
    p = v["sural_reduced_prevalence"]
    known, reduced = d["sural_known"][rated].astype(bool), d["sural_reduced"][rated] == 1
    mixed = logsumexp([np.log(p) + by_patient_reduced, np.log1p(-p) + by_patient_preserved], axis=0)
    expected = np.where(known, np.where(reduced, by_patient_reduced, by_patient_preserved), mixed)
    np.testing.assert_allclose(per_patient, expected, rtol=1e-8)


def test_exclude_leaves_unknown_sural_patients_out_and_says_so(sim200):
    spec = _spec(early_sural={"missing": "exclude"})
    design = response.make_design(sim200.cohort, spec)
    unknown = int(sim200.cohort.patients["sural_reduced"].isna().sum())
    assert design.counts["patients_excluded_sural_unknown"] == unknown > 0
    assert len(design.coords["patient"]) == 200 - unknown
    assert design.counts["rituximab_courses_sural_unknown"] == 0
    model = response.build_model(design, spec)
    assert "sural_reduced_prevalence" not in model.named_vars


# --------------------------------------------------------------------------- fits


@pytest.fixture(scope="module")
def ordinal_fit(response_sim):
    """The ordered scale through the whole pipeline (magbayes.fit.fit)."""
    spec = _spec(outcome={"likelihood": "ordered_logistic"})
    result = fit(response_sim.cohort, spec, draws=200, tune=300, chains=2, seed=3)
    return result, spec


@pytest.mark.slow
def test_ordinal_fit_has_loo_predictive_and_labels(ordinal_fit, response_sim):
    result, spec = ordinal_fit
    tree = result.posterior
    post = tree["posterior"]
    assert post["cutpoints"].dims[-1] == "response_cut"
    np.testing.assert_allclose(post["alpha_intercept"], -post["cutpoints"].isel(response_cut=1))
    assert post["patient_effect"].dims[-1] == "patient"
    assert list(post["alpha_treatment"].sel(treatment="ivig").values.ravel()) == [0.0] * (
        post.sizes["chain"] * post.sizes["draw"]
    )

    loglik = tree["log_likelihood"]["response"]
    assert loglik.dims == ("chain", "draw", "patient_rated")
    assert np.isfinite(loglik).all()
    loo = az.loo(tree, var_name="response")
    assert np.isfinite(loo.elpd)

    design = response.make_design(response_sim.cohort, spec)
    observed = tree["observed_data"]["response"]
    assert observed.dims == ("course",)
    assert list(observed["course"].values) == design.coords["course"]
    np.testing.assert_array_equal(observed.values, design.data["course_rating"])
    predicted = tree["posterior_predictive"]["response"]
    assert predicted.dims == ("chain", "draw", "course")
    assert set(np.unique(predicted.values)) <= {0, 1, 2}
    # the model's predictions of each category are in the range of what was observed
    share_good = float((predicted == 2).mean())
    assert abs(share_good - float((observed == 2).mean())) < 0.15

    headline = result.headline()
    assert 0.0 <= headline["p_sural_predicts_rituximab_benefit"] <= 1.0
    benefit = response.DEFINITION.group_benefit(post.to_dataset())
    np.testing.assert_allclose(
        benefit["sural_reduced"], post["alpha_rituximab"] + post["alpha_rituximab_x_sural"]
    )
    np.testing.assert_allclose(benefit["sural_preserved"], post["alpha_rituximab"])


@pytest.mark.slow
def test_power_scaling_runs_without_refit(ordinal_fit, response_sim, tmp_path):
    result, spec = ordinal_fit
    _, _, model = prepare(response_sim.cohort, spec)
    table = prior_sensitivity.power_scaling(result.posterior, model, model_name="response")
    assert list(table.index) == ["alpha_rituximab_x_sural", "alpha_rituximab"]
    assert {"prior", "prior_own", "likelihood", "diagnosis"} <= set(table.columns)
    assert (table[["prior", "likelihood"]] >= 0).all().all()
    assert table.loc["alpha_rituximab_x_sural", "prior_own"] >= 0
    # the sural-preserved effect is a deterministic (mean - interaction / 2): no own prior
    assert np.isnan(table.loc["alpha_rituximab", "prior_own"])
    assert "log_prior" not in result.posterior.children  # the fit itself is untouched
    path = prior_sensitivity.plot_power_scaling(
        result.posterior, model, tmp_path / "prior_sensitivity.png", model_name="response"
    )
    assert path.stat().st_size > 0


@pytest.mark.slow
def test_large_effect_is_recovered(sim200):
    tree, design = _sample(sim200.cohort, _spec(), seed=1)
    contrast = tree["posterior"]["alpha_rituximab_x_sural"]
    truth = sim200.truth["response"]["alpha_rituximab_x_sural"]
    assert truth == pytest.approx(3.0)
    assert float((contrast > 0).mean()) > 0.9
    # a 3 log-odds effect, recovered within the prior's pull towards 0 (Normal(0, 2.5))
    # and the small-sample push of a logistic fit away from it
    assert 1.0 < float(contrast.mean()) < truth + 0.5
    assert int(tree["sample_stats"]["diverging"].sum()) == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_effect_gives_no_extreme_answer(seed):
    cohort = simulate_cohort(n_patients=120, n_sites=2, sural_rituximab_effect=0.0, seed=seed)
    tree, _ = _sample(cohort.cohort, _spec(), seed=seed, draws=200, tune=200)
    p = float((tree["posterior"]["alpha_rituximab_x_sural"] > 0).mean())
    assert 0.02 < p < 0.98


def test_both_early_sural_groups_have_the_same_rituximab_prior(response_sim):
    """Rituximab's effect has the same prior in sural-preserved and sural-reduced patients.

    Coded as the sural-preserved effect plus the interaction, the sural-reduced group's
    prior would be wider (sd 3.5 against 2.5 with the default scales), the same data would
    shrink it less, and the headline would lean towards benefit under no interaction.
    """
    spec = _spec()
    model = response.build_model(response.make_design(response_sim.cohort, spec), spec)
    preserved, reduced = pm.draw(
        [model["alpha_rituximab"], model["alpha_rituximab"] + model["alpha_rituximab_x_sural"]],
        draws=40_000,
        random_seed=3,
    )
    priors = spec.section("priors")
    expected = np.hypot(priors["rituximab_sd"], priors["interaction_sd"] / 2)
    assert np.std(preserved) == pytest.approx(expected, rel=0.02)
    assert np.std(reduced) == pytest.approx(expected, rel=0.02)
    # correlation (r^2 - i^2 / 4) / (r^2 + i^2 / 4): 0.6 with equal scales, as by default
    assert abs(np.corrcoef(preserved, reduced)[0, 1] - 0.6) < 0.02


# --------------------------------------------------------------------------- prior sensitivity


def test_prior_alternatives_are_labelled():
    rows = prior_sensitivity.prior_alternatives(_spec())
    assert rows == [
        ("interaction_sd", 2.5, "default"),
        ("interaction_sd", 1.0, "narrower"),
        ("interaction_sd", 5.0, "wider"),
    ]
    with pytest.raises(SpecError, match="positive"):
        prior_sensitivity.prior_alternatives(
            _spec(priors={"sensitivity": {"interaction_sd": [0.0]}})
        )


def test_refits_under_other_priors_share_the_compiled_model(response_sim):
    """The prior scales are inputs of the compiled model (``prior_<name>``), not constants:
    the models of the [priors.sensitivity] alternatives have the fingerprint the compile
    cache keys on, and each still has its own prior."""
    from magbayes.compile_cache import compile_key

    models = []
    for value in (2.5, 5.0):
        spec = _spec(priors={"interaction_sd": value})
        model = response.build_model(response.make_design(response_sim.cohort, spec), spec)
        assert float(model["prior_interaction_sd"].get_value()) == value
        models.append(model)
    keys = {compile_key(model) for model in models}
    assert len(keys) == 1 and None not in keys
    prior_of = [model.compile_logp(vars=[model["alpha_rituximab_x_sural"]]) for model in models]
    point = {**models[0].initial_point(), "alpha_rituximab_x_sural": np.array(1.0)}
    # Normal(0, sd) log density at 1: -log(sd) - 1 / (2 sd^2) + constant
    expected = (-np.log(5.0) - 0.5 / 5.0**2) - (-np.log(2.5) - 0.5 / 2.5**2)
    assert prior_of[1](point) - prior_of[0](point) == pytest.approx(expected)


@pytest.mark.slow
def test_refit_priors_tabulates_the_headline_under_each_prior(response_sim):
    # the shared response fit's settings: its default-prior fit is loaded, not compiled
    quick = functools.partial(fit, prior_predictive=False)
    table = prior_sensitivity.refit_priors(
        response_sim.cohort, "response", **RESPONSE_RUN, fitter=quick
    )
    assert list(table["label"]) == ["default", "narrower", "wider"]
    assert list(table["value"]) == [2.5, 1.0, 5.0]
    assert table["p_sural_predicts_rituximab_benefit"].between(0, 1).all()
    width = table["hdi_high"] - table["hdi_low"]
    # a wider prior on the interaction gives a wider posterior interval with 47 patients
    assert width.iloc[1] < width.iloc[0] < width.iloc[2]
