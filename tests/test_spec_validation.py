"""A model spec is checked against its model's schema before anything is fitted.

Every bad spec below is written as TOML to a file and refused with a ``SpecError`` naming the
file, the table and the key (and the closest valid key or value where there is one). Nothing
here fits a model.
"""

# ruff: noqa: E501 (the corpus of bad specs: one spec per line)
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from magbayes import simulate_cohort
from magbayes.cli import main
from magbayes.errors import SpecError
from magbayes.fit import FitResult, resolve_spec
from magbayes.models import blocks, progression, response, worsening
from magbayes.spec import builtin_spec_names, load_spec, resolve_spec_path

ROOT = Path(__file__).resolve().parents[1]

#: (model, TOML after the ``model = ...`` line, fragments the message must contain).
BAD_SPECS = [
    ("progression", "[priors]\ninteraction_sdd = 0.05", ["`interaction_sdd` is not a key of [priors]", "did you mean `interaction_sd`?"]),
    ("progression", "[treatments]\nlater_line_efect = false", ["`later_line_efect` is not a key of [treatments]", "did you mean `later_line_effect`?"]),
    ("progression", "[prior]\nslope_sd = 0.5", ["[prior] is not a table of a progression spec", "did you mean [priors]?"]),
    ("progression", 'outcome = "incat"', ["[outcome] must be a table"]),
    ("progression", "[priors]\nslope_sd = -0.7", ["[priors] `slope_sd` must be a positive number, not -0.7"]),
    ("progression", '[priors]\nslope_sd = "0.7"', ["[priors] `slope_sd` must be a positive number, not '0.7'"]),
    ("progression", '[outcome]\nscore = "incatt"', ["[outcome] `score` must be one of", "did you mean 'incat'?"]),
    ("progression", '[outcome]\nlikelihood = "probit"', ["[outcome] `likelihood` must be one of 'auto'"]),
    ("progression", "[early_sural]\nthreshold_uv = -1.0", ["[early_sural] `threshold_uv` must be a number of 0 or more"]),
    ("progression", '[early_sural]\nmissing = "zero"', ["[early_sural] `missing` must be one of 'marginalise', 'exclude'"]),
    ("progression", '[sites]\npooling = "partal"', ["[sites] `pooling`", "did you mean 'partial'?"]),
    ("progression", '[patients]\nparametrisation = "both"', ["[patients] `parametrisation` must be one of"]),
    ("progression", "[sampler]\ndraws = 0", ["[sampler] `draws` must be a positive integer, not 0"]),
    ("progression", "[sampler]\nchains = 2.5", ["[sampler] `chains` must be a positive integer"]),
    ("progression", "[sampler]\ntune = -5", ["[sampler] `tune` must be a positive integer"]),
    ("progression", "[sampler]\ntarget_accept = 1.2", ["[sampler] `target_accept` must be a number between 0 and 1"]),
    ("progression", "[sampler]\nhdi_prob = 0.0", ["[sampler] `hdi_prob` must be a number between 0 and 1"]),
    ("progression", "[sampler]\nprior_drawz = 100", ["`prior_drawz` is not a key of [sampler]", "did you mean `prior_draws`?"]),
    ("progression", '[treatments]\nlater_line_effect = "yes"', ["[treatments] `later_line_effect` must be true or false"]),
    ("progression", '[treatments]\nmodelled = ["ivig", "ivg"]', ["[treatments] `modelled` must be a list, each element one of"]),
    ("progression", '[sensitivity]\nprior_keys = ["no_such_sd"]', ["[sensitivity] `prior_keys`"]),
    ("worsening", '[outcome]\nconfirmation = "next"', ["[outcome] `confirmation`", "did you mean 'next_visit'?"]),
    ("worsening", "[baseline_hazard]\ngrid_years = [0.0, 4.0, 2.0]", ["[baseline_hazard] `grid_years` must be a list of numbers starting at 0 and increasing"]),
    ("worsening", '[baseline_hazard]\nkind = "cox"', ["[baseline_hazard] `kind` must be one of 'piecewise', 'weibull'"]),
    ("worsening", "[figures]\nhorizon_years = 0", ["[figures] `horizon_years` must be a positive number"]),
    ("worsening", '[treatments]\nexposure = "always"', ["[treatments] `exposure`"]),
    ("worsening", "[priors]\nfrailty_sdd = 0.5", ["`frailty_sdd` is not a key of [priors]", "did you mean `frailty_sd`?"]),
    ("worsening", "[outcome]\nchange = -1", ["[outcome] `change` must be a positive number"]),
    ("response", '[outcome]\npartial = "half"', ["[outcome] `partial` must be one of 'failure', 'success'"]),
    ("response", '[treatments]\nreference = "rituximab"', ["[treatments] `reference` must be one of"]),
    ("response", "[priors.sensitivity]\nslope_sd = [1.0]", ["`slope_sd` is not a key of [priors.sensitivity]"]),
    ("response", "[priors.sensitivity]\ninteraction_sd = [0.5, -2.0]", ["[priors.sensitivity] `interaction_sd` must be a non-empty list"]),
    ("response", "[sensitivity]\nthreshold_uv = []", ["[sensitivity] `threshold_uv` must be a non-empty list"]),
    ("response", '[outcome]\nscore = "incat"', ["`score` is not a key of [outcome]"]),
    ("joint", '[event]\nkind = "stroke"', ["[event] `kind` must be one of 'death', 'death_or_dropout'"]),
    ("joint", "[priors]\nassociation_sd = -1.0", ["[priors] `association_sd` must be"]),
    (
        "joint",
        '[event]\nassociation = "slope"',
        ["[event] `association` must be one of 'value', 'value_and_slope'"],
    ),
]  # fmt: skip


