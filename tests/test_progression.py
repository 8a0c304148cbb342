"""The progression model: design, recovery of known truth, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from shared_fits import fit_progression

import magbayes as mb
from magbayes.errors import SpecError
from magbayes.fit import prepare, resolve_spec
from magbayes.models import progression

FAST = {"draws": 300, "tune": 300, "chains": 2}


def fit_simulated(n_patients, effect, seed, **kwargs):
    sim = mb.simulate_cohort(
        n_patients=n_patients, seed=seed, sural_rituximab_effect=effect, worsening_from="scores"
    )
    settings = {**FAST, **kwargs}
    return sim, mb.fit(sim.cohort, "progression", seed=seed, prior_predictive=False, **settings)


# ----------------------------------------------------------------------------- design


@pytest.fixture(scope="module")
def small_sim():
    return mb.simulate_cohort(n_patients=30, seed=5)


def test_design_counts_every_visit_and_course(small_sim):
    spec = resolve_spec("progression")
    cohort, design, model = prepare(small_sim.cohort, spec)
    scored = cohort.visits["incat"].notna().sum()
    assert design.counts["visits with incat"] == scored
    assert len(design.data["score"]) == scored
    n_courses = len(cohort.treatments)
    modelled = design.counts["treatment courses modelled"]
    assert modelled + design.counts["treatment courses not modelled (treatment not in spec)"] == (
        n_courses
    )
    # every PyMC variable has named dims (scalars excepted)
    for rv in model.free_RVs + model.observed_RVs + model.deterministics:
        if rv.ndim:
            assert model.named_vars_to_dims.get(rv.name), rv.name


def test_treatment_exposure_starts_at_course_start():
    sim = mb.simulate_cohort(n_patients=40, seed=11)
    spec = resolve_spec("progression")
    cohort, design, _ = prepare(sim.cohort, spec)
    courses = cohort.treatments[cohort.treatments["treatment"] == "rituximab"]
    pid = courses["patient_id"].iloc[0]
    start = courses[courses["patient_id"] == pid]["start_years"].min()
    ids = np.asarray(design.coords["patient"])[design.data["patient_of_visit"]]
    years = design.data["years_since_onset"][ids == pid]
    exposure = design.data["rituximab_years"][ids == pid]
    assert np.all(exposure[years <= start] == 0)
    after = years > start
    # a patient may have several rituximab courses: exposure is at least the first one's
    assert np.all(exposure[after] >= years[after] - start - 1e-12)


def test_missing_covariates_are_imputed_not_dropped(small_sim):
    spec = resolve_spec("progression", {"covariates": {"baseline": ["age_at_onset"]}})
    cohort = small_sim.cohort
    patients = cohort.patients.copy()
    patients.loc[patients.index[:3], "age_at_onset"] = np.nan
    from magbayes.cohort.tables import Cohort

    holey = Cohort.from_frames(patients.reset_index(), cohort.visits, cohort.treatments)
    _, design, model = prepare(holey, spec)
    assert design.counts["covariate values imputed in the model"] == 3
    assert len(design.coords["patient"]) == cohort.n_patients
    assert "covariate_missing" in model.named_vars
    assert model.named_vars_to_dims["covariate_missing"] == ("missing_covariate_continuous",)


def test_unknown_sural_status_is_marginalised_or_excluded(small_sim):
    cohort = small_sim.cohort
    n_unknown = int(cohort.patients["sural_reduced"].isna().sum())
    assert n_unknown > 0, "simulator should leave some early-sural statuses unknown"
    _, design, _ = prepare(cohort, resolve_spec("progression"))
    assert design.counts["early sural unknown (marginalised in the model)"] == n_unknown
    assert len(design.coords["patient"]) == cohort.n_patients
    spec = resolve_spec("progression", {"early_sural": {"missing": "exclude"}})
    _, design, _ = prepare(cohort, spec)
    assert design.counts["patients left out: early-sural status unknown"] == n_unknown
    assert len(design.coords["patient"]) == cohort.n_patients - n_unknown


def test_site_parametrisation_follows_the_spec(small_sim):
    from magbayes.errors import SpecError

    def site_variables(parametrisation):
        spec = resolve_spec("progression", {"sites": {"parametrisation": parametrisation}})
        _, _, model = prepare(small_sim.cohort, spec)
        return {name for name in model.named_vars if name.startswith("site_")}

    # "auto": partly centred, as the patients' data about each site allow
    assert {"site_level_partly_centred", "site_slope_partly_centred"} <= site_variables("auto")
    assert "site_level_raw" in site_variables("non_centred")
    centred = site_variables("centred")
    assert "site_level_raw" not in centred and {"site_level", "site_slope"} <= centred
    assert "site_level_partly_centred" not in centred
    with pytest.raises(SpecError, match="parametrisation"):
        site_variables("sideways")


def test_partly_centred_sites_are_the_same_model_in_other_coordinates(small_sim):
    """At the same site offsets, the partly centred sites' density is the centred one plus
    the log Jacobian of the offsets' coordinates (the offsets are the sampled values times
    ``sd ** (1 - w)``, one factor for each of the sites' free dimensions)."""
    spec = resolve_spec("progression", {"sites": {"parametrisation": "centred"}})
    _, _, centred = prepare(small_sim.cohort, spec)
    _, _, partial = prepare(small_sim.cohort, resolve_spec("progression"))
    point = _jittered_point(centred, 6)
    wanted = ["site_level", "site_slope", "patient_level", "patient_rate"]
    target = _values(centred, wanted, point)
    names = ("site_level", "site_slope")
    other = {k: v for k, v in point.items() if k not in [f"{n}_zerosum__" for n in names]}
    for name in names:
        other[f"{name}_partly_centred_zerosum__"] = point[f"{name}_zerosum__"]
    log_jacobian = 0.0
    n_free = len(target["site_level"]) - 1  # zero-sum: one dimension fewer than the sites
    for name in names:
        offsets = other[f"{name}_partly_centred_zerosum__"]
        factor = _values(partial, [name], other)[name] / target[name]
        assert np.allclose(factor, factor[0]) and 0 < factor[0] < np.inf
        other[f"{name}_partly_centred_zerosum__"] = offsets / factor[0]
        log_jacobian += n_free * np.log(factor[0])
    got = _values(partial, wanted, other)
    for name in wanted:
        np.testing.assert_allclose(got[name], target[name], atol=1e-10)
    np.testing.assert_allclose(
        partial.compile_logp()(other), centred.compile_logp()(point) + log_jacobian, rtol=1e-10
    )


