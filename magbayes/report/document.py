"""``report.md`` and ``report.html`` of a results folder.

:func:`write_report` draws the figures (:mod:`magbayes.report.figures`), writes the
model's own output files (its definition's ``write_outputs``: the worsening model's
survival-curve and hazard-ratio tables), and writes one document in two
formats: the question and its answer, the cohort, the model in words and equations, the
priors, a methods paragraph, the headline with its MCSE and sign convention, the effects,
the figures, the diagnostics and their verdict, what was imputed or left out, and the
reproducibility block. It reads only the fit object, so ``magbayes report RESULTS``
rewrites it from a saved folder without refitting.
"""

from __future__ import annotations

import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from magbayes.atomic import write_text
from magbayes.models import get_model
from magbayes.report import figures as fig
from magbayes.report import methods, tables
from magbayes.report.render import (
    BulletList,
    Code,
    Document,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from magbayes.result import PRIOR_SENSITIVITY_FILE

if TYPE_CHECKING:
    from magbayes.fit import FitResult


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote.

    Attributes
    ----------
    markdown, html : pathlib.Path
        ``report.md`` and ``report.html``.
    figures : list of DrawnFigure
        The figures drawn.
    skipped : list of SkippedFigure
        Figures not drawn, with the reason.
    extra : list of pathlib.Path
        Files written by the model definition's ``write_outputs``.
    """

    markdown: Path
    html: Path
    figures: list[fig.DrawnFigure] = field(default_factory=list)
    skipped: list[fig.SkippedFigure] = field(default_factory=list)
    extra: list[Path] = field(default_factory=list)


def write_report(result: FitResult, folder: Path) -> ReportFiles:
    """Draw the figures and write ``report.md`` and ``report.html`` into ``folder``.

    Parameters
    ----------
    result : FitResult
        A fitted (or reloaded) model.
    folder : pathlib.Path
        The results folder; ``figures/`` is created inside it.

    Returns
    -------
    ReportFiles
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    extra, failure = _model_outputs(result, folder)
    drawn, skipped = fig.draw_figures(result, folder)
    document = build_document(result, folder, drawn, skipped, extra, failure)
    markdown = folder / "report.md"
    html = folder / "report.html"
    write_text(markdown, to_markdown(document))
    write_text(html, to_html(document))
    return ReportFiles(markdown, html, drawn, skipped, extra)


def _model_outputs(result: FitResult, folder: Path) -> tuple[list[Path], str]:
    """Files of the model definition's ``write_outputs`` and, if it failed, the error."""
    try:
        written = get_model(result.model).write_outputs(result, folder) or []
    except Exception as err:  # noqa: BLE001 (reported, never silent: a fit is not lost)
        warnings.warn(f"{result.model} outputs could not be written: {err!r}", stacklevel=2)
        return [], f"{err!r}"
    return [Path(p) for p in written], ""


def build_document(
    result: FitResult,
    folder: Path,
    drawn: list[fig.DrawnFigure],
    skipped: list[fig.SkippedFigure],
    extra: list[Path] | None = None,
    extra_failure: str = "",
) -> Document:
    """The report's blocks, in order (see the module docstring)."""
    headline = result.headline()
    diagnostics = result.diagnostics()
    title = f"magbayes report: {get_model(result.model).report_title} model"
    doc = Document(title)

    doc.add(Heading("The question"))
    p = headline["p_sural_predicts_rituximab_benefit"]
    doc.add(
        Paragraph(f"**{headline['question']}**"),
        Paragraph(
            f"Posterior probability: **{p:.3f}** (Monte Carlo standard error "
            f"{headline['mcse']:.3f}); see *Headline* for the contrast and its sign."
        ),
    )
    if not diagnostics["passed"]:
        doc.add(
            Paragraph(
                "**Warning: the convergence checks failed** ("
                + "; ".join(diagnostics["reasons"])
                + "). Do not interpret these numbers before refitting with more draws or "
                "tuning steps; see *Diagnostics* below."
            )
        )

    doc.add(Heading("Cohort"))
    source = result.cohort_summary.get("source", "")
    doc.add(
        Paragraph(f"Cohort `{source}` (SHA-256 of its files below, under *Reproducibility*)."),
        Table(tables.cohort_table(result.cohort_summary)),
    )
    courses = tables.courses_table(result.cohort_summary)
    if len(courses):
        doc.add(Table(courses, caption="Treatment courses by line and treatment"))

    doc.add(Heading("Model"))
    doc.add(*methods.model_blocks(result))
    spec_path = result.spec.path or "(built in code)"
    doc.add(Paragraph(f"Spec: `{spec_path}`; the resolved spec is in `manifest.json`."))

    doc.add(Heading("Priors", level=3))
    doc.add(
        Paragraph(
            "Scales of the priors as fitted (the spec's values with the model's defaults "
            "filled in), on the model's latent scale."
        ),
        Table(tables.priors_table(result)),
    )
    if "prior" in result.posterior.children:
        doc.add(
            Paragraph(
                "What these priors imply for the data can be drawn without the data: "
                "`magbayes fit "
                + (result.model or "MODEL")
                + " --data COHORT --out PRIOR_CHECK --prior-only`."
            )
        )

    doc.add(Heading("Methods (ready to cite)"))
    doc.add(Paragraph(methods.methods_paragraph(result)))

    doc.add(Heading("Headline"))
    doc.add(
        Table(tables.headline_table(headline)),
        Paragraph(methods.sign_convention(result)),
    )
    if "timing" in headline:
        timing = headline["timing"]
        doc.add(
            Heading("Prompt or delayed rituximab", level=3),
            Paragraph(timing["sentence"]),
            Table(tables.timing_table(timing)),
            Paragraph(
                "Each patient of the cohort was predicted under both strategies from their "
                "own posterior (g-computation), and the difference averaged over the "
                "patients of each early-sural group. In plain words, the answer holds if "
                "the decision to treat rested on what the cohort records (nothing unmeasured "
                "drove both treatment and disability), and if each treatment course changes "
                "the rate of progression linearly from its start. `magbayes predict` gives "
                "the same predictions patient by patient."
            ),
        )

    sensitivity = folder / PRIOR_SENSITIVITY_FILE
    if sensitivity.is_file():
        table = pd.read_csv(sensitivity)
        doc.add(
            Heading("Prior sensitivity", level=3),
            Paragraph(
                "The headline refitted under the alternative priors of the spec's "
                "`[priors.sensitivity]` (same cohort, sampler settings and seed; saved in "
                f"`{PRIOR_SENSITIVITY_FILE}`). With few rituximab courses the prior matters: "
                "read the headline together with this table."
            ),
            Table(tables.prior_sensitivity_table(table)),
        )

    for section in get_model(result.model).report_sections(result):
        doc.add(Heading(section.title), *(Paragraph(text) for text in section.paragraphs))
        if section.table is not None:
            doc.add(Table(section.table, caption=section.caption))

    doc.add(Heading("Effects"))
    doc.add(
        Paragraph(
            f"Posterior mean, sd and {round(100 * result.hdi_prob)}% HDI of each "
            "population-level parameter, with the Monte Carlo standard error of the mean, "
            "the effective sample sizes and R-hat (also in `summary.csv`)."
        ),
        Table(tables.effects_table(result)),
    )

    doc.add(Heading("Figures"))
    for figure in drawn:
        doc.add(
            Heading(figure.title, level=3),
            Image(
                figure.path,
                f"figures/{figure.path.name}",
                figure.title,
                figure.caption,
            ),
        )
    if skipped:
        doc.add(
            Paragraph("Figures not drawn for this fit:"),
            BulletList([f"`{s.name}.png` ({s.title}): {s.reason}" for s in skipped]),
        )

    doc.add(Heading("Diagnostics"))
    verdict = (
        "**PASSED**: R-hat, effective sample size and divergence checks all met."
        if diagnostics["passed"]
        else "**FAILED**: " + "; ".join(diagnostics["reasons"]) + ". "
        "The results are written so that the failure can be inspected (rank plots above), "
        "but they should not be reported. To refit: "
        + "; ".join(diagnostics.get("advice") or ["run more tuning steps and draws"])
        + "; and look for a badly identified parameter (the variable named)."
    )
    earlier = diagnostics.get("earlier_fits") or []
    if earlier:
        verdict += (
            f" These results come from fit {len(earlier) + 1} of {len(earlier) + 1}: "
            + " Then ".join(f"{fit['why']}." for fit in earlier)
            + " Every fit is of the same model; only the sampler's coordinates or the number "
            "of draws differ."
        )
    doc.add(Paragraph(verdict), Table(tables.diagnostics_table(diagnostics)))

    doc.add(Heading("What entered the model"))
    doc.add(
        Paragraph(
            "Counts of the records used, imputed inside the model, or left out of the "
            "likelihood, and why (from the design)."
        ),
        Table(tables.design_counts_table(result.design_counts)),
    )
    if result.left_out_covariates:
        doc.add(
            Paragraph(
                "Covariates of the shipped default spec left out, because the cohort does not "
                "have them:"
            ),
            BulletList([f"`{c['covariate']}`: {c['reason']}" for c in result.left_out_covariates]),
        )
    if extra:
        doc.add(
            Paragraph("Model-specific outputs in this folder:"),
            BulletList([f"`{_relative(p, folder)}`" for p in extra]),
        )
    if extra_failure:
        doc.add(
            Paragraph(
                f"**The {result.model} model's own outputs could not be written**: "
                f"`{extra_failure}`."
            )
        )

    doc.add(Heading("Reproducibility"))
    command = result.command or "(fitted from Python: no command line recorded)"
    doc.add(
        BulletList(
            [
                f"command: `{command}`",
                f"model: `{result.model}`; spec: `{spec_path}`",
                f"random seed: `{result.seed}`; sampler: `{result.sampler}`",
                f"data SHA-256: `{result.data_sha256 or '(not recorded)'}`",
            ]
        ),
        Paragraph("Rewrite this report from the saved results, without refitting:"),
        Code(f"magbayes report {shlex.quote(_results_argument(result.command))}", "console"),
        Table(tables.versions_table(result.manifest().get("versions", {})), caption="Software"),
        Paragraph(
            "Cite magbayes with `CITATION.cff` in its repository, and PyMC, nutpie and ArviZ "
            "as their documentation asks."
        ),
    )
    return doc


def _results_argument(command: str) -> str:
    """The ``--out`` folder of the fit's command line (``RESULTS`` when unknown).

    The report is written inside a temporary folder that is renamed when complete, so the
    folder's own name is not the one the user knows.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return "RESULTS"
    for k, word in enumerate(words):
        if word == "--out" and k + 1 < len(words):
            return words[k + 1]
        if word.startswith("--out="):
            return word.split("=", 1)[1]
    return "RESULTS"


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)