def _write(tmp_path: Path, model: str, body: str) -> Path:
    path = tmp_path / f"my_{model}.toml"
    path.write_text(f'model = "{model}"\n{body}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "model, body, fragments", BAD_SPECS, ids=[f"{m}:{b.splitlines()[-1]}" for m, b, _ in BAD_SPECS]
)
def test_a_bad_spec_is_refused_naming_file_table_and_key(tmp_path, model, body, fragments):
    path = _write(tmp_path, model, body)
    with pytest.raises(SpecError) as caught:
        resolve_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_every_problem_of_a_spec_is_reported_at_once(tmp_path):
    text = resolve_spec_path("progression").read_text(encoding="utf-8")
    text = text.replace("\ninteraction_sd = ", "\ninteraction_sdd = ")
    text = text.replace("later_line_effect = true", "later_line_efect = false")
    path = tmp_path / "my.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        resolve_spec(path)
    assert len(caught.value.problems) == 2
    assert "did you mean `interaction_sd`?" in str(caught.value)
    assert "did you mean `later_line_effect`?" in str(caught.value)


@pytest.mark.parametrize("name", ["progression", "worsening", "response", "joint"])
def test_every_shipped_spec_and_its_defaults_validate(name):
    assert name in builtin_spec_names()
    spec = load_spec(name)
    assert spec.is_builtin
    resolved = resolve_spec(name)
    assert resolved.is_builtin and resolved.data["model"] == name


def test_an_edited_valid_copy_loads_and_is_the_users_own(tmp_path):
    text = resolve_spec_path("progression").read_text(encoding="utf-8")
    text = text.replace("later_line_effect = true", "later_line_effect = false")
    path = tmp_path / "my.toml"
    path.write_text(text, encoding="utf-8")
    spec = resolve_spec(path)
    assert spec.section("treatments")["later_line_effect"] is False
    assert not spec.is_builtin


def test_overrides_are_checked_too():
    spec = resolve_spec("progression")
    with pytest.raises(SpecError, match=r"\[sensitivity\] `threshold_uv`"):
        spec.with_overrides({"sensitivity": {"threshold_uv": [5.0, -1.0]}})
    with pytest.raises(SpecError, match="did you mean `draws`"):
        resolve_spec("progression", {"sampler": {"drawz": 10}})
    assert spec.with_overrides({"priors": {"interaction_sd": 1.0}}).is_builtin
    assert not spec.with_overrides({"covariates": {"baseline": ["age_at_onset"]}}).is_builtin