def _onset_level(model, point):
    """Each patient's level at onset (a derived quantity) at a point of the value variables."""
    (level,) = model.replace_rvs_by_values([model["patient_level"]])
    fn = model.compile_fn(level, inputs=model.value_vars, on_unused_input="ignore", point_fn=False)
    return fn(*[point[v.name] for v in model.value_vars])


def _values(model, names, at):
    """Values of model variables at a point of its value variables."""
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")
    return dict(zip(names, fn(at), strict=True))


def _solve_for(model, point, free, derived, target):
    """``point`` with the free variable ``free`` moved so that ``derived`` equals ``target``.

    Each patient's derived value is affine in their own sampled coordinate (whatever the
    parametrisation), so two evaluations give its intercept and slope. Returns the new
    point and the log slopes (the log Jacobian of the coordinate, per patient).
    """
    n = len(target)
    at_zero = _values(model, [derived], {**point, free: np.zeros(n)})[derived]
    at_one = _values(model, [derived], {**point, free: np.ones(n)})[derived]
    slope = at_one - at_zero
    return {**point, free: (target - at_zero) / slope}, np.log(np.abs(slope))


def _level_name(model):
    """The sampled per-patient level of a model with centred patients."""
    return next(
        n
        for n in ("patient_level_partly_centred", "patient_level_over_visits")
        if n in model.named_vars
    )


def _jittered_point(model, seed):
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}


def test_unknown_status_level_lies_between_the_statuses_without_changing_the_model(small_sim):
    """For a patient whose early-sural status is unknown, the sampled level over the visits
    is shifted towards "reduced" by the known share of reduction: at the same level at
    onset, the joint density is the one without the shift (a unit-Jacobian shift)."""
    import pymc as pm

    _, design, model = prepare(small_sim.cohort, resolve_spec("progression"))
    unknown = ~design.data["sural_known"].astype(bool)
    assert unknown.any()
    share = float(model["unknown_status_share"].get_value())
    assert 0.0 < share < 1.0
    point = _jittered_point(model, 5)
    level = _values(model, ["patient_level"], point)["patient_level"]
    logp = model.compile_logp()(point)

    with model:
        pm.set_data({"unknown_status_share": np.asarray(0.0)})
    name = _level_name(model)
    moved, _ = _solve_for(model, point, name, "patient_level", level)
    shift = point[name] - moved[name]
    assert np.all(np.abs(shift[unknown]) > 1e-6) and np.allclose(shift[~unknown], 0.0)
    np.testing.assert_allclose(model.compile_logp()(moved), logp, rtol=1e-10)


