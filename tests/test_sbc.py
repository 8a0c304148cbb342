"""Simulation-based calibration: ranks, uniformity tests, the Dask runner, resuming, failures.

A one-parameter normal model (compiled once for the whole module) exercises the mechanics on
an in-process Dask cluster; one small run of the progression model goes through the command
line on a local cluster of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

from magbayes.cli import main
from magbayes.cluster import dask_client
from magbayes.sbc import (
    ModelStructure,
    SBCProblem,
    SBCSettings,
    SBCSetupError,
    fit_ranks,
    fit_seed,
    observed_as_shared,
    rank_of_truth,
    run_sbc,
    thin_draws,
    uniformity_table,
)
from magbayes.sbc.prior_draws import ParameterElement
from magbayes.sbc.runner import read_fits, read_ranks
from magbayes.sbc.uniformity import binned, chi_square

N_OBS = 5


def toy_model(prior_mean: float = 0.0) -> pm.Model:
    """mean ~ Normal(prior_mean, 1); five observations ~ Normal(mean, 1)."""
    with pm.Model(coords={"observation": list(range(N_OBS))}) as model:
        mean = pm.Normal("mean", prior_mean, 1.0)
        pm.Normal("y", mean, 1.0, observed=np.zeros(N_OBS), dims="observation")
    return model


_COMPILED: dict[str, object] = {}


class FailingProblem(SBCProblem):
    """Fails the refit of chosen fits (to check that failures are recorded)."""

    fail_seeds: tuple[int, ...] = ()

    def posterior(self, data, *, seed, **kwargs):
        if seed - 1 in self.fail_seeds:
            raise RuntimeError("deliberate failure for the test")
        return super().posterior(data, seed=seed, **kwargs)


@dataclass(frozen=True)
class ToyStructure:
    """Fits the toy model; draws from it, or from a version with a shifted prior."""

    generator_prior_mean: float = 0.0
    fail_fits: tuple[int, ...] = ()
    run_seed: int = 0

    def key(self) -> str:
        return f"toy-{self.generator_prior_mean}-{self.fail_fits}"

    def describe(self) -> dict:
        return {"toy": True, "generator_prior_mean": self.generator_prior_mean}

    def build(self) -> SBCProblem:
        generator = toy_model(self.generator_prior_mean) if self.generator_prior_mean else None
        cls = FailingProblem if self.fail_fits else SBCProblem
        problem = cls(toy_model(), parameters=["mean"], generator=generator, name="toy")
        if self.fail_fits:
            problem.fail_seeds = tuple(fit_seed(self.run_seed, i) for i in self.fail_fits)
        # the fitted graph is the same in every toy structure: compile it once per module
        if "toy" not in _COMPILED:
            _COMPILED["toy"] = problem.compiled()
        problem._compiled = _COMPILED["toy"]
        return problem


FAST = {"draws": 100, "tune": 100, "chains": 1, "thin": 1}


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=1, processes=False) as c:
        yield c


# --------------------------------------------------------------------------- ranks


def test_rank_counts_draws_below_the_truth():
    draws = np.array([0.1, 0.5, 0.9, -2.0, 3.0])
    assert rank_of_truth(draws, 0.6) == 3  # -2.0, 0.1, 0.5
    assert rank_of_truth(draws, -5.0) == 0
    assert rank_of_truth(draws, 5.0) == 5


def test_rank_breaks_ties_between_their_bounds():
    draws = np.array([1.0, 2.0, 2.0, 2.0, 3.0])
    ranks = {rank_of_truth(draws, 2.0, np.random.default_rng(s)) for s in range(200)}
    assert ranks == {1, 2, 3, 4}


def test_thinning_keeps_every_kth_draw_per_chain():
    values = np.arange(12).reshape(2, 6)  # chain 0: 0..5, chain 1: 6..11
    assert thin_draws(values, 3).tolist() == [0, 3, 6, 9]
    assert thin_draws(values, 1).size == 12
    with pytest.raises(ValueError):
        thin_draws(values, 0)


def test_fit_ranks_reads_labelled_elements():
    draws = np.arange(8, dtype=float).reshape(2, 4)  # 0..7
    vector = np.stack([draws, draws + 100], axis=-1)  # (chain, draw, treatment)
    posterior = xr.Dataset(
        {
            "slope": (("chain", "draw"), draws),
            "gamma": (("chain", "draw", "treatment"), vector),
        },
        coords={"treatment": ["ivig", "other"]},
    )
    elements = [
        ParameterElement("slope", "slope"),
        ParameterElement("gamma[other]", "gamma", (1,)),
    ]
    truth = {"slope": 2.5, "gamma[other]": 105.5}
    ranks = fit_ranks(posterior, truth, elements, thin=2)
    # thinned draws: slope 0, 2, 4, 6 -> two below 2.5; gamma[other] 100, 102, 104, 106 -> 3
    assert ranks == {"slope": (2, 4), "gamma[other]": (3, 4)}


def test_fit_seeds_are_distinct_and_reproducible():
    seeds = [fit_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100
    assert seeds == [fit_seed(7, i) for i in range(100)]
    assert fit_seed(8, 0) != fit_seed(7, 0)


# --------------------------------------------------------------------------- uniformity


def test_binned_expected_shares_follow_rank_values():
    counts, shares = binned(np.array([0, 1, 2, 3, 4]), n_draws=4, n_bins=2)
    # ranks 0..4 (5 values): bin 0 holds 0, 1, 2 (3/5), bin 1 holds 3, 4 (2/5)
    assert counts.tolist() == [3, 2]
    assert np.allclose(shares, [0.6, 0.4])


def test_uniformity_flags_skewed_ranks_and_passes_uniform_ones():
    rng = np.random.default_rng(1)
    n_draws = 99
    uniform = rng.integers(0, n_draws + 1, size=200)
    skewed = np.minimum(n_draws, (rng.beta(3, 1, size=200) * (n_draws + 1)).astype(int))
    rows = [
        {"fit": i, "parameter": name, "rank": r, "n_draws": n_draws, "status": "ok"}
        for name, ranks in (("uniform", uniform), ("skewed", skewed))
        for i, r in enumerate(ranks)
    ]
    rows += [
        {
            "fit": i,
            "parameter": "fixed",
            "rank": r,
            "n_draws": n_draws,
            "status": "ok",
            "posterior_sd": 0.0,
        }
        for i, r in enumerate(uniform)
    ]
    rows.append(
        {"fit": 999, "parameter": "uniform", "rank": np.nan, "n_draws": np.nan, "status": "failed"}
    )
    table = uniformity_table(pd.DataFrame(rows)).set_index("parameter")
    assert table.loc["uniform", "n_fits"] == 200  # the failed fit is not counted
    assert table.loc["uniform", "flag"] == "ok"
    assert table.loc["skewed", "flag"] == "non-uniform"
    assert table.loc["fixed", "flag"] == "constant"  # a quantity fixed by the model
    assert np.isnan(table.loc["fixed", "p_chi_square"])
    assert table.loc["skewed", "p_chi_square"] < 1e-6
    assert table.loc["skewed", "p_pit_ecdf"] < 1e-3
    assert chi_square(uniform, n_draws)["p_chi_square"] > 0.01


# --------------------------------------------------------------------------- prior draws


def test_observed_data_become_shared_variables():
    shared_model, names = observed_as_shared(toy_model())
    assert names == {"y": "observed_y"}
    assert "y" in [rv.name for rv in shared_model.observed_RVs]
    assert shared_model.named_vars_to_dims["y"] == ("observation",)


def test_prior_draw_is_reproducible_and_comes_from_the_generator():
    problem = SBCProblem(toy_model(), parameters=["mean"], generator=toy_model(50.0))
    first, again, other = problem.draw(3), problem.draw(3), problem.draw(4)
    assert first.truth == again.truth
    assert np.array_equal(first.data["y"], again.data["y"])
    assert first.truth != other.truth
    assert 40 < first.truth["mean"] < 60  # drawn with the shifted prior
    assert first.data["y"].shape == (N_OBS,)


def test_prior_draws_outside_an_ordered_support_are_reported():
    with pm.Model(
        coords={"threshold": ["a", "b", "c"], "observation": list(range(N_OBS))}
    ) as model:
        cut = pm.Normal(
            "cut",
            mu=[-1.0, 0.0, 1.0],
            sigma=3.0,
            dims="threshold",
            transform=pm.distributions.transforms.ordered,
        )
        pm.Normal("y", cut.sum(), 1.0, observed=np.zeros(N_OBS), dims="observation")
    problem = SBCProblem(model, parameters=["cut"])
    assert problem.ordered == ["cut"]
    notes = [problem.draw(seed).warnings for seed in range(20)]
    assert any(n == ["prior draw of cut is not increasing (ordered transform)"] for n in notes)
    assert any(n == [] for n in notes)


def test_outcomes_held_in_constants_are_refused():
    """A likelihood that ignores its observed value cannot be fed prior-drawn data."""
    import pytensor.tensor as pt

    def logp(value, mean):
        return pm.logp(pm.Normal.dist(mean, 1.0), pt.as_tensor(np.zeros(N_OBS))) + pt.zeros_like(
            value, dtype="float64"
        )

    with pm.Model(coords={"observation": list(range(N_OBS))}) as model:
        mean = pm.Normal("mean", 0.0, 1.0)
        pm.CustomDist(
            "y",
            mean,
            logp=logp,
            random=lambda mean, rng=None, size=None: rng.normal(mean, 1.0, size=size),
            observed=np.zeros(N_OBS),
            dims="observation",
        )
    with pytest.raises(ValueError, match="does not read the observed value of y"):
        SBCProblem(model, parameters=["mean"], name="constant")


def _worsening_structure() -> ModelStructure:
    from magbayes.fit import resolve_spec

    return ModelStructure(resolve_spec("worsening"), n_patients=20, cohort_seed=2)


def test_worsening_outcomes_are_data_for_sbc():
    """The worsening likelihood reads its observed value (it was refused when it did not)."""
    from magbayes.fit import prepare

    structure = _worsening_structure()
    problem = structure.build()  # raised ValueError before
    assert set(problem.observed_names) == {"worsening", "sural_reduced_observed"}
    assert "beta_rituximab_x_sural" in problem.labels
    _, design, _ = prepare(structure.cohort(), structure.spec)
    n_intervals = np.sum(np.isfinite(design.data["checked_visit_years"]), axis=1) - 1
    draws = [problem.draw(seed).data["worsening"] for seed in range(20)]
    for drawn in draws:
        assert drawn.shape == n_intervals.shape and drawn.dtype == np.int64
        assert ((drawn >= 0) & (drawn <= n_intervals)).all()
    assert np.array_equal(problem.draw(3).data["worsening"], draws[3])
    assert len({tuple(d) for d in draws}) > 1  # the outcome changes with the prior draw
    assert 0 < np.mean([(d > 0).mean() for d in draws]) < 1


@pytest.mark.slow
def test_sbc_of_worsening_runs_a_few_fits(tmp_path, client):
    settings = SBCSettings(fits=4, seed=1, draws=100, tune=100, chains=2, thin=2)
    result = run_sbc(_worsening_structure(), tmp_path, settings, client=client, figures=False)
    fits = result.fits
    assert sorted(fits["fit"]) == [0, 1, 2, 3]
    assert (fits["status"] == "ok").all(), fits["error"].tolist()
    ranks = read_ranks(tmp_path)
    ok = ranks[ranks["parameter"] == "beta_rituximab_x_sural"]
    assert len(ok) == 4 and ok["n_draws"].eq(100).all() and ok["rank"].between(0, 100).all()
    assert ok["posterior_sd"].gt(0).all()
    assert {"beta_rituximab", "beta_sural_reduced"} <= set(result.uniformity["parameter"])


@pytest.mark.slow
def test_sbc_of_the_joint_model_refits_drawn_event_times(tmp_path, client):
    """The joint model's draws carry their event arrays into the refit (its definition's
    completion): the fits run, and the refitted data differ between fits."""
    from magbayes.fit import resolve_spec

    structure = ModelStructure(resolve_spec("joint"), n_patients=20, cohort_seed=2)
    problem = structure.build()
    first, second = problem.draw(11).data, problem.draw(12).data
    assert {"end_of_follow_up", "hazard_row_years", "hazard_node_weight"} <= set(first)
    assert set(first["end_of_follow_up"]) <= {0, 1}
    assert not np.array_equal(first["hazard_row_years"], second["hazard_row_years"])
    settings = SBCSettings(fits=2, seed=1, draws=60, tune=60, chains=2, thin=2)
    result = run_sbc(structure, tmp_path, settings, client=client, figures=False)
    assert (result.fits["status"] == "ok").all(), result.fits["error"].tolist()
    assert "association" in set(read_ranks(tmp_path)["parameter"])


# --------------------------------------------------------------------------- runner


@pytest.mark.slow
def test_resume_skips_fits_already_recorded(tmp_path, client):
    structure = ToyStructure()
    first = run_sbc(
        structure, tmp_path, SBCSettings(fits=3, seed=0, **FAST), client=client, figures=False
    )
    assert first.ran == [0, 1, 2]
    before = read_ranks(tmp_path).sort_values("fit").reset_index(drop=True)

    again = run_sbc(
        structure, tmp_path, SBCSettings(fits=5, seed=0, **FAST), client=client, figures=False
    )
    assert again.ran == [3, 4]  # 0-2 were skipped
    fits = read_fits(tmp_path)
    assert fits["fit"].tolist() == [0, 1, 2, 3, 4]
    after = read_ranks(tmp_path).sort_values("fit").reset_index(drop=True)
    pd.testing.assert_frame_equal(after[after["fit"] < 3], before)
    # the seeds are the run's, fit by fit
    assert fits["seed"].tolist() == [fit_seed(0, i) for i in range(5)]

    nothing = run_sbc(
        structure, tmp_path, SBCSettings(fits=5, seed=0, **FAST), client=client, figures=False
    )
    assert nothing.ran == []

    with pytest.raises(SBCSetupError, match="draws: 100 there, 120 now"):
        run_sbc(
            structure,
            tmp_path,
            SBCSettings(fits=6, seed=0, **(FAST | {"draws": 120})),
            client=client,
            figures=False,
        )


@pytest.mark.slow
def test_interrupted_fit_is_rerun(tmp_path, client):
    structure = ToyStructure()
    settings = SBCSettings(fits=2, seed=0, **FAST)
    run_sbc(structure, tmp_path, settings, client=client, figures=False)
    # simulate a crash after fit 1's ranks were written but before its fits.csv record
    fits_csv = tmp_path / "fits.csv"
    lines = fits_csv.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("1,")]
    fits_csv.write_text("".join(kept) + "1,123,o")  # and a half-written line
    result = run_sbc(structure, tmp_path, settings, client=client, figures=False)
    assert result.ran == [1]
    ranks = read_ranks(tmp_path)
    assert sorted(ranks["fit"].tolist()) == [0, 1]  # no duplicated rows for fit 1


@pytest.mark.slow
def test_failed_fit_is_recorded_not_lost(tmp_path, client):
    structure = ToyStructure(fail_fits=(1,), run_seed=5)
    result = run_sbc(
        structure, tmp_path, SBCSettings(fits=3, seed=5, **FAST), client=client, figures=False
    )
    fits = result.fits.set_index("fit")
    assert fits.loc[1, "status"] == "failed"
    assert "deliberate failure" in fits.loc[1, "error"]
    assert (fits.loc[[0, 2], "status"] == "ok").all()
    ranks = pd.read_csv(tmp_path / "ranks.csv")
    failed = ranks[ranks["fit"] == 1]
    assert failed["status"].tolist() == ["failed"]
    assert failed["parameter"].tolist() == ["mean"]
    assert failed["rank"].isna().all()
    assert result.uniformity.loc[0, "n_fits"] == 2
    # a rerun does not retry it: it is recorded
    assert (
        run_sbc(
            structure, tmp_path, SBCSettings(fits=3, seed=5, **FAST), client=client, figures=False
        ).ran
        == []
    )


@pytest.mark.slow
def test_shifted_generating_prior_gives_non_uniform_ranks(tmp_path, client):
    n_fits = 40
    settings = SBCSettings(fits=n_fits, seed=11, **FAST)
    calibrated = run_sbc(ToyStructure(), tmp_path / "calibrated", settings, client=client)
    shifted = run_sbc(
        ToyStructure(generator_prior_mean=3.0), tmp_path / "shifted", settings, client=client
    )
    good = calibrated.uniformity.set_index("parameter").loc["mean"]
    bad = shifted.uniformity.set_index("parameter").loc["mean"]
    assert good["n_fits"] == bad["n_fits"] == n_fits
    assert good["flag"] == "ok"
    assert bad["flag"] == "non-uniform"
    assert bad["p_chi_square"] < 1e-4
    # truths from a prior centred at 3 sit above posteriors shrunk towards 0: high ranks
    assert bad["mean_fractional_rank"] > 0.75
    assert (tmp_path / "shifted" / "figures" / "sbc_mean.png").stat().st_size > 10_000
    assert (tmp_path / "shifted" / "figures" / "sbc_overview.png").exists()


# --------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_sbc_command_runs_three_progression_fits_on_a_local_cluster(tmp_path, capsys):
    out = tmp_path / "sbc"
    argv = [
        "sbc",
        "progression",
        "--fits",
        "3",
        "--out",
        str(out),
        "--seed",
        "3",
        "--patients",
        "10",
        "--draws",
        "40",
        "--tune",
        "40",
        "--chains",
        "1",
        "--thin",
        "2",
        "--workers",
        "1",
        "--parameters",
        "slope",
        "gamma_rituximab_x_sural",
        "cutpoints",
    ]
    assert main(argv) == 0
    ranks = pd.read_csv(out / "ranks.csv")
    assert list(ranks.columns[:6]) == ["fit", "seed", "parameter", "rank", "n_draws", "status"]
    fits = pd.read_csv(out / "fits.csv")
    assert sorted(fits["fit"]) == [0, 1, 2]
    ok = ranks[ranks["status"] == "ok"]
    assert set(ok["fit"]) == set(fits.loc[fits["status"] == "ok", "fit"])
    assert len(ok) > 0, fits["error"].tolist()
    labels = set(ranks["parameter"])
    assert {"slope", "gamma_rituximab_x_sural", "cutpoints[0|1]"} <= labels
    assert ok["n_draws"].eq(20).all()  # 1 chain x 40 draws, every 2nd
    assert ok["rank"].between(0, 20).all()
    assert (out / "uniformity.csv").exists() and (out / "sbc.json").exists()
    assert (out / "figures" / "sbc_slope.png").exists()
    printed = capsys.readouterr().out
    assert "SBC of 'progression': 3 fit(s)" in printed
    # rerun: everything is already there
    assert main(argv) == 0
    assert "0 run now" in capsys.readouterr().out
    # another cohort design into the same folder is refused (exit 2)
    assert main([*argv, "--design-seed", "9"]) == 2
    assert "another model, spec or cohort design" in capsys.readouterr().err
