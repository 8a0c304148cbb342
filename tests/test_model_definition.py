"""A model defined through the model definition alone runs through the whole pipeline.

The model here is deliberately small (each patient's last INCAT score, Gaussian, against
rituximab ever given and early sural reduction), and nothing outside this file knows it:
it is registered with :func:`magbayes.models.register_model`, then fitted with ``mb.fit``,
saved, reloaded with ``mb.load_fit``, reported and compared (PSIS-LOO).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pymc as pm
import pytest

import magbayes as mb
from magbayes.labels import Effect
from magbayes.models import SHIPPED, get_model, register_model
from magbayes.models.base import Design, Headline, ModelDefinition, shared_defaults
from magbayes.report import write_report
from magbayes.report.compare import compare_fits
from magbayes.simulate import simulate_cohort


def _design(cohort, spec) -> Design:
    patients = cohort.patients
    known = patients["sural_reduced"].notna().to_numpy()
    ids = [str(i) for i in patients.index[known]]
    last = cohort.visits.sort_values("years_since_onset").groupby("patient_id")["incat"].last()
    rituximab = set(
        cohort.treatments.loc[cohort.treatments["treatment"] == "rituximab", "patient_id"]
    )
    return Design(
        model="last_score",
        coords={"patient": ids},
        data={
            "last_incat": last.reindex(ids).to_numpy(float),
            "rituximab": np.array([i in rituximab for i in ids], float),
            "sural_reduced": patients.loc[known, "sural_reduced"].to_numpy(float),
        },
        dims={"last_incat": ("patient",), "rituximab": ("patient",), "sural_reduced": ("patient",)},
        counts={"patients": len(ids)},
    )


def _model(design: Design, spec) -> pm.Model:
    d, scale = design.data, float(spec.section("priors")["effect_sd"])
    with pm.Model(coords=design.coords) as model:
        intercept = pm.Normal("intercept", 3.0, 3.0)
        beta_rituximab = pm.Normal("beta_rituximab", 0.0, scale)
        beta_rituximab_x_sural = pm.Normal("beta_rituximab_x_sural", 0.0, scale)
        beta_sural = pm.Normal("beta_sural", 0.0, scale)
        sigma = pm.HalfNormal("sigma", 2.0)
        mean = (
            intercept
            + d["sural_reduced"] * beta_sural
            + d["rituximab"] * (beta_rituximab + beta_rituximab_x_sural * d["sural_reduced"])
        )
        pm.Normal("last_incat", mean, sigma, observed=d["last_incat"], dims="patient")
    return model


LAST_SCORE = ModelDefinition(
    name="last_score",
    title="last INCAT score",
    defaults=shared_defaults(
        {"priors": {"effect_sd": 1.0}, "sampler": {"draws": 300, "tune": 300, "chains": 2}}
    ),
    make_design=_design,
    build_model=_model,
    headline=Headline(
        question="Is the last INCAT score lower after rituximab with early sural reduction?",
        contrast_var="beta_rituximab_x_sural",
        main_var="beta_rituximab",
        benefit_sign=-1,
        scale="difference in last INCAT score (points)",
    ),
    outcome_var="last_incat",
    summary_vars=("intercept", "beta_rituximab", "beta_rituximab_x_sural", "beta_sural", "sigma"),
    effects=lambda result: [
        Effect("rituximab × early sural reduction", "beta_rituximab_x_sural", {}, "INCAT points"),
        Effect("rituximab, sural-preserved", "beta_rituximab", {}, "INCAT points"),
    ],
)


@pytest.fixture(scope="module")
def cohort():
    register_model(LAST_SCORE)
    return simulate_cohort(n_patients=47, n_sites=2, seed=11).cohort


@pytest.mark.slow
def test_a_model_defined_alone_fits_saves_loads_reports_and_compares(cohort, tmp_path):
    result = mb.fit(cohort, "last_score", seed=3)
    assert result.model == "last_score"
    assert set(result.posterior["log_likelihood"].data_vars) == {"last_incat"}
    headline = result.headline()
    assert headline["contrast"]["variable"] == "beta_rituximab_x_sural"
    assert 0.0 <= headline["p_sural_predicts_rituximab_benefit"] <= 1.0

    folder = result.save(tmp_path / "fit")
    for name in ("posterior.nc", "summary.csv", "headline.json", "manifest.json", "report.md"):
        assert (folder / name).is_file(), name
    report = (folder / "report.md").read_text()
    assert "last INCAT score model" in report
    assert "rituximab × early sural reduction" in report

    loaded = mb.load_fit(folder, cohort=cohort)
    assert loaded.headline()["p_sural_predicts_rituximab_benefit"] == pytest.approx(
        headline["p_sural_predicts_rituximab_benefit"]
    )
    files = write_report(loaded, tmp_path / "again")
    drawn = {f.name for f in files.figures}
    assert {"forest", "headline", "ppc"} <= drawn
    assert "trajectories" in {s.name for s in files.skipped}  # no score at each visit
    again = (tmp_path / "again" / "report.md").read_text()
    assert "`trajectories.png`" in again and "not a score at each visit" in again

    wider = mb.fit(cohort, "last_score", seed=3, overrides={"priors": {"effect_sd": 3.0}})
    comparison = compare_fits({"narrow": result, "wide": wider})
    assert set(comparison.table.index) == {"narrow", "wide"}
    assert comparison.variable == "last_incat"


def test_a_typo_in_the_spec_of_a_model_defined_alone_is_refused(cohort):
    with pytest.raises(mb.SpecError, match="effect_sdd"):
        mb.fit(cohort, "last_score", overrides={"priors": {"effect_sdd": 2.0}})


def test_no_module_outside_models_names_a_shipped_model():
    """The pipeline, the report and the analyses read model definitions, never a model name."""
    package = Path(mb.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] in ("models", "simulate", "cohort", "_specs"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in SHIPPED:
                offenders.append(f"{relative}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def test_shipped_models_are_definitions():
    for name in SHIPPED:
        definition = get_model(name)
        assert isinstance(definition, ModelDefinition)
        assert definition.name == name