def test_starting_values_are_read_off_the_scores():
    """Patients start at levels that follow their true levels; rates within the limit."""
    from scipy.stats import spearmanr

    from magbayes.fit import starting_values

    sim = mb.simulate_cohort(n_patients=250, seed=7)
    # the values read off the scores, in the coordinates where they are values
    over_visits = resolve_spec("progression", {"patients": {"parametrisation": "over_visits"}})
    _, design, _ = prepare(sim.cohort, over_visits)
    start = starting_values(over_visits, design)
    true_level = [sim.truth["patients"][p]["level"] for p in design.coords["patient"]]
    assert spearmanr(start["patient_level_over_visits"], true_level).statistic > 0.5
    rate = start["patient_rate_over_visits"]
    assert np.all(np.abs(rate) <= progression.INITIAL_RATE_LIMIT)
    assert rate.std() > 0.1  # read off the scores, not all at one value
    assert np.all(start["patient_sd"] > 0)
    # the default (partly centred) coordinates of the same start
    spec = resolve_spec("progression")
    _, design, model = prepare(sim.cohort, spec)
    start = starting_values(spec, design)
    free = {rv.name: model.initial_point()[model.rvs_to_values[rv].name] for rv in model.free_RVs}
    assert set(start) == {
        "patient_level_partly_centred",
        "patient_rate_over_visits_z",
        "patient_sd",
        "level_intercept",
    }
    for name, value in start.items():
        assert np.shape(value) == np.shape(free[name]), name
        assert np.all(np.isfinite(value)), name
    point = {**model.initial_point(), **{k: v for k, v in start.items() if k != "patient_sd"}}
    point["patient_sd_log__"] = np.log(start["patient_sd"])
    level = _values(model, ["patient_level"], point)["patient_level"]
    assert spearmanr(level, true_level).statistic > 0.5
    # non-centred patients start at their standardised offsets' 0
    non_centred = resolve_spec("progression", {"patients": {"parametrisation": "non_centred"}})
    assert starting_values(non_centred, design) == {}


def test_the_sampler_starts_from_the_starting_values(small_sim):
    """The compiled model's initial points lie within the jitter (±1) of the starting values."""
    from magbayes.compile_cache import compile_for_nutpie
    from magbayes.fit import starting_values

    spec = resolve_spec("progression")
    _, design, model = prepare(small_sim.cohort, spec)
    start = starting_values(spec, design)
    name = _level_name(model)
    level = start[name]
    assert level.std() > 1.0  # far apart, so the default start (one value ± 1) would fail
    for given, spread in ((start, 1.0), (None, level.max() - level.min())):
        compiled, _ = compile_for_nutpie(model, start=given)
        offset = 0
        for variable, shape in compiled._shapes.items():
            size = int(np.prod(shape))
            if variable == name:
                break
            offset += size
        for seed in (1, 2):
            point = compiled.initial_point_func(seed)[offset : offset + size]
            distance = np.abs(point - level)
            if given is not None:
                assert np.all(distance <= spread)
            else:
                assert distance.max() > 1.0


