"""The words of a report: the model in words and equations, and a methods paragraph.

The model's description comes from its spec (``description = ...``) and from its module's
docstring, whose reStructuredText (``.. math::`` blocks, ``:math:`` roles, literal
blocks) is turned into report blocks here, so the report says what the code does in the
words its authors wrote. The methods paragraph is assembled from the manifest (software
versions, sampler settings, seed) and the diagnostics, ready to paste into a paper.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from typing import TYPE_CHECKING, Any

from magbayes.models import get_model
from magbayes.report.render import BulletList, Code, Math, Paragraph

if TYPE_CHECKING:
    from magbayes.fit import FitResult

_ROLE = re.compile(r":(\w+):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def rst_inline(text: str) -> str:
    """Turn reStructuredText inline markup into the report's (```code```, ``$math$``)."""

    def role(match: re.Match) -> str:
        kind, content = match.group(1), match.group(2)
        if kind == "math":
            return f"${content}$"
        return f"`{content}`"

    text = _ROLE.sub(role, text)
    return _LITERAL.sub(r"`\1`", text)


def _indented_block(lines: list[str], start: int) -> tuple[list[str], int]:
    """Lines of an indented block starting at ``start`` (blank lines inside kept)."""
    block: list[str] = []
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
        block.append(lines[i])
        i += 1
    while block and not block[-1].strip():
        block.pop()
    return [textwrap.dedent("\n".join(block))], i


def docstring_blocks(doc: str | None) -> list:
    """A module docstring as report blocks (paragraphs, equations, lists, literal blocks)."""
    if not doc:
        return []
    lines = inspect.cleandoc(doc).splitlines()
    blocks: list = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(Paragraph(rst_inline(" ".join(paragraph))))
            paragraph.clear()
        if items:
            blocks.append(BulletList([rst_inline(item) for item in items]))
            items.clear()

    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(".. math::"):
            flush()
            (latex,), i = _indented_block(lines, i + 1)
            blocks.append(Math(latex))
            continue
        if stripped.startswith(".. "):
            flush()
            _, i = _indented_block(lines, i + 1)
            continue
        if not stripped:
            flush()
            i += 1
            continue
        if stripped.startswith("- ") and not lines[i].startswith(" "):
            if paragraph:
                flush()
            items.append(stripped[2:])
            i += 1
            continue
        if items and lines[i].startswith(" "):
            items[-1] += " " + stripped
            i += 1
            continue
        if stripped.endswith("::"):
            text = stripped[:-2].rstrip()
            paragraph.append(text + ":" if text else "")
            flush()
            (code,), i = _indented_block(lines, i + 1)
            blocks.append(Code(code))
            continue
        paragraph.append(stripped)
        i += 1
    flush()
    return blocks


def model_blocks(result: FitResult) -> list:
    """The model in words (the spec's description) and equations (its definition's)."""
    blocks: list = []
    description = result.spec.get("description")
    if isinstance(description, str) and description.strip():
        blocks.append(Paragraph(" ".join(description.split())))
    blocks.extend(docstring_blocks(get_model(result.model).equations))
    return blocks


