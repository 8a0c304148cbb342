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


def test_split_at_grid_and_upper_bound():
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
    # cut at the grid (2.0) and the covariate change (2.5), stop at upper (3.0)
    assert list(zip(c.a, c.b, strict=True)) == [(0.0, 2.0), (2.0, 2.5), (2.5, 3.0)]
    assert data.counts["rows_after_end_of_follow_up_dropped"] == 0
    assert data.piece_labels == ["0-2 y", "2-4 y", "4+ y"]


def test_counting_process_outcome_as_visit_intervals():
    """Visits: entry, an interval's lower bound, the end; the value is the last interval."""
    data = sv.counting_process_arrays(
        _frame(), event_type_col="event_type", covariates=["x"], grid=[0, 2, 4, np.inf]
    )
    intervals, value, segment_of = sv.visit_intervals_of(data)
    assert intervals.subject_ids == data.subject_ids
    np.testing.assert_array_equal(
        intervals.visit_times, [[0.0, 3.0, np.nan], [0.5, 4.5, np.nan], [0.0, 1.0, 3.0]]
    )
    assert value.tolist() == [1, 0, 2] and value.dtype == np.int64
    c = intervals.segment_subject == 2
    # c's first segment (0, 2] is cut at its lower bound 1.0, the visit that opens (1, 3]
    assert list(zip(intervals.segment_start[c], intervals.segment_stop[c], strict=True)) == [
        (0.0, 1.0),
        (1.0, 2.0),
        (2.0, 2.5),
        (2.5, 3.0),
    ]
    assert intervals.segment_interval[c].tolist() == [0, 1, 1, 1]
    np.testing.assert_array_equal(intervals.segment_covariates, data.segment_covariates[segment_of])
    np.testing.assert_array_equal(intervals.segment_piece, data.segment_piece[segment_of])
    # an interval from entry is one visit interval (left-censored)
    frame = _frame()
    frame.loc[3:, "lower"] = 0.0
    assert sv.visit_intervals_of(
        sv.counting_process_arrays(frame, event_type_col="event_type", covariates=["x"])
    )[1].tolist() == [1, 0, 1]
    # a lower bound in a gap of the rows is not in follow-up
    gap = frame.assign(start=[0.0, 1.5, 0.5, 0.0, 2.5], stop=[1.5, 3.0, 4.5, 0.5, 6.0])
    gap.loc[3:, "lower"] = 1.0
    with pytest.raises(sv.CountingProcessError, match="not at risk just before the visit at 1"):
        sv.visit_intervals_of(
            sv.counting_process_arrays(gap, event_type_col="event_type", covariates=["x"])
        )


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
    # the observed value is the visit interval of the event, as in the worsening model:
    # a (exact time) 1, b (right-censored) 0, c (in (1, 3], visits 0, 1, 3) 2
    prior = pm.sample_prior_predictive(draws=200, model=model, random_seed=1)
    assert prior["observed_data"]["survival"].values.tolist() == [1, 0, 2]
    drawn = prior["prior_predictive"]["survival"].values.reshape(-1, 3)
    assert set(np.unique(drawn[:, :2])) == {0, 1} and set(np.unique(drawn[:, 2])) == {0, 1, 2}


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


# ----------------------------------------------------------------------------- visit intervals


def _visit_frame() -> pd.DataFrame:
    """a: covariate change at 1.5, follow-up rows beyond the last visit; b: one row."""
    return pd.DataFrame(
        {
            "id": ["a", "a", "b"],
            "start": [0.0, 1.5, 0.0],
            "stop": [1.5, 5.0, 3.0],
            "x": [0.0, 1.0, 2.0],
        }
    )


VISITS = {"a": [0.5, 1.0, 2.5, 4.0], "b": [0.0, 3.0]}


def _visit_data() -> sv.VisitIntervalData:
    return sv.visit_interval_arrays(_visit_frame(), VISITS, covariates=["x"], grid=[0, 2, np.inf])


def test_visit_intervals_split_at_visits_rows_and_grid():
    data = _visit_data()
    assert data.subject_ids == ["a", "b"]
    assert data.n_intervals.tolist() == [3, 1]
    assert data.max_intervals == 3
    np.testing.assert_array_equal(data.visit_times[1], [0.0, 3.0, np.nan, np.nan])
    segs = pd.DataFrame(
        {
            "s": data.segment_subject,
            "k": data.segment_interval,
            "a": data.segment_start,
            "b": data.segment_stop,
            "piece": data.segment_piece,
            "x": data.segment_covariates[:, 0],
        }
    )
    a = segs[segs.s == 0]
    # before the first visit (0.5) and after the last (4.0): not part of the outcome
    assert list(zip(a.a, a.b, strict=True)) == [
        (0.5, 1.0),
        (1.0, 1.5),
        (1.5, 2.0),
        (2.0, 2.5),
        (2.5, 4.0),
    ]
    assert a.k.tolist() == [0, 1, 1, 1, 2]
    assert a.piece.tolist() == [0, 0, 0, 1, 1] and a.x.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    b = segs[segs.s == 1]
    assert list(zip(b.a, b.b, strict=True)) == [(0.0, 2.0), (2.0, 3.0)] and b.k.tolist() == [0, 0]
    assert data.interval_end_segment.tolist() == [[0, 3, 4], [6, -1, -1]]
    sub, segments = data.subset(np.array([False, True]))
    assert sub.subject_ids == ["b"] and segments.tolist() == [5, 6]
    assert sub.interval_end_segment.tolist() == [[1, -1, -1]]