@pytest.mark.parametrize(
    "options",
    [{}, {"outcome": {"score": "irods"}, "treatments": {"level_change": True}}],
    ids=["incat", "irods-with-level-change"],
)
def test_rate_over_visits_is_the_same_model_in_other_coordinates(small_sim, options):
    """Sampling each rate as seen over the visits changes coordinates, not the model: at the
    same levels and rates, the joint density differs by the Jacobian of rate_z -> rate over
    visits (log of the rate spread per patient), and the deterministics are equal."""
    spec = resolve_spec("progression", {**options, "patients": {"parametrisation": "centred"}})
    _, _, centred = prepare(small_sim.cohort, spec)
    spec = resolve_spec("progression", {**options, "patients": {"parametrisation": "over_visits"}})
    _, _, over_visits = prepare(small_sim.cohort, spec)
    assert "patient_rate_over_visits" in over_visits.named_vars
    assert "patient_rate_z" not in over_visits.named_vars

    point = _jittered_point(centred, 3)
    wanted = ["patient_rate", "patient_level"]

    target = _values(centred, wanted, point)

    other = {k: v for k, v in point.items() if k != "patient_rate_z"}
    n_patients = len(target["patient_rate"])
    # patient_rate = rate over visits - (what the treatments and sural add): solve for it
    at_zero = {**other, "patient_rate_over_visits": np.zeros(n_patients)}
    offset = _values(over_visits, ["patient_rate"], at_zero)["patient_rate"]
    other["patient_rate_over_visits"] = target["patient_rate"] - offset
    got = _values(over_visits, wanted, other)
    np.testing.assert_allclose(got["patient_rate"], target["patient_rate"], atol=1e-10)
    np.testing.assert_allclose(got["patient_level"], target["patient_level"], atol=1e-10)

    rate_spread = np.exp(point["patient_sd_log__"][1])
    jacobian = n_patients * np.log(rate_spread)
    np.testing.assert_allclose(
        over_visits.compile_logp()(other), centred.compile_logp()(point) - jacobian, rtol=1e-10
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"outcome": {"score": "irods"}}],
    ids=["incat", "irods"],
)
def test_partly_centred_patients_are_the_same_model_in_other_coordinates(small_sim, options):
    """The default patients ("auto": "partial") are the "over_visits" model sampled in
    other coordinates, the levels partly centred and the rates non-centred: at the same
    levels and rates, the joint density differs by the log Jacobian of each patient's
    coordinates, and the deterministics are equal."""
    spec = resolve_spec("progression", {**options, "patients": {"parametrisation": "auto"}})
    _, _, partial = prepare(small_sim.cohort, spec)
    assert {"patient_level_partly_centred", "patient_rate_over_visits_z"} <= set(partial.named_vars)
    spec = resolve_spec("progression", {**options, "patients": {"parametrisation": "over_visits"}})
    _, _, over_visits = prepare(small_sim.cohort, spec)

    point = _jittered_point(over_visits, 4)
    wanted = ["patient_rate", "patient_level"]
    target = _values(over_visits, wanted, point)
    other = {
        ("patient_level_partly_centred" if k == "patient_level_over_visits" else k): v
        for k, v in point.items()
        if k != "patient_rate_over_visits"
    }
    other["patient_rate_over_visits_z"] = np.zeros(len(target["patient_rate"]))
    # the level depends on the rate, not the other way round: rates first
    other, log_rate = _solve_for(
        partial, other, "patient_rate_over_visits_z", "patient_rate", target["patient_rate"]
    )
    other, log_level = _solve_for(
        partial, other, "patient_level_partly_centred", "patient_level", target["patient_level"]
    )
    got = _values(partial, wanted, other)
    np.testing.assert_allclose(got["patient_rate"], target["patient_rate"], atol=1e-10)
    np.testing.assert_allclose(got["patient_level"], target["patient_level"], atol=1e-10)
    # the rates non-centred: each moves by the rates' spread per unit of its coordinate
    rate_spread = np.exp(point["patient_sd_log__"][1])
    np.testing.assert_allclose(np.exp(log_rate), rate_spread, rtol=1e-6)
    # the levels partly centred: a slope between centred (1) and non-centred (their
    # spread given the rate), strictly for patients with more than one visit
    corr = _values(over_visits, ["patient_corr"], point)["patient_corr"]
    level_spread = np.exp(point["patient_sd_log__"][0]) * np.sqrt(1.0 - corr**2)
    between = (np.exp(log_level) - 1.0) * (np.exp(log_level) - level_spread)
    assert np.all(between <= 1e-12) and np.mean(between < 0) > 0.5
    np.testing.assert_allclose(
        partial.compile_logp()(other),
        over_visits.compile_logp()(point) + log_rate.sum() + log_level.sum(),
        rtol=1e-10,
    )


def test_patient_parametrisation_is_checked(small_sim):
    with pytest.raises(SpecError, match="parametrisation"):
        bad = resolve_spec("progression", {"patients": {"parametrisation": "both"}})
        prepare(small_sim.cohort, bad)


