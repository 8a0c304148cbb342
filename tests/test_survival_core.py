"""The generic survival core: splitting, likelihood pieces, and agreement with lifelines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats

from magbayes.models import survival as sv

# ----------------------------------------------------------------------------- splitting


def _frame() -> pd.DataFrame:
    """Three subjects: observed (with a covariate change), right-censored (late entry),
    interval-censored (rows beyond the upper bound)."""
    return pd.DataFrame(
        {
            "id": ["a", "a", "b", "c", "c"],
            "start": [0.0, 1.5, 0.5, 0.0, 2.5],
            "stop": [1.5, 3.0, 4.5, 2.5, 6.0],
            "x": [0.0, 1.0, 2.0, 0.0, 1.0],
            "event_type": ["observed", "observed", "right", "interval", "interval"],
            "lower": [np.nan, np.nan, np.nan, 1.0, 1.0],
            "upper": [np.nan, np.nan, np.nan, 3.0, 3.0],
        }
    )


def test_split_at_grid_lower_bound_and_upper_bound():
    data = sv.counting_process_arrays(
        _frame(), event_type_col="event_type", covariates=["x"], grid=[0, 2, 4, np.inf]
    )
    assert data.subject_ids == ["a", "b", "c"]
    assert data.event_type.tolist() == [sv.OBSERVED, sv.RIGHT, sv.INTERVAL]
    assert data.entry.tolist() == [0.0, 0.5, 0.0]
    assert data.lower.tolist() == [3.0, 4.5, 1.0]
    assert data.upper.tolist() == [3.0, 4.5, 3.0]
    segs = pd.DataFrame(
        {
            "s": data.segment_subject,
            "a": data.segment_start,
            "b": data.segment_stop,
            "piece": data.segment_piece,
            "after": data.segment_after_lower,
            "x": data.segment_covariates[:, 0],
        }
    )
    a = segs[segs.s == 0]
    assert list(zip(a.a, a.b, strict=True)) == [(0.0, 1.5), (1.5, 2.0), (2.0, 3.0)]
    assert a.piece.tolist() == [0, 0, 1] and a.x.tolist() == [0.0, 1.0, 1.0]
    b = segs[segs.s == 1]
    assert list(zip(b.a, b.b, strict=True)) == [(0.5, 2.0), (2.0, 4.0), (4.0, 4.5)]
    assert b.piece.tolist() == [0, 1, 2]
    c = segs[segs.s == 2]
    # cut at lower (1.0), the grid (2.0), the covariate change (2.5), stop at upper (3.0)
    assert list(zip(c.a, c.b, strict=True)) == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5), (2.5, 3.0)]
    assert c.after.tolist() == [False, True, True, True]
    assert not a.after.any() and not b.after.any()
    assert data.event_segment[0] == a.index[-1] and data.event_segment[1:].tolist() == [-1, -1]
    assert data.counts["rows_after_end_of_follow_up_dropped"] == 0
    assert data.piece_labels == ["0-2 y", "2-4 y", "4+ y"]


def test_lifelines_convention_and_errors():
    frame = pd.DataFrame(
        {"id": [1, 1, 2], "start": [0, 2, 0], "stop": [2, 5, 3], "event": [0, 1, 0], "x": 1.0}
    )
    data = sv.counting_process_arrays(frame, covariates=["x"])
    assert data.event_type.tolist() == [sv.OBSERVED, sv.RIGHT]
    assert data.upper.tolist() == [5.0, 3.0]

    bad = frame.copy()
    bad.loc[0, "event"] = 1  # event on a row that is not the last
    bad.loc[1, "start"] = 1.0  # overlapping rows
    bad.loc[2, "x"] = np.nan  # missing covariate
    with pytest.raises(sv.CountingProcessError) as err:
        sv.counting_process_arrays(bad, covariates=["x"])
    text = str(err.value)
    assert "not the subject's last" in text and "overlap" in text and "missing" in text
    assert len(err.value.problems) == 3


def test_interval_bounds_checked():
    frame = _frame()
    frame.loc[3:, "upper"] = 7.0  # beyond the follow-up rows
    frame.loc[3:, "lower"] = -1.0  # before entry
    with pytest.raises(sv.CountingProcessError, match="before entry") as err:
        sv.counting_process_arrays(frame, event_type_col="event_type", covariates=["x"])
    assert any("follow-up rows end" in p for p in err.value.problems)


# ----------------------------------------------------------------------------- likelihood


def _loglik(data, eta, baseline) -> np.ndarray:
    return sv.subject_log_likelihood(data, np.asarray(eta, float), baseline).eval()


def test_piecewise_exponential_closed_forms():
    """Each censoring type against its closed form, with a covariate change and late entry."""
    data = sv.counting_process_arrays(
        _frame(), event_type_col="event_type", covariates=["x"], grid=[0, 2, 4, np.inf]
    )
    rates = np.array([0.2, 0.5, 0.9])
    beta = 0.7
    eta = beta * data.segment_covariates[:, 0]
    ll = _loglik(data, eta, sv.PiecewiseBaseline(pt.as_tensor(np.log(rates))))

    r = np.exp(beta)
    # a: observed at 3.0; x = 0 on (0, 1.5], x = 1 on (1.5, 3]
    h_a = 0.2 * 1.5 + 0.2 * r * 0.5 + 0.5 * r * 1.0
    expected_a = np.log(0.5 * r) - h_a
    # b: right-censored at 4.5, entry 0.5, x = 2
    r2 = np.exp(2 * beta)
    expected_b = -(0.2 * 1.5 + 0.5 * 2.0 + 0.9 * 0.5) * r2
    # c: interval (1, 3], entry 0; x = 0 until 2.5, then 1
    h_l = 0.2 * 1.0
    h_r = 0.2 * 2.0 + 0.5 * 0.5 + 0.5 * r * 0.5
    expected_c = np.log(np.exp(-h_l) - np.exp(-h_r))
    np.testing.assert_allclose(ll, [expected_a, expected_b, expected_c], rtol=1e-12)


def test_subset_keeps_each_subjects_likelihood():
    data = sv.counting_process_arrays(
        _frame(), event_type_col="event_type", covariates=["x"], grid=[0, 2, 4, np.inf]
    )
    base = sv.PiecewiseBaseline(pt.as_tensor(np.log([0.2, 0.5, 0.9])))
    eta = 0.7 * data.segment_covariates[:, 0]
    full = _loglik(data, eta, base)
    for keep in ([0, 2], [1], [2, 0]):
        sub, segments = data.subset(np.array(keep))
        assert sub.subject_ids == [data.subject_ids[i] for i in sorted(keep)]
        np.testing.assert_allclose(_loglik(sub, eta[segments], base), full[sorted(keep)])


def test_weibull_closed_forms_against_scipy():
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "start": 0.0,
            "stop": [2.0, 3.0, 5.0, 5.0],
            "event_type": ["observed", "right", "interval", "interval"],
            "lower": [np.nan, np.nan, 1.5, 0.0],
            "upper": [np.nan, np.nan, 4.0, 2.5],
        }
    )
    data = sv.counting_process_arrays(frame, event_type_col="event_type")
    k, lam = 1.7, 3.2
    ll = _loglik(
        data,
        np.zeros(data.n_segments),
        sv.WeibullBaseline(pt.as_tensor(k), pt.as_tensor(np.log(lam))),
    )
    dist = stats.weibull_min(k, scale=lam)
    expected = [
        dist.logpdf(2.0),
        dist.logsf(3.0),
        np.log(dist.sf(1.5) - dist.sf(4.0)),
        np.log(dist.cdf(2.5)),  # interval from 0: left-censored
    ]
    np.testing.assert_allclose(ll, expected, rtol=1e-10)


def test_interval_likelihood_stable_for_tiny_and_huge_increments():
    frame = pd.DataFrame(
        {
            "id": [1, 2],
            "start": 0.0,
            "stop": [1.0, 1.0],
            "event_type": "interval",
            "lower": [0.5, 0.5],
            "upper": [0.5 + 1e-12, 1.0],
        }
    )
    data = sv.counting_process_arrays(frame, event_type_col="event_type")
    log_rate = pt.dscalar("log_rate")
    ll = sv.subject_log_likelihood(
        data, np.zeros(data.n_segments), sv.PiecewiseBaseline(log_rate[None])
    )
    f = pytensor.function([log_rate], [ll, pytensor.grad(ll.sum(), log_rate)])
    # tiny interval: log(exp(-h L) - exp(-h R)) ~ -h L + log(h (R - L))
    values, grad = f(np.log(0.3))
    np.testing.assert_allclose(values[0], -0.15 + np.log(0.3 * 1e-12), rtol=1e-6)
    assert np.isfinite(grad)
    # enormous hazard: the later bound contributes nothing, log S(L) remains
    values, grad = f(np.log(1e4))
    np.testing.assert_allclose(values[1], -0.5e4, rtol=1e-12)
    assert np.all(np.isfinite(values)) and np.isfinite(grad)


def test_observed_variable_gives_per_subject_log_likelihood():
    data = sv.counting_process_arrays(
        _frame(), event_type_col="event_type", covariates=["x"], grid=[0, 2, 4, np.inf]
    )
    model = sv.build_counting_process_model(data, frailty=None, center=False)
    point = {"baseline_log_hazard": np.log([0.2, 0.5, 0.9]), "beta": np.array([0.7])}
    elementwise = model.compile_logp(vars=[model["survival"]], sum=False)(point)[0]
    direct = _loglik(
        data,
        0.7 * data.segment_covariates[:, 0],
        sv.PiecewiseBaseline(pt.as_tensor(np.log([0.2, 0.5, 0.9]))),
    )
    np.testing.assert_allclose(elementwise, direct, rtol=1e-12)
    assert model.named_vars_to_dims["survival"] == ("subject",)
    assert model.named_vars_to_dims["baseline_log_hazard"] == ("hazard_piece",)
    # predictive draws are 0/1 events
    prior = pm.sample_prior_predictive(draws=20, model=model, random_seed=1)
    assert set(np.unique(prior["prior_predictive"]["survival"].values)) <= {0, 1}


def test_exponential_rate_recovered_with_interval_censoring():
    """Interval-censored exponential data: the posterior rate covers the truth."""
    rng = np.random.default_rng(7)
    n, rate = 400, 0.4
    t = rng.exponential(1 / rate, n)
    visits = np.arange(0.0, 6.01, 1.5)  # visits every 1.5 years up to 6
    seen = t <= visits[-1]
    upper = visits[np.searchsorted(visits, np.minimum(t, visits[-1]), side="left")]
    lower = np.where(seen, upper - 1.5, visits[-1])
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "start": 0.0,
            "stop": visits[-1],
            "event_type": np.where(seen, "interval", "right"),
            "lower": lower,
            "upper": np.where(seen, upper, visits[-1]),
        }
    )
    tree = sv.fit_counting_process(
        frame, covariates=[], event_type_col="event_type", draws=400, tune=400, chains=2, seed=3
    )
    log_rate = tree["posterior"]["baseline_log_hazard"]
    assert abs(float(np.exp(log_rate).mean()) - rate) < 2.5 * float(np.exp(log_rate).std())
    assert tree["log_likelihood"]["survival"].sizes["subject"] == n


# ----------------------------------------------------------------------------- lifelines


def _within_half_se(tree, cox_summary, names) -> dict[str, float]:
    beta = tree["posterior"]["beta"]
    gaps = {}
    for name in names:
        mean = float(beta.sel(covariate=name).mean())
        gaps[name] = float(
            (mean - cox_summary.loc[name, "coef"]) / cox_summary.loc[name, "se(coef)"]
        )
    return gaps


@pytest.mark.slow
def test_stanford_heart_transplant_agrees_with_cox_time_varying():
    """Transplant as a time-varying treatment: posterior means within 0.5 SE of lifelines."""
    from lifelines import CoxTimeVaryingFitter
    from lifelines.datasets import load_stanford_heart_transplants

    df = load_stanford_heart_transplants()
    names = ["age", "year", "surgery", "transplant"]
    cox = CoxTimeVaryingFitter().fit(
        df, id_col="id", event_col="event", start_col="start", stop_col="stop"
    )
    data = sv.counting_process_arrays(df, covariates=names)
    grid = sv.quantile_grid(data.event_time_midpoints(), 40)  # fine baseline: ~2 deaths/piece
    tree = sv.fit_counting_process(
        df,
        covariates=names,
        grid=grid,
        draws=1000,
        tune=1000,
        chains=2,
        seed=11,
        target_accept=0.95,
        model_kwargs={"beta_sd": 10.0, "baseline_prior_sd": 5.0},
    )
    gaps = _within_half_se(tree, cox.summary, names)
    print("Stanford: (posterior mean - Cox) / Cox SE:", {k: round(v, 3) for k, v in gaps.items()})
    assert all(abs(g) < 0.5 for g in gaps.values()), gaps
    assert int(tree["sample_stats"]["diverging"].sum()) == 0


@pytest.mark.slow
def test_lung_with_institution_frailty_agrees_with_cox():
    """lung, ``inst`` as the site (log-normal frailty): within 0.5 SE of CoxPHFitter."""
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_lung

    df = load_lung().dropna(subset=["inst", "age", "sex", "ph.ecog"]).reset_index(drop=True)
    df = df.rename(columns={"ph.ecog": "ph_ecog"})
    names = ["age", "sex", "ph_ecog"]
    cox = CoxPHFitter().fit(df[["time", "status", *names]], "time", "status")
    df["id"] = np.arange(len(df))
    df["start"] = 0.0
    df["stop_years"] = df["time"] / 365.25
    df["inst"] = df["inst"].astype(int)
    data = sv.counting_process_arrays(
        df, stop_col="stop_years", event_col="status", covariates=names
    )
    grid = sv.quantile_grid(data.event_time_midpoints(), 40)
    tree = sv.fit_counting_process(
        df,
        covariates=names,
        grid=grid,
        stop_col="stop_years",
        event_col="status",
        cluster_col="inst",
        draws=1000,
        tune=1000,
        chains=2,
        seed=5,
        target_accept=0.95,
        model_kwargs={"beta_sd": 10.0, "baseline_prior_sd": 5.0, "frailty": "partial"},
    )
    assert tree["posterior"]["cluster_log_frailty"].sizes["cluster"] == df["inst"].nunique()
    gaps = _within_half_se(tree, cox.summary, names)
    print("lung: (posterior mean - Cox) / Cox SE:", {k: round(v, 3) for k, v in gaps.items()})
    assert all(abs(g) < 0.5 for g in gaps.values()), gaps
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