def methods_paragraph(result: FitResult) -> str:
    """A methods paragraph ready to paste into a paper.

    Software and versions come from the manifest, sampler settings from the resolved
    spec, the verdict from :meth:`FitResult.diagnostics`.
    """
    manifest = result.manifest()
    versions: dict[str, Any] = manifest.get("versions", {})
    sampler = result.spec.section("sampler")
    diagnostics = result.diagnostics()
    cohort = result.cohort_summary
    definition = get_model(result.model)
    headline = definition.headline
    sural = result.spec.section("early_sural")
    prob = round(100 * result.hdi_prob)
    what = definition.describe_methods(result)
    missing = sural["missing"]
    missing_text = (
        "patients whose status was unknown were kept, their status being summed out of the "
        "likelihood with a prevalence estimated from the patients with a known status"
        if missing == "marginalise"
        else "patients whose status was unknown were left out of the analysis"
    )
    sampler_name = {
        "nutpie": f"nutpie {versions.get('nutpie', '')}",
        "pymc": f"PyMC's own NUTS ({versions.get('pymc', '')})",
    }.get(result.sampler, result.sampler)
    chains = diagnostics["chains"]
    draws = diagnostics["draws"]
    tune = result.posterior["posterior"].attrs.get("tuning_steps", sampler.get("tune", ""))
    verdict = (
        "all checks were met"
        if diagnostics["passed"]
        else "the checks were NOT met (" + "; ".join(diagnostics["reasons"]) + ")"
    )
    direction = "negative" if headline.benefit_sign < 0 else "positive"
    return (
        f"{what} Early sural reduction was defined as a sural sensory nerve action potential "
        f"amplitude below {sural.get('threshold_uv', '')} µV at a first nerve conduction "
        f"study within {sural.get('window_years', '')} years of onset; {missing_text}. "
        f"The cohort had {cohort.get('n_patients', '')} patients from "
        f"{cohort.get('n_sites', '')} sites ({cohort.get('n_visits', '')} visits)"
        f"{_entered(result)}. "
        f"The model was written in PyMC {versions.get('pymc', '')} (PyTensor "
        f"{versions.get('pytensor', '')}) and its posterior sampled with the No-U-Turn "
        f"sampler of {sampler_name}: {chains} chains of {draws} draws after {tune} tuning "
        f"steps (target acceptance {sampler.get('target_accept', '')}{_doublings(result)}, "
        f"random seed {result.seed}). Convergence was assessed with ArviZ "
        f"{versions.get('arviz', '')} by the rank-normalised split R-hat (required ≤ 1.01), "
        "the bulk and tail effective sample sizes (bulk ESS required ≥ 400) and the number "
        f"of divergent transitions (required 0); {verdict}. Posterior summaries are means "
        f"with {prob}% highest-density intervals (HDI). "
        "The probability that early sural reduction predicts rituximab "
        f"benefit is the proportion of posterior draws in which the interaction "
        f"`{headline.contrast_var}` is {direction}, reported with its Monte Carlo standard "
        "error (MCSE). The model's fit was checked with posterior predictive checks; its "
        "log-likelihood was stored per patient so that models can be compared by "
        f"leave-one-patient-out PSIS-LOO. Analyses used magbayes "
        f"{versions.get('magbayes', '')} with Python {versions.get('python', '')}, NumPy "
        f"{versions.get('numpy', '')}, pandas {versions.get('pandas', '')} and xarray "
        f"{versions.get('xarray', '')}."
    )


def _entered(result: FitResult) -> str:
    """Say how many patients entered the model when the design left some out."""
    used = result.design_counts.get("patients")
    total = result.cohort_summary.get("n_patients")
    if isinstance(used, int) and isinstance(total, int) and used != total:
        return f", of whom {used} entered the model (the report counts who was left out and why)"
    return ""


def sign_convention(result: FitResult) -> str:
    """How to read the sign of the headline contrast, in one sentence."""
    headline = get_model(result.model).headline
    if headline.benefit_sign < 0:
        side = "negative"
    else:
        side = "positive"
    return (
        f"The contrast `{headline.contrast_var}` is the rituximab effect in sural-reduced "
        f"patients minus that in sural-preserved patients; {side} values mean more benefit "
        "from rituximab with early sural reduction, so the headline probability is "
        f"P(`{headline.contrast_var}` {'<' if side == 'negative' else '>'} 0)."
    )


def _doublings(result: FitResult) -> str:
    """The nutpie options that differ from its defaults: extra doublings, a low-rank mass matrix."""
    settings = result.spec.section("sampler")
    if result.sampler != "nutpie":
        return ""
    extra = int(settings["extra_doublings"])
    words = ""
    if extra > 0:
        words += f", {extra} extra trajectory doubling{'s' if extra > 1 else ''} after each U-turn"
    if settings.get("mass_matrix", "diag") == "low_rank":
        words += ", a mass matrix adapted as a diagonal plus low-rank correction"
    return words