def test_marginal_likelihood_matches_explicit_mixture(small_sim):
    """The per-patient log-likelihood of an unknown-status patient is the mixture."""
    spec = resolve_spec("progression")
    _, design, model = prepare(small_sim.cohort, spec)
    point = model.initial_point()
    point["gamma_rituximab_x_sural"] = np.array(-0.7)
    point["rate_sural_reduced"] = np.array(0.4)
    per_patient = model.compile_logp(vars=[model["score"]], sum=False)(point)[0]
    onset_level = _onset_level(model, point)
    rate_before_treatment = _values(model, ["patient_rate"], point)["patient_rate"]
    known = design.data["sural_known"].astype(bool)
    i = int(np.nonzero(~known)[0][0])
    # recompute with that patient forced to each status
    results = []
    for status in (1, 0):
        forced = design.data.copy()
        forced["sural_known"] = known.copy()
        forced["sural_known"][i] = True
        forced["sural_reduced"] = design.data["sural_reduced"].copy()
        forced["sural_reduced"][i] = status
        from magbayes.models.base import Design

        d2 = Design(design.model, design.coords, forced, design.dims, design.counts)
        m2 = progression.build_model(d2, spec)
        # same parameters: the rate and level are sampled over the visits, so move them to
        # give the same rate before treatment and level at onset as in the original model
        forced_point, _ = _solve_for(
            m2, point, "patient_rate_over_visits_z", "patient_rate", rate_before_treatment
        )
        forced_point, _ = _solve_for(
            m2, forced_point, _level_name(m2), "patient_level", onset_level
        )
        np.testing.assert_allclose(_onset_level(m2, forced_point), onset_level, atol=1e-12)
        results.append(m2.compile_logp(vars=[m2["score"]], sum=False)(forced_point)[0][i])
    prevalence = 1 / (1 + np.exp(-point["sural_reduced_prevalence_logodds__"]))
    expected = np.logaddexp(np.log(prevalence) + results[0], np.log1p(-prevalence) + results[1])
    assert per_patient[i] == pytest.approx(expected, rel=1e-8)


# ----------------------------------------------------------------------------- likelihood


def test_ordinal_visit_logp_matches_pymc_ordered_logistic():
    """The per-visit ordinal log-probability is PyMC's OrderedLogistic, category by category."""
    import pymc as pm
    import pytensor.tensor as pt

    from magbayes.models import scores

    rng = np.random.default_rng(0)
    cutpoints = np.cumsum(rng.gamma(4.0, 0.75, size=10)) - 6.0
    eta = rng.normal(0.0, 3.0, size=400)
    value = rng.integers(0, 11, size=400)
    ours = scores.visit_logp(
        "ordered_logistic", pt.as_tensor(value), pt.as_tensor(eta), pt.as_tensor(cutpoints)
    ).eval()
    reference = pm.logp(pm.OrderedLogistic.dist(eta=eta, cutpoints=cutpoints), value).eval()
    # PyMC subtracts the two probabilities, which loses digits far in the tails (log p
    # below about -15): compare where its value is exact, and check the tails are finite
    exact = reference > -15.0
    assert exact.mean() > 0.5
    np.testing.assert_allclose(ours[exact], reference[exact], rtol=1e-9, atol=1e-9)
    assert np.all(np.isfinite(ours)) and np.all(ours <= 0.0)
    np.testing.assert_allclose(ours[~exact], reference[~exact], rtol=1e-5)


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_ordinal_visit_logp_and_gradient_hold_far_into_the_tails(mode):
    """One exp and one log per visit give the two-softplus form's log-probability and
    gradient (latent disability and cutpoints) for every category, |eta| up to 60, in
    PyTensor's C back end (log-likelihood) and numba (nutpie's sampler)."""
    import pytensor
    import pytensor.tensor as pt

    from magbayes.models import scores

    cutpoints = pt.dvector("cutpoints")
    eta = pt.dvector("eta")
    value = np.repeat(np.arange(11), 601)
    eta_values = np.tile(np.linspace(-60.0, 60.0, 601), 11)
    ours = scores.visit_logp("ordered_logistic", pt.as_tensor(value), eta, cutpoints)
    extended = pt.concatenate([[-np.inf], cutpoints, [np.inf]])
    upper, lower = extended[value + 1], extended[value]
    # log(sigmoid(upper - eta) - sigmoid(lower - eta)), written with two softplus
    width = pt.log1mexp(pt.minimum(extended[:-1] - extended[1:], -1e-12))[value]
    reference = -pt.softplus(eta - upper) - pt.softplus(lower - eta) + width
    outputs = []
    for logp in (ours, reference):
        outputs += [logp, *pt.grad(logp.sum(), [eta, cutpoints])]
    fn = pytensor.function([eta, cutpoints], outputs, mode=mode)
    got = fn(eta_values, np.array([-6.0, -3.5, -1.0, 0.0, 1.5, 3.0, 4.5, 6.0, 8.0, 10.0]))
    for mine, theirs in zip(got[:3], got[3:], strict=True):
        assert np.all(np.isfinite(mine))
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9)


