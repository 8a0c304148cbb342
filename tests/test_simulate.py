"""Tests of the calibrated cohort simulator (magbayes.simulate) and `magbayes simulate`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

from magbayes.cli import main
from magbayes.simulate import DEFAULT_SURAL_RITUXIMAB_EFFECT, simulate_cohort
from magbayes.simulate.events import first_confirmed_worsening

COVARIATES = ["age_at_onset", "log10_anti_mag_titer", "pattern_cidp_like", "pattern_axonal"]
FILES = ["patients.csv", "visits.csv", "treatments.csv", "truth.json"]


@pytest.fixture(scope="module")
def big():
    """One large cohort (hazard mode) for calibration checks."""
    return simulate_cohort(n_patients=2000, n_sites=3, seed=20200, worsening_from="hazard")


@pytest.fixture(scope="module")
def big_scores():
    """One large cohort with worsening read from the scores (exact progression truth)."""
    return simulate_cohort(n_patients=1500, n_sites=2, seed=515, worsening_from="scores")


def _bytes(folder):
    return {name: (folder / name).read_bytes() for name in FILES}


def _truth_patients(truth) -> pd.DataFrame:
    return pd.DataFrame.from_dict(truth["patients"], orient="index")


def _course_effects(truth) -> pd.DataFrame:
    """Courses with gamma (slope change) and beta (log HR) recomputed from the parameters."""
    courses = pd.DataFrame(truth["courses"])
    prog, w = truth["progression"], truth["worsening"]
    reduced = courses["patient_id"].map(_truth_patients(truth)["true_sural_reduced"]).astype(float)
    ritux = courses["treatment"] == "rituximab"
    later = (courses["line"] >= 2).astype(float)
    other_gamma = courses["treatment"].map(prog["gamma_treatment"])
    courses["gamma_expected"] = (
        np.where(
            ritux,
            prog["gamma_rituximab"] + prog["gamma_rituximab_x_sural"] * reduced,
            other_gamma.fillna(0.0),
        )
        + prog["gamma_later_line"] * later
    )
    if w["applicable"]:
        other_beta = courses["treatment"].map(w["beta_treatment"])
        courses["beta_expected"] = np.where(
            ritux,
            w["beta_rituximab"] + w["beta_rituximab_x_sural"] * reduced,
            other_beta.fillna(0.0),
        )
    return courses


def _exposure(truth, visits: pd.DataFrame, weights: pd.Series) -> np.ndarray:
    """sum over courses of weight_k * (t - start_k)+ at each visit."""
    courses = pd.DataFrame(truth["courses"])[["patient_id", "start_years"]]
    courses["w"] = np.asarray(weights, float)
    pairs = pd.DataFrame(
        {"row": np.arange(len(visits)), "patient_id": visits["patient_id"].to_numpy()}
    ).merge(courses, on="patient_id")
    rows = pairs["row"].to_numpy()
    t = visits["years_since_onset"].to_numpy(float)
    out = np.zeros(len(visits))
    np.add.at(out, rows, pairs["w"].to_numpy() * np.maximum(t[rows] - pairs["start_years"], 0))
    return out


def _on_treatment(truth, visits: pd.DataFrame) -> np.ndarray:
    """1 at visits after the start of a patient's first course, else 0."""
    first = pd.DataFrame(truth["courses"]).groupby("patient_id")["start_years"].min()
    start = visits["patient_id"].map(first).to_numpy(float)
    return (visits["years_since_onset"].to_numpy(float) >= start).astype(float)


def _eta_from_truth(truth, visits: pd.DataFrame) -> np.ndarray:
    """Latent disability recomputed from truth.json's parameters (not the simulator's code)."""
    prog = truth["progression"]
    pt = _truth_patients(truth)
    z = pd.DataFrame(list(pt["covariates_standardised"]), index=pt.index)[COVARIATES]
    beta = np.array([prog["beta_covariate"][c] for c in COVARIATES])
    t = visits["years_since_onset"].to_numpy(float)
    pid = visits["patient_id"]
    eta = (
        pid.map(pt["level"]).to_numpy(float)
        + pid.map(pt["rate"]).to_numpy(float) * t
        + pid.map(pd.Series(z.to_numpy() @ beta, index=z.index)).to_numpy(float)
    )
    return eta + _exposure(truth, visits, _course_effects(truth)["gamma_expected"])


