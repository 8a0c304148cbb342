"""Sensitivity analysis: the grid from the spec, the spec at each point, and a tiny run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from magbayes.analyses.sensitivity import (
    COLUMNS,
    GridPoint,
    grid_values,
    sensitivity_grid,
    spec_for_point,
    sural_counts,
)
from magbayes.cli import main
from magbayes.errors import SpecError
from magbayes.fit import resolve_spec
from magbayes.simulate import simulate_cohort


@pytest.fixture(scope="module")
def spec():
    return resolve_spec("progression")


def _triples(points):
    return [(p.threshold_uv, p.window_years, p.prior_scale, p.varied) for p in points]


def test_one_at_a_time_grid_varies_one_factor_around_the_default(spec):
    points = sensitivity_grid(spec)
    assert _triples(points) == [
        (5.0, 3.0, 1.0, "default"),
        (3.0, 3.0, 1.0, "threshold_uv"),
        (7.0, 3.0, 1.0, "threshold_uv"),
        (5.0, 2.0, 1.0, "window_years"),
        (5.0, 5.0, 1.0, "window_years"),
        (5.0, 3.0, 0.5, "prior_scale"),
        (5.0, 3.0, 2.0, "prior_scale"),
    ]


def test_full_grid_is_the_product_with_the_default_first(spec):
    points = sensitivity_grid(spec, full=True)
    assert len(points) == 27
    assert points[0] == GridPoint(5.0, 3.0, 1.0, "default")
    combos = {(p.threshold_uv, p.window_years, p.prior_scale) for p in points}
    assert len(combos) == 27
    assert {p.varied for p in points[1:]} == {"grid"}


def test_grid_follows_the_spec_and_always_holds_its_default(spec):
    custom = spec.with_overrides(
        {
            "early_sural": {"threshold_uv": 4.0},
            "sensitivity": {"threshold_uv": [2.0, 6.0], "window_years": [3.0]},
        }
    )
    values = grid_values(custom)
    assert values["threshold_uv"] == [2.0, 4.0, 6.0]  # the spec's 4 µV is added
    assert values["window_years"] == [3.0]
    points = sensitivity_grid(custom)
    assert points[0] == GridPoint(4.0, 3.0, 1.0, "default")
    assert len(points) == 1 + 2 + 0 + 2
    with pytest.raises(SpecError, match="threshold_uv"):
        grid_values(spec.with_overrides({"sensitivity": {"threshold_uv": [5.0, -1.0]}}))
    with pytest.raises(SpecError, match="non-empty list"):
        grid_values(spec.with_overrides({"sensitivity": {"window_years": []}}))


def test_a_point_sets_the_definition_and_scales_only_the_headline_priors(spec):
    point_spec = spec_for_point(spec, GridPoint(7.0, 2.0, 2.0, "grid"))
    assert point_spec.section("early_sural")["threshold_uv"] == 7.0
    assert point_spec.section("early_sural")["window_years"] == 2.0
    priors, base = point_spec.section("priors"), spec.section("priors")
    assert priors["interaction_sd"] == pytest.approx(2 * base["interaction_sd"])
    assert priors["rituximab_sd"] == pytest.approx(2 * base["rituximab_sd"])
    assert priors["treatment_sd"] == base["treatment_sd"]
    assert spec.section("early_sural")["threshold_uv"] == 5.0  # the original is untouched
    # prior_keys must name priors of the spec (refused when the spec is checked)
    with pytest.raises(SpecError, match="no_such_sd"):
        odd = spec.with_overrides({"sensitivity": {"prior_keys": ["no_such_sd"]}})
        spec_for_point(odd, GridPoint(5.0, 3.0, 2.0))


def test_sural_counts_follow_the_definition():
    cohort = simulate_cohort(n_patients=30, n_sites=2, seed=4).cohort
    strict = sural_counts(cohort, GridPoint(1.0, 3.0, 1.0))
    lenient = sural_counts(cohort, GridPoint(10.0, 3.0, 1.0))
    assert sum(strict.values()) == sum(lenient.values()) == 30
    assert strict["n_sural_unknown"] == lenient["n_sural_unknown"]
    assert lenient["n_sural_reduced"] >= strict["n_sural_reduced"]


@pytest.mark.slow
def test_tiny_sensitivity_run_writes_table_and_figure(tmp_path, capsys):
    data = tmp_path / "cohort"
    assert main(["simulate", "--out", str(data), "--patients", "12", "--seed", "5"]) == 0
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(
        'model = "progression"\n'
        "[sensitivity]\n"
        "threshold_uv = [5.0, 7.0]\n"
        "window_years = [3.0]\n"
        "prior_scale = [1.0]\n"
        "[sampler]\n"
        "draws = 30\n"
        "tune = 30\n"
        "chains = 1\n"
        "seed = 9\n"
    )
    out = tmp_path / "sensitivity"
    argv = ["sensitivity", str(spec_path), "--data", str(data), "--out", str(out)]
    status = main([*argv, "--workers", "2", "--allow-warnings"])
    assert status == 0
    table = pd.read_csv(out / "sensitivity.csv")
    assert list(table.columns) == COLUMNS
    assert table["varied"].tolist() == ["default", "threshold_uv"]
    assert table["threshold_uv"].tolist() == [5.0, 7.0]
    assert (table["status"] == "ok").all(), table["error"].tolist()
    assert table["p"].between(0, 1).all()
    assert (table["contrast_hdi_low"] <= table["contrast_hdi_high"]).all()
    counts = table[["n_sural_reduced", "n_sural_preserved", "n_sural_unknown"]].sum(axis=1)
    assert counts.eq(12).all()
    assert (out / "sensitivity.png").stat().st_size > 20_000
    manifest = json.loads((out / "sensitivity.json").read_text())
    assert manifest["sampling"]["draws"] == 30
    assert manifest["grid"] == "one at a time"
    assert "sensitivity.csv" in capsys.readouterr().out