def test_ordinal_visits_operation_refuses_what_it_cannot_do():
    """The one-pass operation: its slopes are not differentiable, and a category outside
    the scale is an error in the compiled loop, not a read outside the cutpoints."""
    import pytensor
    import pytensor.tensor as pt

    from magbayes.models.ordinal_visits import ordered_logistic_visits

    eta = pt.dvector("eta")
    category = pt.lvector("category")
    extended = pt.as_tensor(np.array([-500.0, -1.0, 0.0, 1.0, 500.0]))
    logp, slope_eta, _ = ordered_logistic_visits(eta, category, extended)
    with pytest.raises(NotImplementedError, match="not differentiable"):
        pt.grad(slope_eta.sum(), eta)
    fn = pytensor.function([eta, category], logp, mode="NUMBA")
    assert np.all(np.isfinite(fn(np.zeros(4), np.arange(4))))
    with pytest.raises(ValueError, match="outside the scale"):
        fn(np.zeros(2), np.array([0, 4]))


def test_ordinal_visit_logp_has_a_finite_gradient_in_jax():
    """numpyro and blackjax differentiate the log-density with jax.grad, through PyTensor's
    JAX softplus, which evaluates every branch of a ``where``: the outer cutpoints of the end
    categories must not overflow any branch, or the gradient is NaN at every step."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import pytensor
    import pytensor.tensor as pt
    from pymc.sampling.jax import get_jaxified_graph

    from magbayes.models import scores

    cutpoints = np.linspace(-4.0, 4.0, 10)
    value = np.array([0, 10, 0, 10, 5, 3])  # both end categories
    eta = pt.vector("eta")
    logp = scores.visit_logp("ordered_logistic", pt.as_tensor(value), eta, pt.as_tensor(cutpoints))
    jaxified = get_jaxified_graph(inputs=[eta], outputs=[logp.sum()])
    at = np.array([-8.0, -8.0, 8.0, 8.0, 0.0, 1.0])
    gradient = jax.grad(lambda e: jaxified(e)[0])(at)
    assert np.all(np.isfinite(np.asarray(gradient)))
    # and JAX's value and gradient are those of PyTensor's own back end
    reference = pytensor.function([eta], [logp.sum(), pt.grad(logp.sum(), eta)])(at)
    np.testing.assert_allclose(float(jaxified(at)[0]), reference[0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gradient), reference[1], rtol=1e-9, atol=1e-12)


def test_drawn_scores_follow_the_likelihood():
    """Scores drawn for prediction have the frequencies the log-likelihood gives them."""
    import pytensor.tensor as pt

    from magbayes.models import scores

    cutpoints = np.array([-3.0, -1.0, 0.0, 0.5, 2.5, 4.0])
    # two latent values interleaved: each visit's score follows its own latent value
    eta = np.tile([0.7, -2.2], 20000)
    drawn = scores.draw_visits("ordered_logistic", eta, cutpoints, np.random.default_rng(1))
    categories = np.arange(len(cutpoints) + 1)
    for latent in (0.7, -2.2):
        expected = np.exp(
            scores.visit_logp(
                "ordered_logistic",
                pt.as_tensor(categories),
                pt.as_tensor(np.full(len(categories), latent)),
                pt.as_tensor(cutpoints),
            ).eval()
        )
        assert expected.sum() == pytest.approx(1.0, abs=1e-12)
        at_latent = drawn[eta == latent]
        observed = np.bincount(at_latent, minlength=len(categories)) / len(at_latent)
        # binomial standard error of each share is at most 0.0036 with 20,000 draws
        np.testing.assert_allclose(observed, expected, atol=0.015)


def test_treatment_exposure_equals_a_course_by_course_sum():
    """The vectorised exposures equal the definition, summed course by course."""
    sim = mb.simulate_cohort(n_patients=80, seed=12)
    spec = resolve_spec("progression")
    cohort, design, _ = prepare(sim.cohort, spec)
    ids = np.asarray(design.coords["patient"])[design.data["patient_of_visit"]]
    years = design.data["years_since_onset"]
    modelled = design.coords["treatment"]
    expected = {
        "rituximab_years": np.zeros(len(years)),
        "later_line_years": np.zeros(len(years)),
        "treatment_years": np.zeros((len(years), len(modelled))),
        "treatment_started": np.zeros((len(years), len(modelled))),
    }
    for course in cohort.treatments.itertuples(index=False):
        on = ids == course.patient_id
        since = np.where(on, np.clip(years - course.start_years, 0.0, None), 0.0)
        if course.treatment == "rituximab":
            expected["rituximab_years"] += since
        elif course.treatment in modelled:
            k = modelled.index(course.treatment)
            expected["treatment_years"][:, k] += since
            expected["treatment_started"][:, k] += on & (years >= course.start_years)
        else:
            continue
        if course.line >= 2:
            expected["later_line_years"] += since
    assert expected["rituximab_years"].max() > 0
    for name, values in expected.items():
        np.testing.assert_allclose(design.data[name], values, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------------------- recovery


@pytest.mark.slow
def test_large_interaction_gives_high_probability_on_the_right_side():
    _, result = fit_simulated(120, effect=-1.0, seed=21)
    headline = result.headline()
    assert headline["p_sural_predicts_rituximab_benefit"] > 0.9
    assert headline["contrast"]["mean"] < 0
    assert 0 <= headline["mcse"] < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("seed", [31, 32, 33])
def test_no_interaction_gives_no_extreme_probability(seed):
    _, result = fit_simulated(47, effect=0.0, seed=seed, draws=200, tune=200)
    p = result.headline()["p_sural_predicts_rituximab_benefit"]
    assert 0.025 < p < 0.975


@pytest.mark.slow
def test_intervals_cover_truth_on_a_large_cohort():
    sim, result = fit_simulated(300, effect=-0.5, seed=41)
    truth = sim.truth["progression"]
    summary = result.summary()
    post = result.posterior["posterior"].to_dataset()
    import arviz as az

    checks = {
        "slope": truth["slope"],
        "rate_sural_reduced": truth["rate_sural_reduced"],
        "gamma_rituximab": truth["gamma_rituximab"],
        "gamma_rituximab_x_sural": truth["gamma_rituximab_x_sural"],
        "gamma_later_line": truth["gamma_later_line"],
    }
    misses = []
    for name, true_value in checks.items():
        interval = az.hdi(post[name], prob=0.90)
        low, high = float(interval.sel(ci_bound="lower")), float(interval.sel(ci_bound="upper"))
        if not low <= true_value <= high:
            misses.append((name, true_value, low, high))
    for k, name in enumerate(["level", "rate"]):
        interval = az.hdi(post["patient_sd"].sel(patient_effect=name), prob=0.90)
        true_value = truth["patient_sd"][k]
        low, high = float(interval.sel(ci_bound="lower")), float(interval.sel(ci_bound="upper"))
        if not low <= true_value <= high:
            misses.append((f"patient_sd[{name}]", true_value, low, high))
    # 7 intervals at 90%: a calibrated model misses two or more in 15% of seeds and three or
    # more in 2.6%, so three misses are the sign of a bias
    assert len(misses) <= 2, misses
    assert summary.loc["gamma_rituximab_x_sural", "r_hat"] < 1.05


# ----------------------------------------------------------------------------- pipeline


# The tests below read the session's shared progression fit (conftest.py): 25 simulated
# patients, 2 x 100 draws.


@pytest.mark.slow
def test_same_seed_same_posterior(progression_cohort, progression_fit):
    first, _ = progression_fit
    again = fit_progression(progression_cohort, prior_predictive=False)
    a = first.posterior["posterior"]["gamma_rituximab_x_sural"].values
    b = again.posterior["posterior"]["gamma_rituximab_x_sural"].values
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_posterior_has_every_group_with_labelled_dims(progression_fit):
    result, _ = progression_fit
    tree = result.posterior
    for group in (
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "sample_stats",
        "observed_data",
        "constant_data",
    ):
        assert group in tree.children, group
    post = tree["posterior"]
    assert sorted(post["site_level"].coords["site"].values) == ["centre_A", "centre_B"]
    assert "ivig" in list(post["gamma_treatment"].coords["treatment"].values)
    assert post["beta_covariate"].coords["covariate"].values[0] == "age_at_onset"
    assert tree["log_likelihood"]["score"].dims[-1] == "patient"
    assert tree["observed_data"]["score"].dims == ("visit",)
    assert tree["posterior_predictive"]["score"].dims[-1] == "visit"


@pytest.mark.slow
def test_headline_has_contract_keys(progression_fit):
    result, _ = progression_fit
    headline = result.headline()
    for key in (
        "question",
        "p_sural_predicts_rituximab_benefit",
        "mcse",
        "contrast",
        "p_rituximab_benefit_sural_reduced",
        "p_rituximab_benefit_sural_preserved",
        "n_patients",
        "n_sites",
        "n_visits",
        "model",
    ):
        assert key in headline
    for key in ("mean", "hdi_low", "hdi_high", "hdi_prob", "scale"):
        assert key in headline["contrast"]
    assert headline["contrast"]["hdi_low"] < headline["contrast"]["hdi_high"]
    draws = result.posterior["posterior"]["gamma_rituximab_x_sural"].values
    assert headline["p_sural_predicts_rituximab_benefit"] == pytest.approx((draws < 0).mean())


@pytest.mark.slow
def test_tiny_fit_fails_the_convergence_gate(progression_fit):
    result, _ = progression_fit
    diagnostics = result.diagnostics()
    assert diagnostics["ess_bulk_min"] < 400
    assert diagnostics["passed"] is False
    assert any("bulk ESS" in reason for reason in diagnostics["reasons"])


@pytest.mark.slow
def test_divergences_bring_advice_fitting_the_parametrisation(progression_fit):
    """A fit with a divergent transition is told what to change: the target acceptance, and
    with centred patient levels the non-centred form, quoting the fitted spread of levels."""
    import dataclasses

    import xarray as xr

    result, _ = progression_fit
    tree = result.posterior.copy()
    stats = tree["sample_stats"].to_dataset()
    diverging = stats["diverging"].copy()
    diverging[0, 0] = True
    tree["sample_stats"] = xr.DataTree(stats.assign(diverging=diverging))
    diverged = dataclasses.replace(result, posterior=tree)
    diagnostics = diverged.diagnostics()
    assert diagnostics["divergences"] == int(stats["diverging"].sum()) + (
        not bool(stats["diverging"][0, 0])
    )
    assert any("target_accept" in advice for advice in diagnostics["advice"])
    spread = float(tree["posterior"]["patient_sd"].sel(patient_effect="level").median())
    non_centred = [a for a in diagnostics["advice"] if "non_centred" in a]
    assert len(non_centred) == 1 and f"{spread:.2f}" in non_centred[0]
    # already non-centred: only the target acceptance (and more draws) is advised
    spec = resolve_spec("progression", {"patients": {"parametrisation": "non_centred"}})
    other = dataclasses.replace(diverged, spec=spec).diagnostics()
    assert not any("non_centred" in advice for advice in other["advice"])
    assert any("target_accept" in advice for advice in other["advice"])


@pytest.mark.slow
@pytest.mark.parametrize(("score", "n_cutpoints"), [("onls", 12), ("mrs", 6), ("irods", None)])
def test_every_score_can_be_the_outcome(small_sim, score, n_cutpoints):
    result = mb.fit(
        small_sim.cohort,
        "progression",
        draws=40,
        tune=40,
        chains=1,
        seed=2,
        prior_predictive=False,
        overrides={"outcome": {"score": score}},
    )
    post = result.posterior["posterior"]
    observed = result.posterior["observed_data"]["score"]
    assert len(observed) == small_sim.cohort.visits[score].notna().sum()
    if n_cutpoints:
        assert post.sizes["cutpoint"] == n_cutpoints
        # the cutpoint just above the median observed score is the one fixed at 0
        anchor = int(np.clip(np.floor(np.median(observed)), 0, n_cutpoints - 1))
        cutpoints = post["cutpoints"]
        assert float(np.abs(cutpoints.isel(cutpoint=anchor)).max()) == 0.0
        assert bool((cutpoints.diff("cutpoint") > 0).all())
        assert set(np.unique(observed)) <= set(range(n_cutpoints + 1))
    else:
        assert "irods_precision" in post
        # observed and predicted I-RODS are in centiles again
        assert 1.0 < float(observed.max()) <= 100.0
        predicted = result.posterior["posterior_predictive"]["score"]
        assert 0.0 <= float(predicted.min()) and float(predicted.max()) <= 100.0