def test_visit_interval_problems_are_listed():
    frame = _visit_frame()
    with pytest.raises(sv.CountingProcessError) as err:
        sv.visit_interval_arrays(frame, {"a": [1.0, 0.5], "c": [0.0, 1.0]})
    text = str(err.value)
    assert "'a'" in text and "'b'" in text and "'c'" in text  # not increasing; none; no rows
    with pytest.raises(sv.CountingProcessError, match="follow-up rows end"):
        sv.visit_interval_arrays(frame, {"a": [0.5, 6.0], "b": [0.0, 3.0]})
    gap = frame.assign(start=[0.0, 2.0, 0.0])  # a is not at risk on (1.5, 2]
    with pytest.raises(sv.CountingProcessError, match="not at risk just before the visit at 2"):
        sv.visit_interval_arrays(gap, {"a": [0.5, 2.0, 4.0], "b": [0.0, 3.0]})


RATES, BETA = (0.3, 0.8), 0.6  # hazard pieces (0, 2], (2, inf); log-HR per unit of x


def _hazard(sid: str, t: float) -> float:
    """Hazard of ``sid`` of :func:`_visit_frame` just before ``t`` (closed form)."""
    rows = _visit_frame().query("id == @sid and start < @t and stop >= @t")
    return RATES[0 if t <= 2.0 else 1] * np.exp(BETA * float(rows.x.iloc[0]))


def _cumulative(sid: str, lo: float, hi: float) -> float:
    """``H(lo, hi)`` of ``sid``: the hazard is constant between the grid and row bounds."""
    frame = _visit_frame().query("id == @sid")
    inside = [c for c in (2.0, *frame.start, *frame.stop) if lo < c < hi]
    cuts = sorted({lo, hi, *inside})
    return sum(_hazard(sid, b) * (b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True))


@pytest.mark.parametrize("exact", [False, True])
def test_visit_interval_likelihood_reads_the_value(exact):
    """Each value against its closed form: right-, interval-censored, or exact at the visit."""
    data = _visit_data()
    base = sv.PiecewiseBaseline(pt.as_tensor(np.log(RATES)))
    eta = BETA * data.segment_covariates[:, 0]
    hazard = sv.interval_hazards(data, eta, base)
    log_h = sv.visit_log_hazard(data, eta, base) if exact else None
    value = pt.lvector("value")
    f = pytensor.function([value], sv.visit_interval_log_likelihood(value, hazard, log_h))
    for i, sid in enumerate(data.subject_ids):
        t = np.asarray(VISITS[sid])
        for v in range(data.max_intervals + 1):
            got = f(np.array([v, 0] if i == 0 else [0, v]))[i]
            if v > len(t) - 1:
                assert got == -np.inf  # beyond the last visit: impossible
                continue
            if v == 0:
                expected = -_cumulative(sid, t[0], t[-1])
            elif exact:
                expected = np.log(_hazard(sid, t[v])) - _cumulative(sid, t[0], t[v])
            else:
                expected = -_cumulative(sid, t[0], t[v - 1]) + np.log(
                    -np.expm1(-_cumulative(sid, t[v - 1], t[v]))
                )
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"{sid} v={v}")
    if not exact:
        # a distribution over 0..J: the probabilities sum to one
        probs = np.exp([f(np.full(2, v)) for v in range(data.max_intervals + 1)])
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-12)


def test_exact_and_interval_events_together():
    """``exact`` picks, per subject, the event at the visit or in the interval before it."""
    data = _visit_data()
    base = sv.PiecewiseBaseline(pt.as_tensor(np.log(RATES)))
    eta = BETA * data.segment_covariates[:, 0]
    hazard = sv.interval_hazards(data, eta, base)
    log_h = sv.visit_log_hazard(data, eta, base)
    value = np.array([2, 1])
    in_interval = sv.visit_interval_log_likelihood(value, hazard).eval()
    at_visit = sv.visit_interval_log_likelihood(value, hazard, log_h).eval()
    assert np.all(np.abs(in_interval - at_visit) > 0.1)
    for mask in ([True, False], [False, True]):
        mixed = sv.visit_interval_log_likelihood(value, hazard, log_h, exact=np.array(mask))
        np.testing.assert_allclose(mixed.eval(), np.where(mask, at_visit, in_interval))


def test_drawn_visit_intervals_follow_the_likelihood():
    hazard = np.array([[0.1, 0.4, 0.05, 0.3], [0.9, 0.2, 0.0, 0.0], [1e-4, 2.5, 0.0, 0.0]])
    value = pt.lvector("value")
    f = pytensor.function([value], sv.visit_interval_log_likelihood(value, pt.as_tensor(hazard)))
    probs = np.exp([f(np.full(3, v)) for v in range(5)]).T  # (subject, value)
    draws = sv.draw_visit_interval(np.broadcast_to(hazard, (20000, 3, 4)), np.random.default_rng(4))
    assert draws.shape == (20000, 3) and draws.dtype == np.int64
    for i in range(3):
        counts = np.bincount(draws[:, i], minlength=5)
        possible = probs[i] > 0
        assert counts[~possible].sum() == 0  # never beyond the last interval
        test = stats.chisquare(counts[possible], 20000 * probs[i, possible])
        assert test.pvalue > 1e-3, (i, counts, probs[i])
    # the check has power: the same draws against the hazards of another subject fail it
    counts = np.bincount(draws[:, 1], minlength=5)[:3]
    assert stats.chisquare(counts, 20000 * probs[2, :3] / probs[2, :3].sum()).pvalue < 1e-6


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