def _ordinal_loglik(values: np.ndarray, eta: np.ndarray, cutpoints) -> float:
    """Ordered-logistic log-likelihood, P(y <= k) = logistic(c_(k+1) - eta)."""
    c = np.concatenate([[-np.inf], cutpoints, [np.inf]])
    y = values.astype(int)
    p = expit(c[y + 1] - eta) - expit(c[y] - eta)
    return float(np.log(p).sum())


# ---------------------------------------------------------------- reproducibility


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = simulate_cohort(seed=7)
    b = simulate_cohort(seed=7)
    a.write(tmp_path / "a")
    b.write(tmp_path / "b")
    first, second = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    assert first == second
    assert all(len(content) > 100 for content in first.values())
    assert b"\r" not in first["visits.csv"]


def test_different_seed_gives_different_files():
    a = simulate_cohort(seed=7).files()
    b = simulate_cohort(seed=8).files()
    for name in FILES:
        assert a[name] != b[name], name


def test_seed_drawn_when_omitted_is_recorded_and_reproduces():
    a = simulate_cohort(n_patients=20)
    seed = a.truth["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert simulate_cohort(n_patients=20, seed=seed).files() == a.files()


def test_truth_json_is_valid_sorted_json(tmp_path):
    sim = simulate_cohort(seed=3)
    sim.write(tmp_path / "c")
    text = (tmp_path / "c" / "truth.json").read_text(encoding="utf-8")
    truth = json.loads(text)
    assert truth == sim.truth
    assert list(truth) == sorted(truth)
    assert "NaN" not in text and "Infinity" not in text
    assert truth["seed"] == 3
    assert truth["generator"]["n_patients"] == 47
    assert truth["generator"]["worsening_from"] == "hazard"
    assert set(truth["covariate_standardisation"]) == set(COVARIATES)
    assert set(truth["progression"]["site_level"]) == {"centre_A", "centre_B"}
    assert len(truth["progression"]["cutpoints"]["incat"]) == 10
    assert len(truth["progression"]["cutpoints"]["onls"]) == 12
    assert len(truth["progression"]["cutpoints"]["mrs"]) == 6
    assert set(truth["patients"]) == set(sim.cohort.patient_ids)
    assert len(truth["courses"]) == len(sim.treatments)


# ---------------------------------------------------------------- interaction option


def test_zero_sural_effect_sets_every_interaction_to_zero():
    truth = simulate_cohort(n_patients=30, seed=1, sural_rituximab_effect=0).truth
    assert truth["progression"]["gamma_rituximab_x_sural"] == 0.0
    assert truth["worsening"]["beta_rituximab_x_sural"] == 0.0
    assert truth["response"]["alpha_rituximab_x_sural"] == 0.0
    ritux = [c for c in truth["courses"] if c["treatment"] == "rituximab"]
    assert ritux, "expected rituximab courses"
    # without the interaction, the slope change does not depend on sural status
    patients = truth["patients"]
    gammas = {
        (c["line"] >= 2, patients[c["patient_id"]]["true_sural_reduced"]): c["gamma"] for c in ritux
    }
    for (later, _), value in gammas.items():
        assert value == pytest.approx(gammas.get((later, True), value))
        assert value == pytest.approx(gammas.get((later, False), value))


def test_default_sural_effect_means_more_benefit_when_reduced():
    truth = simulate_cohort(n_patients=30, seed=1).truth
    assert truth["progression"]["gamma_rituximab_x_sural"] == DEFAULT_SURAL_RITUXIMAB_EFFECT < 0
    assert truth["worsening"]["beta_rituximab_x_sural"] < 0
    assert truth["response"]["alpha_rituximab_x_sural"] > 0
    custom = simulate_cohort(n_patients=30, seed=1, sural_rituximab_effect=-0.5).truth
    assert custom["progression"]["gamma_rituximab_x_sural"] == -0.5
    assert custom["worsening"]["beta_rituximab_x_sural"] == pytest.approx(-0.5)
    assert custom["response"]["alpha_rituximab_x_sural"] == pytest.approx(1.0)


def test_overrides_apply_and_unknown_names_are_refused():
    sim = simulate_cohort(n_patients=30, seed=2, slope=0.1, response={"patient_sd": 0.0})
    assert sim.truth["progression"]["slope"] == 0.1
    assert sim.truth["response"]["patient_sd"] == 0.0
    assert all(p["response_patient_effect"] == 0.0 for p in sim.truth["patients"].values())
    assert sim.truth["generator"]["overrides"]["slope"] == 0.1
    with pytest.raises(ValueError, match="unknown simulator option"):
        simulate_cohort(n_patients=10, seed=1, slop=0.1)
    with pytest.raises(ValueError, match="sections"):
        simulate_cohort(n_patients=10, seed=1, beta_covariate={"age_at_onset": 0.0})
    with pytest.raises(ValueError, match="sum to 1"):
        simulate_cohort(n_patients=10, seed=1, pattern_probabilities={"distal_demyelinating": 0.9})
    with pytest.raises(ValueError, match="n_sites"):
        simulate_cohort(n_patients=3, n_sites=4, seed=1)
    with pytest.raises(ValueError, match="worsening_from"):
        simulate_cohort(n_patients=3, seed=1, worsening_from="both")


# ---------------------------------------------------------------- calibration


def test_patients_match_published_figures(big):
    p = big.patients
    share = p["pattern"].value_counts(normalize=True)
    assert p["pattern"].notna().all()
    assert abs(share["distal_demyelinating"] - 0.61) < 0.03
    assert abs(share["cidp_like"] - 0.34) < 0.03
    assert abs(share["axonal"] - 0.05) < 0.03
    assert 0.72 <= (p["sex"] == "M").mean() <= 0.78
    assert abs(p["age_at_onset"].mean() - 62.6) < 1.0
    assert p["age_at_onset"].between(25, 91).all()
    titre = p["anti_mag_titer_btu"].dropna()
    assert abs((titre < 10_000).mean() - 0.11) < 0.03
    assert abs((titre >= 70_000).mean() - 0.38) < 0.04
    sizes = p["site"].value_counts()
    assert list(sizes.index) == ["centre_A", "centre_B", "centre_C"]
    assert sizes.is_monotonic_decreasing and sizes.iloc[0] > sizes.iloc[-1]


def test_electrophysiology_is_plausible_and_partly_missing(big):
    p = big.patients
    dd = p[p["pattern"] == "distal_demyelinating"]
    assert dd["tli_median"].median() < 0.26
    assert 7 <= dd["median_dml_ms"].median() <= 12
    assert 20 <= dd["median_mcv_ms"].median() <= 35
    axonal = p[p["pattern"] == "axonal"]
    assert axonal["median_dml_ms"].median() < dd["median_dml_ms"].median()
    assert axonal["tli_median"].median() > 0.3
    for column in ["median_dml_ms", "ulnar_mcv_ms", "peroneal_cmap_mv", "anti_mag_titer_btu"]:
        assert 0.03 <= p[column].isna().mean() <= 0.12, column
    assert (p[["median_cmap_mv", "ulnar_cmap_mv", "peroneal_cmap_mv"]].dropna() >= 0).all().all()
    assert 0.01 <= p["sural_snap_uv"].isna().mean() <= 0.08
    assert (p["sural_snap_uv"] == 0).mean() > 0.15  # absent responses are common
    assert 1.4 <= p["first_ncs_years"].mean() <= 2.1
    assert (p["first_ncs_years"] <= 3).mean() > 0.8


def test_early_sural_reduction_share_and_truth(big):
    sural = big.cohort.patients["sural_reduced"]
    defined = sural.dropna().astype(bool)
    assert 0.45 <= defined.mean() <= 0.65
    assert 0.05 <= sural.isna().mean() <= 0.25
    truth = _truth_patients(big.truth)["true_sural_reduced"]
    # where the default definition is defined, it is the true status
    assert (truth.loc[defined.index].astype(bool) == defined).all()


def test_treatments_match_published_figures(big):
    t, n = big.treatments, big.cohort.n_patients
    assert 0.72 <= t["patient_id"].nunique() / n <= 0.84
    assert (t.loc[t["line"] == 1, "treatment"] == "ivig").mean() > 0.7
    ritux = t[t["treatment"] == "rituximab"]
    assert ritux["patient_id"].is_unique
    assert 0.30 <= len(ritux) / n <= 0.45  # 18/47 = 38%
    by_line = ritux["line"].value_counts(normalize=True)
    assert by_line.idxmax() == 2  # 10 of 18 at second line
    assert by_line.get(1, 0) < 0.15 and 0.15 <= by_line.get(3, 0) <= 0.40
    assert 3.8 <= ritux["start_years"].mean() <= 5.4  # 54.9 months
    assert {"corticosteroids", "plasma_exchange", "cyclophosphamide", "chlorambucil"} <= set(
        t["treatment"]
    )


def test_courses_are_consistent(big):
    t = big.treatments
    last = big.cohort.patients["follow_up_years"]
    assert (t["start_years"] <= t["patient_id"].map(last)).all()
    stopped = t["stop_years"].notna()
    assert (t.loc[stopped, "stop_years"] > t.loc[stopped, "start_years"]).all()
    assert t["stop_years"].isna().any()
    by_line = t.sort_values(["patient_id", "line"])
    assert (by_line["line"] == by_line.groupby("patient_id").cumcount() + 1).all()
    same = t.sort_values(["patient_id", "treatment", "start_years"])
    previous_stop = same.groupby(["patient_id", "treatment"])["stop_years"].shift()
    has_previous = same.groupby(["patient_id", "treatment"]).cumcount() > 0
    assert (same.loc[has_previous, "start_years"] >= previous_stop[has_previous]).all()
    assert set(t["response"]) == {"good", "partial", "none", "unknown"}
    assert 0.02 <= (t["response"] == "unknown").mean() <= 0.09


def test_visits_scores_and_follow_up(big):
    v = big.visits
    gaps = v.groupby("patient_id")["years_since_onset"].diff().dropna()
    assert 0.5 <= gaps.median() <= 1.0
    assert (gaps > 0).all()
    follow_up = big.cohort.patients["follow_up_years"]
    assert follow_up.max() <= 12.0
    assert 7.0 <= follow_up.mean() <= 9.5  # Svahn 2018: 8.4 years
    first = v.groupby("patient_id")["years_since_onset"].min()
    assert 1.0 <= first.median() <= 2.5
    for score, high in (("incat", 10), ("onls", 12), ("mrs", 6)):
        values = v[score].dropna()
        assert str(v[score].dtype) == "Int64"
        assert values.between(0, high).all(), score
    irods = v["irods"].dropna()
    assert irods.between(0, 100).all()
    assert ((irods * 10).round() == irods * 10).all()
    assert 0.5 <= v["irods"].notna().mean() <= 0.7
    assert v[["incat", "onls", "mrs", "irods"]].notna().any(axis=1).all()


def test_disability_is_realistic(big_scores):
    v = big_scores.visits
    first = v.groupby("patient_id").first()
    last = v.groupby("patient_id").last()
    assert 2 <= first["incat"].median() <= 3
    assert (last["incat"] >= 6).mean() > 0.02  # a few reach INCAT >= 6
    assert (last["incat"] >= 6).mean() < 0.2
    mrs_last = v.dropna(subset=["mrs"]).groupby("patient_id")["mrs"].last()
    assert 0.35 <= (mrs_last >= 2).mean() <= 0.60  # "nearly half" disabled at last visit
    near = lambda t: v[(v["years_since_onset"] - t).abs() < 0.5].dropna(subset=["mrs"])  # noqa: E731
    at5 = (near(5).groupby("patient_id")["mrs"].first() >= 3).mean()
    at10 = (near(10).groupby("patient_id")["mrs"].first() >= 3).mean()
    assert 0.06 <= at5 <= 0.25 and 0.15 <= at10 <= 0.40 and at10 > at5  # 16% / 24%


def test_responses_match_published_figures(big):
    courses = pd.DataFrame(big.truth["courses"])
    ritux = courses[courses["treatment"] == "rituximab"]
    ivig = courses[courses["treatment"] == "ivig"]
    good_ritux = (ritux["true_response"] == "good").mean()
    assert 0.30 <= good_ritux <= 0.50  # Svahn 31.5%, thesis ~50%
    assert (ivig["true_response"] == "good").mean() < good_ritux - 0.1
    recorded = courses[courses["response"] != "unknown"]
    assert (recorded["response"] == recorded["true_response"]).all()


# ---------------------------------------------------------------- truths describe the data


def test_progression_truth_reproduces_score_distribution(big_scores):
    truth, v = big_scores.truth, big_scores.visits
    courses = _course_effects(truth)
    assert np.allclose(courses["gamma"], courses["gamma_expected"])
    eta = _eta_from_truth(truth, v)
    cutpoints = truth["progression"]["cutpoints"]
    for score in ("incat", "onls", "mrs"):
        cuts = np.asarray(cutpoints[score])
        observed = v[score].notna().to_numpy()
        values = v[score].to_numpy(float, na_value=np.nan)[observed]
        for k in (1, len(cuts) // 3, len(cuts) // 2):
            expected = expit(eta[observed] - cuts[k - 1]).mean()
            assert (values >= k).mean() == pytest.approx(expected, abs=0.015), (score, k)
    prog = truth["progression"]
    mean = expit(prog["irods_intercept"] - prog["irods_slope"] * eta)
    observed = v["irods"].notna().to_numpy()
    irods = v["irods"].to_numpy(float, na_value=np.nan)[observed]
    assert irods.mean() == pytest.approx(100 * mean[observed].mean(), abs=1.0)
    assert np.corrcoef(eta[observed], irods)[0, 1] < -0.6


def test_progression_truth_is_the_most_likely_latent_disability(big_scores):
    """Moving eta away from the truth in any model direction lowers the likelihood."""
    truth, v = big_scores.truth, big_scores.visits
    eta = _eta_from_truth(truth, v)
    courses = _course_effects(truth)
    reduced = courses["patient_id"].map(_truth_patients(truth)["true_sural_reduced"])
    ritux_reduced = ((courses["treatment"] == "rituximab") & reduced).astype(float)
    directions = {
        "level": (np.ones(len(v)), 0.3),
        "slope per year": (v["years_since_onset"].to_numpy(float), 0.04),
        "any treatment exposure": (_exposure(truth, v, pd.Series(1.0, courses.index)), 0.1),
        "on treatment (step)": (_on_treatment(truth, v), 0.15),
        "rituximab x sural exposure": (_exposure(truth, v, ritux_reduced), 0.25),
    }

    def loglik(latent):
        total = 0.0
        for score in ("incat", "onls", "mrs"):
            seen = v[score].notna().to_numpy()
            values = v[score].to_numpy(float, na_value=np.nan)[seen]
            total += _ordinal_loglik(values, latent[seen], truth["progression"]["cutpoints"][score])
        return total

    at_truth = loglik(eta)
    for name, (x, step) in directions.items():
        for sign in (-1, 1):
            assert loglik(eta + sign * step * x) < at_truth, (name, sign)


def test_response_truth_reproduces_ratings(big):
    truth = big.truth
    courses = pd.DataFrame(truth["courses"])
    r = truth["response"]
    patients = _truth_patients(truth)
    z = pd.DataFrame(list(patients["covariates_standardised"]), index=patients.index)
    ritux = courses["treatment"] == "rituximab"
    reduced = courses["patient_id"].map(patients["true_sural_reduced"]).astype(float)
    expected = (
        r["alpha_intercept"]
        + np.where(
            ritux,
            r["alpha_rituximab"] + r["alpha_rituximab_x_sural"] * reduced,
            courses["treatment"].map(r["alpha_treatment"]).fillna(0.0),
        )
        + r["alpha_later_line"] * (courses["line"] >= 2)
        + courses["patient_id"].map(z[COVARIATES] @ pd.Series(r["beta_covariate"])[COVARIATES])
        + courses["patient_id"].map(patients["response_patient_effect"])
        + courses["patient_id"].map(patients["site"]).map(r["site_effect"])
    )
    lp = courses["response_linear_predictor"].to_numpy(float)
    assert np.allclose(lp, expected)
    c_partial, c_good = r["cutpoints"]
    assert (courses["true_response"] == "good").mean() == pytest.approx(
        expit(lp - c_good).mean(), abs=0.03
    )
    assert (courses["true_response"] != "none").mean() == pytest.approx(
        expit(lp - c_partial).mean(), abs=0.03
    )


def _cumulative_hazard(truth, courses, pid, start, stop, step=0.002):
    """H_i(stop) - H_i(start) recomputed from truth.json (numerical integral)."""
    w = truth["worsening"]
    patient = truth["patients"][pid]
    breaks = np.asarray(w["hazard_breaks_years"])
    h0 = np.asarray(w["baseline_hazard"])
    fixed = w["site_log_frailty"][patient["site"]] + sum(
        w["beta_covariate"][c] * patient["covariates_standardised"][c] for c in COVARIATES
    )
    grid = np.arange(start, stop, step) + step / 2
    log_h = np.log(h0[np.searchsorted(breaks, grid, side="right") - 1]) + fixed
    for course_start, beta in courses:
        log_h = log_h + beta * (grid >= course_start)
    return float(np.exp(log_h).sum() * step)


def test_worsening_times_follow_the_true_hazard(big):
    truth, v = big.truth, big.visits
    entry = v.groupby("patient_id")["years_since_onset"].min()
    courses = _course_effects(truth)
    assert np.allclose(courses["beta"], courses["beta_expected"])
    by_patient = {
        pid: list(zip(g["start_years"], g["beta_expected"], strict=True))
        for pid, g in courses.groupby("patient_id")
    }
    masses = np.array(
        [
            _cumulative_hazard(
                truth, by_patient.get(pid, []), pid, entry[pid], patient["worsening_time"]
            )
            for pid, patient in truth["patients"].items()
        ]
    )
    # H(T) - H(entry) is Exp(1) when T is drawn from the stated hazard
    assert masses.mean() == pytest.approx(1.0, abs=0.08)
    assert stats.kstest(masses, "expon").pvalue > 0.001


def test_each_worsening_is_detected_at_first_visit_after_true_time(big):
    truth, v = big.truth, big.visits
    assert truth["worsening"]["applicable"] is True
    detected = first_confirmed_worsening(v)
    n_detected = 0
    for pid, g in v.groupby("patient_id"):
        t_true = truth["patients"][pid]["worsening_time"]
        times = g["years_since_onset"].to_numpy()
        incat = g["incat"].to_numpy(float)
        after = np.nonzero(times > t_true)[0]
        assert (incat[times <= t_true] <= incat[0]).all()
        assert (incat[after] >= incat[0] + 1).all()
        if len(after) and after[0] + 1 < len(times) and after[0] > 0:
            assert detected[pid] == times[after[0]]
            n_detected += 1
        else:
            assert np.isnan(detected[pid])
        recorded = truth["patients"][pid]["first_confirmed_worsening_years"]
        assert (recorded is None and np.isnan(detected[pid])) or recorded == detected[pid]
    assert 0.3 <= n_detected / v["patient_id"].nunique() <= 0.75


def test_scores_mode_has_no_worsening_truth(big_scores):
    truth = big_scores.truth
    assert truth["worsening"]["applicable"] is False
    assert all(p["worsening_time"] is None for p in truth["patients"].values())
    assert truth["progression"]["exact_for_incat"] is True
    # worsening still happens, read from the scores
    detected = [p["first_confirmed_worsening_years"] for p in truth["patients"].values()]
    assert sum(d is not None for d in detected) > 100


# ---------------------------------------------------------------- files and command line


def test_written_cohort_loads_and_matches_memory(tmp_path):
    read = pytest.importorskip("magbayes.cohort.read")
    sim = simulate_cohort(n_patients=60, n_sites=3, seed=11)
    sim.write(tmp_path / "cohort")
    loaded = read.load_cohort(tmp_path / "cohort")
    assert loaded.n_patients == 60 and loaded.n_visits == sim.cohort.n_visits
    a, b = loaded.summary(), sim.cohort.summary()
    a.pop("source"), b.pop("source")
    assert a == b
    pd.testing.assert_frame_equal(
        loaded.visits.drop(columns="source_row"), sim.cohort.visits.drop(columns="source_row")
    )
    cols = ["patient_id", "treatment", "line", "start_years", "stop_years", "response"]
    pd.testing.assert_frame_equal(loaded.treatments[cols], sim.cohort.treatments[cols])
    numeric = ["age_at_onset", "anti_mag_titer_btu", "sural_snap_uv", "tli_median"]
    pd.testing.assert_frame_equal(loaded.patients[numeric], sim.cohort.patients[numeric])
    assert (loaded.patients["sural_reduced"].astype(object).fillna(-1)
            == sim.cohort.patients["sural_reduced"].astype(object).fillna(-1)).all()  # fmt: skip


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["simulate", "--out", str(out), "--seed", "5", "--patients", "30"]) == 0
    printed = capsys.readouterr().out
    for name in FILES:
        assert name in printed
        assert (out / name).is_file()
    assert "seed 5" in printed
    before = _bytes(out)
    assert main(["simulate", "--out", str(out), "--seed", "6", "--patients", "30"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert _bytes(out) == before
    args = ["simulate", "--out", str(out), "--seed", "6", "--patients", "30", "--force"]
    assert main([*args, "--worsening-from", "scores", "--sural-rituximab-effect", "0"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 6 and truth["worsening"]["applicable"] is False
    assert truth["progression"]["gamma_rituximab_x_sural"] == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary leftovers
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)


def test_cli_writes_into_existing_empty_folder(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["simulate", "--out", str(out), "--seed", "1", "--patients", "5"]) == 0
    assert (out / "truth.json").is_file()


def test_cli_rejects_bad_numbers(tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["simulate", "--out", str(tmp_path / "x"), "--patients", "0"])
    assert stop.value.code == 2
    assert main(["simulate", "--out", str(tmp_path / "y"), "--patients", "2", "--sites", "3"]) == 2
    assert not (tmp_path / "y").exists()
