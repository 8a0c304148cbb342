"""PSIS-LOO comparison of fits (magbayes.report.compare, `magbayes compare`).

Unit tests build fits in memory with chosen log-likelihoods (fast); the command-line tests
share two small real fits of one cohort, and one of another cohort.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shared_fits import fit_progression, write_progression_cohort

from magbayes.cli import main
from magbayes.fit import FitResult
from magbayes.report.compare import (
    DifferentDataError,
    compare_fits,
    fit_names,
    pareto_k_warning,
)
from magbayes.spec import Spec

N_PATIENTS = 12
PATIENTS = [f"P{i:03d}" for i in range(1, N_PATIENTS + 1)]


def fake_fit(
    *,
    sha: str = "a" * 64,
    seed: int = 0,
    loglik_sd: float = 0.2,
    wild_patient: int | None = None,
    scores: np.ndarray | None = None,
) -> FitResult:
    """A FitResult with a chosen per-patient log-likelihood (no model behind it)."""
    rng = np.random.default_rng(seed)
    loglik = rng.normal(-8.0, loglik_sd, size=(2, 300, N_PATIENTS))
    if wild_patient is not None:
        # very spread log-likelihood draws: importance ratios with a heavy tail, k > 0.7
        loglik[:, :, wild_patient] = rng.normal(-8.0, 6.0, size=(2, 300))
    if scores is None:
        scores = np.arange(3 * N_PATIENTS) % 5
    visits = [f"{PATIENTS[i // 3]}@{i % 3}.00y" for i in range(3 * N_PATIENTS)]
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {"slope": (("chain", "draw"), rng.normal(size=(2, 300)))},
                coords={"chain": [0, 1], "draw": np.arange(300)},
            ),
            "log_likelihood": xr.Dataset(
                {"score": (("chain", "draw", "patient"), loglik)},
                coords={"chain": [0, 1], "draw": np.arange(300), "patient": PATIENTS},
            ),
            "observed_data": xr.Dataset(
                {"score": (("visit",), np.asarray(scores, dtype="int64"))},
                coords={"visit": visits},
            ),
        }
    )
    return FitResult(
        posterior=tree,
        spec=Spec(model="progression", data={}, path=f"spec_{seed}.toml"),
        design_counts={},
        standardisation={},
        cohort_summary={},
        data_sha256=sha,
        seed=seed,
        sampler="nutpie",
        timing={},
    )


# ----------------------------------------------------------------------------- units


def test_fits_on_the_same_data_are_ranked_by_elpd():
    good = fake_fit(seed=1)
    worse = fake_fit(seed=2)
    # the second model predicts every patient worse by one log unit
    worse.posterior["log_likelihood"]["score"] = worse.posterior["log_likelihood"]["score"] - 1
    comparison = compare_fits({"good": good, "worse": worse})
    table = comparison.table
    assert list(table.index) == ["good", "worse"]
    assert table.loc["worse", "elpd_diff"] == pytest.approx(-N_PATIENTS, abs=1.0)  # vs best
    assert list(table["n_observations"]) == [N_PATIENTS, N_PATIENTS]
    assert comparison.variable == "score"
    assert comparison.warnings == []
    assert "No Pareto k > 0.7" in comparison.to_text()


def test_different_cohort_hashes_are_refused():
    with pytest.raises(DifferentDataError, match="different data"):
        compare_fits({"a": fake_fit(sha="a" * 64), "b": fake_fit(sha="b" * 64)})


def test_a_missing_hash_beside_a_known_one_is_refused():
    with pytest.raises(DifferentDataError, match="different data"):
        compare_fits({"a": fake_fit(sha="a" * 64), "b": fake_fit(sha="")})


def test_same_hash_but_different_observations_is_refused():
    other_scores = (np.arange(3 * N_PATIENTS) + 1) % 5
    with pytest.raises(DifferentDataError, match="same observations"):
        compare_fits({"a": fake_fit(), "b": fake_fit(scores=other_scores)})


def test_high_pareto_k_is_counted_and_the_patient_named():
    comparison = compare_fits({"calm": fake_fit(seed=1), "wild": fake_fit(seed=2, wild_patient=4)})
    by_fit = {w.fit: w for w in comparison.warnings}
    assert set(by_fit) == {"wild"}
    assert by_fit["wild"].n_high >= 1
    assert any(label.startswith(PATIENTS[4]) for label in by_fit["wild"].labels)
    assert comparison.table.loc["wild", "pareto_k_gt_0_7"] == by_fit["wild"].n_high
    assert comparison.table.loc["calm", "pareto_k_gt_0_7"] == 0
    text = comparison.to_text()
    assert "Pareto-k warnings (k > 0.7)" in text and PATIENTS[4] in text


def test_pareto_k_count_agrees_with_arviz():
    import arviz as az

    fit = fake_fit(seed=3, wild_patient=0)
    loo = az.loo(fit.posterior, pointwise=True, var_name="score")
    warning = pareto_k_warning("x", loo)
    assert warning.n_high == int((loo.pareto_k > 0.7).sum())
    assert warning.n_total == N_PATIENTS


def test_fit_names_are_unique():
    assert fit_names(["a/results", "b/results"]) == ["a/results", "b/results"]
    assert fit_names(["x/one", "x/two"]) == ["one", "two"]
    assert len(set(fit_names(["same", "same"]))) == 2


# ----------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def folders(progression_cohort, progression_fit, tmp_path_factory):
    """Two fits of one cohort (the session's shared progression fit and a fit with another
    seed), and the same spec fitted to another cohort of the same structure: one compiled
    model for all three."""
    root = tmp_path_factory.mktemp("compare")
    shutil.copytree(progression_fit[1], root / "default")
    fit_progression(progression_cohort, seed=6, prior_predictive=False).save(
        root / "other_seed", report=False
    )
    other = write_progression_cohort(root / "other_cohort", seed=8)
    fit_progression(other, prior_predictive=False).save(root / "other_data", report=False)
    return root


@pytest.mark.slow
def test_compare_command_prints_and_writes_the_table(folders, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(["compare", str(folders / "default"), str(folders / "other_seed")])
    assert status == 0
    out = capsys.readouterr().out
    assert "PSIS-LOO comparison" in out
    table = pd.read_csv(tmp_path / "comparison.csv", index_col="fit")  # the default name
    assert set(table.index) == {"default", "other_seed"}
    for column in ("rank", "elpd", "se", "elpd_diff", "weight", "pareto_k_gt_0_7"):
        assert column in table.columns
    assert sorted(table["rank"]) == [0, 1]
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    # every fit with Pareto k > 0.7 is listed, with its count
    for name, row in table.iterrows():
        if row["pareto_k_gt_0_7"]:
            assert f"{name}: {row['pareto_k_gt_0_7']} of {row['n_observations']} Pareto k" in out
    if table["pareto_k_gt_0_7"].sum() == 0:
        assert "No Pareto k > 0.7" in out


@pytest.mark.slow
def test_compare_command_writes_to_out(folders, tmp_path):
    out = tmp_path / "sub" / "loo.csv"
    status = main(
        ["compare", str(folders / "default"), str(folders / "other_seed"), "--out", str(out)]
    )
    assert status == 0
    assert len(pd.read_csv(out)) == 2


@pytest.mark.slow
def test_compare_command_refuses_fits_on_different_data(folders, tmp_path, capsys):
    out = tmp_path / "comparison.csv"
    status = main(
        ["compare", str(folders / "default"), str(folders / "other_data"), "--out", str(out)]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "different data" in err and "SHA-256" in err
    assert not out.exists()


def test_compare_command_needs_two_folders(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "at least two" in capsys.readouterr().err
