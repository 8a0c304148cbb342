"""What a fit computes from its draws, over all draws at once and with nothing compiled.

The log-likelihood must equal PyMC's; the posterior predictive and prior draws must follow
the model (their random numbers differ from PyMC's); none of them may compile C (PyTensor's
C back end cost 25-30 s on the first fit of a model on a machine).
"""

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
import xarray as xr

from magbayes import model_draws
from magbayes.over_draws import OverDraws

SITES = ["Paris", "Lyon", "Lille"]


def site_model(observed=None):
    """Transformed, zero-sum and data-dependent pieces, and logaddexp (an OpFromGraph)."""
    rng = np.random.default_rng(3)
    site = np.repeat([0, 1, 2], 6)
    outcome = rng.normal(size=site.size) + site if observed is None else observed
    coords = {"site": SITES, "visit": np.arange(site.size)}
    with pm.Model(coords=coords) as model:
        site_of_visit = pm.Data("site_of_visit", site, dims="visit")
        spread = pm.HalfNormal("spread", 2.0)
        offset = pm.ZeroSumNormal("offset", sigma=spread, dims="site")
        level = pm.Normal("level", 0.0, 1.0)
        mean = pm.Deterministic("site_mean", level + offset, dims="site")
        noise = pm.Exponential("noise", 1.0)
        mixed = pt.logaddexp(mean[site_of_visit], 0.0)  # softplus through an OpFromGraph
        pm.Normal("outcome", mixed, noise, observed=outcome, dims="visit")
        # a second observed variable whose mean is the first: drawn after it
        pm.Normal("echo", model["outcome"], 0.01, observed=outcome, dims="visit")
    return model


def posterior_of(model, draws=50, chains=2, seed=5):
    """Draws of every free variable (constrained, from the prior) laid out as a posterior."""
    prior = model_draws.prior_draws(model, [rv.name for rv in model.free_RVs], draws * chains, seed)
    shaped = {
        name: (
            ["chain", "draw", *prior[name].dims[2:]],
            prior[name].values.reshape((chains, draws, *prior[name].shape[2:])),
        )
        for name in prior.data_vars
    }
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "site": SITES}
    return xr.Dataset(shaped, coords=coords)


def refuse_c_modules(monkeypatch):
    """Fail the test if anything asks PyTensor's C back end for a compiled module."""
    from pytensor.link.c.cmodule import ModuleCache

    def refuse(*args, **kwargs):
        raise AssertionError("PyTensor's C back end was asked for a compiled module")

    monkeypatch.setattr(ModuleCache, "module_from_key", refuse)


@pytest.fixture
def no_c_compiler(monkeypatch):
    refuse_c_modules(monkeypatch)


def test_log_likelihood_equals_pymcs(monkeypatch):
    model = site_model()
    posterior = posterior_of(model)
    tree = xr.DataTree.from_dict({"posterior": posterior})
    theirs = pm.compute_log_likelihood(
        tree,
        var_names=["outcome", "echo"],
        model=model,
        extend_inferencedata=False,
        progressbar=False,
    )
    refuse_c_modules(monkeypatch)
    ours = model_draws.log_likelihood(posterior, model, ["outcome", "echo"])
    for name in ("outcome", "echo"):
        assert ours[name].dims == theirs[name].dims == ("chain", "draw", "visit")
        np.testing.assert_allclose(ours[name].values, theirs[name].values, rtol=1e-12)


def test_posterior_predictive_follows_each_draw(no_c_compiler):
    model = site_model()
    posterior = posterior_of(model, draws=200)
    drawn = model_draws.posterior_predictive(posterior, model, ["outcome", "echo"], seed=2)
    outcome, echo = drawn["outcome"], drawn["echo"]
    assert outcome.dims == ("chain", "draw", "visit") and outcome.shape == (2, 200, 18)
    # each draw's replicated outcome around that draw's softplus(site mean), with its noise
    site_mean = posterior["level"].values[..., None] + posterior["offset"].values
    mean = np.logaddexp(site_mean[..., np.repeat([0, 1, 2], 6)], 0.0)
    z = (outcome.values - mean) / posterior["noise"].values[..., None]
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.03
    # the second observed variable reads the first one's draw, not its observed value
    np.testing.assert_allclose(echo.values, outcome.values, atol=0.06)
    again = model_draws.posterior_predictive(posterior, model, ["outcome"], seed=2)
    np.testing.assert_array_equal(again["outcome"].values, outcome.values)  # seeded


def test_prior_draws_follow_the_prior(no_c_compiler):
    model = site_model()
    draws = 8000
    prior = model_draws.prior_draws(model, ["spread", "offset", "site_mean", "noise"], draws, 1)
    assert prior["offset"].dims == ("chain", "draw", "site")
    assert prior["spread"].shape == (1, draws)
    spread = prior["spread"].values.ravel()
    assert abs(spread.mean() - 2.0 * np.sqrt(2 / np.pi)) < 0.05  # HalfNormal(2)
    assert abs(prior["noise"].values.mean() - 1.0) < 0.05  # Exponential(1)
    offset = prior["offset"].values.reshape(draws, 3)
    np.testing.assert_allclose(offset.sum(axis=1), 0.0, atol=1e-12)  # zero-sum
    # given its spread, each site's offset has sd spread * sqrt(2/3)
    z = offset / (spread[:, None] * np.sqrt(2 / 3))
    assert abs(z.std() - 1.0) < 0.03
    # the deterministic from the same draws: site mean minus offset is one level per draw
    level = prior["site_mean"].values.reshape(draws, 3) - offset
    np.testing.assert_allclose(level - level[:, :1], 0.0, atol=1e-12)
    assert abs(level[:, 0].std() - 1.0) < 0.03  # Normal(0, 1)


def test_blocks_of_draws_give_the_same_values():
    x = pt.dvector("x")
    y = pt.dscalar("y")
    function = OverDraws([pt.exp(x).sum() * y, x[1:] - y], [x, y])
    xs = np.random.default_rng(1).normal(size=(23, 4))
    ys = np.arange(23.0)
    whole = function([xs, ys])
    for got, want in zip(function([xs, ys], block=5), whole, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(whole[0], np.exp(xs).sum(axis=1) * ys)
    assert whole[1].shape == (23, 3)


def test_a_block_is_sized_by_the_graph_s_data_not_only_by_its_outputs():
    """One draw of a sum over 100,000 data values has a scalar output but a 100,000-value
    intermediate: blocks of draws stay within the limit, and give every draw's value."""
    from magbayes.over_draws import BLOCK_ELEMENTS

    data = np.ones(100_000)
    x = pt.dscalar("x")
    function = OverDraws([(pt.as_tensor(data) * x).sum()], [x])
    draws = np.arange(1000.0)
    blocks = list(function.blocks([draws]))
    assert max(stop - start for start, stop, _ in blocks) <= BLOCK_ELEMENTS // data.size
    assert [start for start, _, _ in blocks] == sorted({start for start, _, _ in blocks})
    values = np.concatenate([v[0] for _, _, v in blocks])
    np.testing.assert_allclose(values, draws * data.size)
    np.testing.assert_allclose(function([draws])[0], values)
