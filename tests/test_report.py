"""Reports, figures and the prior predictive check (magbayes.report, `magbayes report`).

The tests that read a fit take the session's shared progression fit (conftest.py: 25
simulated patients, 2 chains x 100 draws, seeded, saved with its report); they read it,
reopen it or rewrite its report in a copy.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import magbayes as mb
from magbayes.cli import main
from magbayes.fit import FitResult, load_fit, resolve_spec, sample_prior
from magbayes.provenance import RESULTS_LAYOUT
from magbayes.report import write_report
from magbayes.report.methods import docstring_blocks
from magbayes.report.prior import prior_visit_years, write_prior_check
from magbayes.report.render import (
    Code,
    Document,
    Image,
    Math,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROGRESSION_FIGURES = ["trajectories", "ppc", "forest", "headline", "timing", "rank"]
RESULT_FILES = [
    "posterior.nc",
    "summary.csv",
    "headline.json",
    "diagnostics.json",
    "manifest.json",
    "report.md",
    "report.html",
]


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


# ----------------------------------------------------------------------------- round trip


def _draws_fit(slope: np.ndarray) -> FitResult:
    """A FitResult whose posterior is ``slope`` (chain, draw) and no divergence."""
    chains, draws = slope.shape
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"slope": (("chain", "draw"), slope)}, coords=coords),
            "sample_stats": xr.Dataset(
                {"diverging": (("chain", "draw"), np.zeros(slope.shape, bool))}, coords=coords
            ),
        }
    )
    return FitResult(tree, resolve_spec("progression"), {}, {}, {}, "", 1, "nutpie", {})


def _count_calls(monkeypatch, name: str) -> list[int]:
    """A list that grows by one at each call of ``arviz.<name>`` (which still runs)."""
    import arviz as az

    calls: list[int] = []
    real = getattr(az, name)
    monkeypatch.setattr(az, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_diagnostics_are_computed_once_and_again_when_the_draws_change(monkeypatch):
    import arviz as az

    rng = np.random.default_rng(3)
    result = _draws_fit(rng.normal(size=(2, 500)))
    real_rhat = az.rhat
    calls = _count_calls(monkeypatch, "rhat")
    first = result.diagnostics()
    assert first["passed"] and first["r_hat_max_variable"] == "slope"
    assert result.diagnostics() == first and len(calls) == 1
    # a variable added to the posterior: its chains disagree, so the gate fails
    stuck = np.stack([rng.normal(0, 1, 500), rng.normal(5, 1, 500)])
    result.posterior["posterior"]["level"] = xr.DataArray(stuck, dims=("chain", "draw"))
    added = result.diagnostics()
    assert len(calls) == 2 and added["r_hat_max_variable"] == "level" and not added["passed"]
    # another posterior altogether
    result.posterior = _draws_fit(stuck).posterior
    assert result.diagnostics()["r_hat_max"] == pytest.approx(float(real_rhat(stuck)), rel=1e-9)
    assert len(calls) == 3


def test_the_default_summary_is_computed_once_and_again_when_it_would_differ(monkeypatch):
    rng = np.random.default_rng(4)
    result = _draws_fit(rng.normal(size=(2, 500)))
    calls = _count_calls(monkeypatch, "summary")
    first = result.summary()
    first.loc["slope", "mean"] = 99.0  # a caller's change does not reach the stored one
    again = result.summary()
    assert len(calls) == 1 and again.loc["slope", "mean"] != 99.0
    assert list(again.index) == ["slope"]
    # other variables asked for, another HDI probability, a variable added: computed again
    assert list(result.summary(var_names=["slope"]).index) == ["slope"] and len(calls) == 2
    result.spec = result.spec.with_overrides({"sampler": {"hdi_prob": 0.5}})
    narrow = result.summary()
    assert (
        len(calls) == 3
        and narrow.filter(like="_ub").iloc[0, 0] < again.filter(like="_ub").iloc[0, 0]
    )
    result.posterior["posterior"]["patient_sd"] = xr.DataArray(
        rng.gamma(2.0, size=(2, 500)), dims=("chain", "draw")
    )
    assert "patient_sd" in result.summary().index and len(calls) == 4


@pytest.mark.slow
def test_saved_and_reopened_fit_gives_the_same_headline(progression_fit):
    result, folder = progression_fit
    reopened = load_fit(folder)
    again, original = _flat(reopened.headline()), _flat(result.headline())
    assert again.keys() == original.keys()
    for key, value in original.items():
        if isinstance(value, float):
            assert again[key] == pytest.approx(value), key
        else:
            assert again[key] == value, key
    saved = json.loads((folder / "headline.json").read_text())
    assert saved["p_sural_predicts_rituximab_benefit"] == pytest.approx(
        result.headline()["p_sural_predicts_rituximab_benefit"]
    )
    assert saved["mcse"] == pytest.approx(reopened.headline()["mcse"])


@pytest.mark.slow
def test_every_promised_file_and_figure_exists(progression_fit):
    _, folder = progression_fit
    for name in RESULT_FILES:
        assert (folder / name).is_file(), name
        assert (folder / name).stat().st_size > 0, name
    for name in PROGRESSION_FIGURES:
        assert _is_png(folder / "figures" / f"{name}.png"), name


@pytest.mark.slow
def test_a_report_shows_its_own_model_s_figures_only(progression_fit):
    # survival curves belong to the worsening model's definition, the timing contrast to
    # the progression model's (a figure that does not apply: tests/test_model_definition.py)
    _, folder = progression_fit
    assert not (folder / "figures" / "survival_curves.png").exists()
    assert (folder / "figures" / "timing.png").is_file()
    markdown = (folder / "report.md").read_text()
    assert "survival_curves" not in markdown
    assert "Prompt or delayed rituximab" in markdown


# ----------------------------------------------------------------------------- report content


@pytest.mark.slow
def test_html_is_self_contained_with_every_figure_embedded(progression_fit):
    _, folder = progression_fit
    html = (folder / "report.html").read_text()
    sources = re.findall(r'<img[^>]*\bsrc="([^"]*)"', html)
    assert sources, "no images in the HTML"
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert len(sources) >= len(PROGRESSION_FIGURES)
    assert "<link" not in html and "<script" not in html
    assert not re.search(r'href="(?!#)', html), "links to files outside the page"


@pytest.mark.slow
def test_markdown_links_each_drawn_figure(progression_fit):
    _, folder = progression_fit
    markdown = (folder / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", markdown)
    assert sorted(linked) == sorted(f"figures/{n}.png" for n in PROGRESSION_FIGURES)
    assert all((folder / link).is_file() for link in linked)


@pytest.mark.slow
def test_report_states_question_headline_methods_diagnostics_and_provenance(progression_fit):
    result, folder = progression_fit
    markdown = (folder / "report.md").read_text()
    headline = json.loads((folder / "headline.json").read_text())
    diagnostics = json.loads((folder / "diagnostics.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())

    assert headline["question"] in markdown
    assert f"{headline['p_sural_predicts_rituximab_benefit']:.3f}" in markdown
    assert f"MCSE {headline['mcse']:.3f}" in markdown
    assert "negative values mean more benefit" in markdown  # sign convention
    assert "94% highest-density" in markdown  # the HDI convention, in the methods
    # the spec's nutpie option is stated, so the sampling can be reproduced from the paper
    assert "1 extra trajectory doubling after each U-turn" in " ".join(markdown.split())
    for package in ("pymc", "nutpie", "arviz"):
        assert manifest["versions"][package] in markdown
    assert f"{diagnostics['chains']} chains of {diagnostics['draws']} draws" in markdown
    assert manifest["data_sha256"] and manifest["data_sha256"] in markdown
    assert f"random seed: `{manifest['seed']}`" in markdown
    assert result.command in markdown
    assert "magbayes report RESULTS" in markdown
    # the design's counts (imputed / left out) are listed
    for what in result.design_counts:
        assert what in markdown
    # the verdict matches diagnostics.json, with every reason when it failed
    if diagnostics["passed"]:
        assert "**PASSED**" in markdown
    else:
        assert "**FAILED**" in markdown
        for reason in diagnostics["reasons"]:
            assert reason in markdown
    # the model's equations and the priors from the resolved spec
    assert "```math" in markdown
    for key, value in result.spec.section("priors").items():
        if not isinstance(value, dict):
            assert f"`{key}`" in markdown


@pytest.mark.slow
def test_effects_table_matches_summary_csv(progression_fit):
    _, folder = progression_fit
    markdown = (folder / "report.md").read_text()
    summary = pd.read_csv(folder / "summary.csv", index_col="parameter")
    for name in ("gamma_rituximab_x_sural", "gamma_rituximab", "slope"):
        row = summary.loc[name]
        assert f"| `{name}` |" in markdown
        assert f"{row['mean']:.3f}" in markdown


@pytest.mark.slow
def test_failed_convergence_is_reported_with_its_reasons(progression_fit, tmp_path, monkeypatch):
    result, _ = progression_fit
    real = FitResult.diagnostics

    def failing(self):
        out = real(self)
        out.update(
            passed=False,
            r_hat_max=1.2,
            reasons=["R-hat 1.200 > 1.01 (gamma_rituximab)", "3 divergent transition(s)"],
        )
        return out

    monkeypatch.setattr(FitResult, "diagnostics", failing)
    files = write_report(result, tmp_path)
    markdown = files.markdown.read_text()
    assert "**FAILED**" in markdown
    assert "Warning: the convergence checks failed" in markdown
    assert "R-hat 1.200 > 1.01 (gamma_rituximab)" in markdown
    assert "3 divergent transition(s)" in markdown
    assert "the checks were NOT met" in markdown  # the methods paragraph does not hide it
    assert _is_png(tmp_path / "figures" / "rank.png")


# ----------------------------------------------------------------------------- magbayes report


@pytest.mark.slow
def test_report_command_rewrites_without_sampling(progression_fit, tmp_path, monkeypatch, capsys):
    import nutpie
    import pymc

    _, folder = progression_fit
    copy = tmp_path / "results"
    shutil.copytree(folder, copy)
    for name in ("report.md", "report.html"):
        (copy / name).unlink()
    shutil.rmtree(copy / "figures")
    before = (copy / "posterior.nc").read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("magbayes report must not sample")

    for name in ("sample", "sample_posterior_predictive", "sample_prior_predictive"):
        monkeypatch.setattr(pymc, name, refuse)
    monkeypatch.setattr(nutpie, "compile_pymc_model", refuse)
    monkeypatch.setattr(nutpie, "sample", refuse)  # fits sample through nutpie.sample

    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").is_file() and (copy / "report.html").is_file()
    for name in PROGRESSION_FIGURES:
        assert _is_png(copy / "figures" / f"{name}.png"), name
    assert (copy / "posterior.nc").read_bytes() == before
    assert "report written" in capsys.readouterr().out


def test_report_command_on_a_folder_without_results_is_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a magbayes results folder" in capsys.readouterr().err


# ------------------------------------------------------- results tied to data and layout


@pytest.mark.slow
def test_a_saved_fit_reopens_with_the_cohort_it_was_fitted_to(progression_fit, progression_cohort):
    result, folder = progression_fit
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["data_sha256"] == progression_cohort.sha256
    assert manifest["layout_version"] == RESULTS_LAYOUT
    assert load_fit(folder, cohort=progression_cohort).data_sha256 == progression_cohort.sha256
    assert load_fit(folder, cohort=progression_cohort.source).headline() == result.headline()


@pytest.mark.slow
def test_a_cohort_with_one_score_changed_is_refused_naming_both_hashes(
    progression_fit, progression_cohort, tmp_path
):
    _, folder = progression_fit
    changed = tmp_path / "cohort"
    shutil.copytree(progression_cohort.source, changed)
    visits = pd.read_csv(changed / "visits.csv")
    visits.loc[0, "incat"] = (int(visits.loc[0, "incat"]) + 1) % 10
    visits.to_csv(changed / "visits.csv", index=False)
    other = mb.load_cohort(changed)
    for given in (other, changed):
        with pytest.raises(mb.CohortMismatchError) as refused:
            load_fit(folder, cohort=given)
        assert progression_cohort.sha256 in str(refused.value) and other.sha256 in str(
            refused.value
        )


@pytest.mark.slow
@pytest.mark.parametrize("layout", [1, None])
def test_a_results_folder_of_another_layout_is_refused(progression_fit, tmp_path, capsys, layout):
    _, folder = progression_fit
    copy = tmp_path / "results"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.pop("layout_version")
    if layout is not None:
        manifest["layout_version"] = layout
    (copy / "manifest.json").write_text(json.dumps(manifest))
    said = f"results folder {copy} was written with results layout 1 by magbayes"
    with pytest.raises(mb.ResultsLayoutError, match=said):
        load_fit(copy)
    assert main(["report", str(copy)]) == 2
    assert "this magbayes reads layout 2; refit" in capsys.readouterr().err


# ----------------------------------------------------------------------------- prior only


def test_sample_prior_draws_trajectories_over_twelve_years(progression_cohort, tmp_path):
    sample = sample_prior(
        progression_cohort,
        "progression",
        draws=60,
        seed=3,
        visit_years=prior_visit_years("progression"),
    )
    assert "posterior" not in sample.tree.children
    assert sample.tree["prior"].sizes["draw"] == 60
    written = write_prior_check(sample, tmp_path / "prior")
    folder = tmp_path / "prior"
    assert _is_png(folder / "figures" / "prior_trajectories.png")
    summary = pd.read_csv(folder / "prior_summary.csv", index_col="parameter")
    assert "gamma_rituximab_x_sural" in summary.index
    assert {"mean", "sd"} <= set(summary.columns)
    table = pd.read_csv(folder / "prior_trajectories.csv")
    assert table["years_since_onset"].min() == 0.0
    assert table["years_since_onset"].max() == 12.0
    assert ((table["q05"] <= table["q50"]) & (table["q50"] <= table["q95"])).all()
    assert table[["q05", "q95"]].stack().between(0, 10).all()  # INCAT range
    assert json.loads((folder / "manifest.json").read_text())["kind"] == "prior predictive"
    assert all(p.is_file() for p in written)


def test_fit_prior_only_flag_writes_the_prior_check_and_does_not_sample(
    progression_cohort, tmp_path, monkeypatch, capsys
):
    import importlib

    import pymc

    def refuse(*args, **kwargs):
        raise AssertionError("--prior-only must not sample the posterior")

    monkeypatch.setattr(pymc, "sample", refuse)
    # how fits sample (the module: ``magbayes.fit`` is also the package's function)
    monkeypatch.setattr(importlib.import_module("magbayes.fit"), "sample_posterior", refuse)
    out = tmp_path / "prior_check"
    status = main(
        [
            "fit",
            "progression",
            "--data",
            str(progression_cohort.source),
            "--out",
            str(out),
            "--prior-only",
            "--draws",
            "40",
            "--seed",
            "2",
        ]
    )
    assert status == 0
    assert _is_png(out / "figures" / "prior_trajectories.png")
    assert (out / "prior_summary.csv").stat().st_size > 0
    assert not (out / "posterior.nc").exists()
    assert "INCAT at 12 y" in capsys.readouterr().out


# ----------------------------------------------------------------------------- rendering units


def test_docstring_becomes_paragraphs_equations_and_code():
    doc = r"""Title line.

    Inline :math:`\beta_x` and ``code`` and :func:`~magbayes.fit.fit`.

    .. math::

        y = a + b x

    A literal block::

        eta = 1
    """
    blocks = docstring_blocks(doc)
    kinds = [type(b).__name__ for b in blocks]
    assert kinds == ["Paragraph", "Paragraph", "Math", "Paragraph", "Code"]
    assert blocks[1].text == r"Inline $\beta_x$ and `code` and `magbayes.fit.fit`."
    assert blocks[2].latex.strip() == "y = a + b x"
    assert blocks[4].text.strip() == "eta = 1"


def test_html_escapes_text_and_embeds_images(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(PNG_MAGIC + b"0" * 2000)
    document = Document("A <title>")
    document.add(
        Paragraph("a < b and **bold** and `x|y`"),
        Table(pd.DataFrame({"col": ["v|w"]})),
        Image(png, "figures/x.png", "alt", "caption"),
        Math(r"\alpha + \beta"),
        Code("$ magbayes --help", "console"),
    )
    html = to_html(document)
    assert "a &lt; b" in html and "<strong>bold</strong>" in html
    assert "figures/x.png" not in html
    assert html.count("data:image/png;base64,") >= 2  # the figure and the equation
    markdown = to_markdown(document)
    assert "![alt](figures/x.png)" in markdown
    assert "| v\\|w |" in markdown
    assert "```math\n\\alpha + \\beta\n```" in markdown