def test_the_command_line_refuses_a_bad_copy_and_writes_nothing(tmp_path, capsys):
    text = resolve_spec_path("progression").read_text(encoding="utf-8")
    text = text.replace("\ninteraction_sd = ", "\ninteraction_sdd = ")
    spec = tmp_path / "my.toml"
    spec.write_text(text, encoding="utf-8")
    data = tmp_path / "cohort"
    assert main(["simulate", "--out", str(data), "--patients", "12", "--seed", "3"]) == 0
    out = tmp_path / "results"
    assert main(["fit", str(spec), "--data", str(data), "--out", str(out)]) == 2
    assert f"{spec}: `interaction_sdd` is not a key of [priors]" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- covariates


@pytest.fixture(scope="module")
def cohort_without_dml():
    """A simulated cohort without the optional median_dml_ms column."""
    cohort = simulate_cohort(n_patients=30, n_sites=2, seed=7).cohort
    return dataclasses.replace(cohort, patients=cohort.patients.drop(columns=["median_dml_ms"]))


def test_the_shipped_response_spec_leaves_out_a_missing_column(cohort_without_dml):
    design = response.make_design(cohort_without_dml, resolve_spec("response"))
    assert "median_dml_ms" not in design.coords["covariate"]
    assert design.coords["covariate"] == [
        c for c in response.DEFAULTS["covariates"]["baseline"] if c != "median_dml_ms"
    ]
    (left,) = design.left_out_covariates
    assert left["covariate"] == "median_dml_ms"
    assert "no column median_dml_ms" in left["reason"]
    assert "left out" in str(design)


def test_a_users_spec_naming_a_missing_column_is_refused(cohort_without_dml, tmp_path):
    path = _write(tmp_path, "response", '[covariates]\nbaseline = ["median_dml_ms"]')
    with pytest.raises(SpecError, match="median_dml_ms"):
        response.make_design(cohort_without_dml, resolve_spec(path))
    overridden = resolve_spec("response", {"covariates": {"baseline": ["median_dml_ms"]}})
    with pytest.raises(SpecError, match="median_dml_ms"):
        response.make_design(cohort_without_dml, overridden)


@pytest.mark.parametrize("module", [progression, worsening])
def test_the_same_rule_holds_for_every_model(module, cohort_without_dml, tmp_path):
    cohort = dataclasses.replace(
        cohort_without_dml, patients=cohort_without_dml.patients.drop(columns=["pattern"])
    )
    design = module.make_design(cohort, resolve_spec(module.NAME))
    left = {c["covariate"] for c in design.left_out_covariates}
    assert left == {"pattern_cidp_like", "pattern_axonal"}
    assert not left & set(design.coords["covariate"])
    path = _write(tmp_path, module.NAME, '[covariates]\nbaseline = ["pattern_axonal"]')
    with pytest.raises(SpecError, match="no column pattern"):
        blocks.usable_covariates(cohort, resolve_spec(path))


def test_the_manifest_lists_the_left_out_covariates(cohort_without_dml):
    design = response.make_design(cohort_without_dml, resolve_spec("response"))
    result = FitResult(
        posterior=xr.DataTree.from_dict({"posterior": xr.Dataset()}),
        spec=resolve_spec("response"),
        design_counts=design.counts,
        standardisation=design.standardisation,
        cohort_summary={},
        data_sha256="",
        seed=1,
        sampler="nutpie",
        timing={},
        left_out_covariates=design.left_out_covariates,
    )
    manifest = json.loads(json.dumps(result.manifest(), default=str))
    assert manifest["left_out_covariates"] == [
        {"covariate": "median_dml_ms", "reason": design.left_out_covariates[0]["reason"]}
    ]


# --------------------------------------------------------------------------- terminal

#: PyTensor's BLAS warning is emitted when its config first reads ``blas__ldflags`` (on this
#: machine no BLAS is found, so it warns; the flag read is what every fit's compile does).
_READ_BLAS = "import pytensor; pytensor.config.blas__ldflags"


def _stderr(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_command_line_hides_pytensors_blas_warning_and_the_api_does_not():
    shown = _stderr(f"import magbayes; {_READ_BLAS}")
    if "could not link to a BLAS" not in shown:
        pytest.skip("PyTensor finds a BLAS library here: no warning to hide")
    hidden = _stderr(f"from magbayes.cli import main; main([]); {_READ_BLAS}")
    assert "could not link to a BLAS" not in hidden
