"""One cohort, every shipped model, one question: does early sural reduction predict benefit.

:func:`answer` fits the shipped models (progression, worsening, response; joint where the cohort
has each patient's end of follow-up) to the same cohort,
saves each results folder, and writes ``answer.json`` and a one-page ``answer.md`` with,
for each model, the headline probability with its MCSE, the contrast with its interval and
scale, the convergence verdict and a sentence a clinician can quote. Where the models
disagree, the page says so; it never averages them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magbayes.analyses.prior_sensitivity import prior_sensitivity_writer
from magbayes.atomic import atomic_folder, jsonable, write_json, write_text
from magbayes.cohort.tables import Cohort
from magbayes.fit import FitResult, fit
from magbayes.models import SHIPPED, get_model
from magbayes.provenance import cohort_digest

#: A probability at or above this supports the hypothesis; at or below 1 - this, it
#: speaks against it; in between the model is inconclusive.
STRONG = 0.9


def verdict(probability: float) -> str:
    """``supports``, ``against`` or ``inconclusive`` for a headline probability."""
    if probability >= STRONG:
        return "supports"
    if probability <= 1.0 - STRONG:
        return "against"
    return "inconclusive"


def sentence(model: str, headline: dict[str, Any]) -> str:
    """A sentence a clinician can quote, with its uncertainty."""
    p = headline["p_sural_predicts_rituximab_benefit"]
    return (
        f"Given this cohort and the {model} model, the probability that early sural "
        f"reduction predicts a larger {get_model(model).benefit_words} with rituximab is {p:.2f} "
        f"(Monte Carlo standard error {headline['mcse']:.2f})."
    )


def agreement(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether the models point the same way, in words (never an average)."""
    verdicts = {name: entry["verdict"] for name, entry in entries.items()}
    distinct = set(verdicts.values())
    if len(distinct) == 1:
        (only,) = distinct
        text = {
            "supports": "All models support the hypothesis",
            "against": "All models speak against the hypothesis",
            "inconclusive": "No model is conclusive",
        }[only]
        return {"agree": True, "verdicts": verdicts, "text": text + "."}
    parts = [
        f"{name} {v} (P = {entries[name]['headline']['p_sural_predicts_rituximab_benefit']:.2f})"
        for name, v in verdicts.items()
    ]
    text = (
        "The models disagree: "
        + "; ".join(parts)
        + ". They measure different outcomes (rate of progression, time to confirmed "
        "worsening, the clinician's rating), so read each on its own; the probabilities "
        "are not averaged."
    )
    return {"agree": False, "verdicts": verdicts, "text": text}


def answer(
    cohort: Cohort,
    out: str | Path,
    *,
    seed: int | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    models: tuple[str, ...] | None = None,
    command: str = "",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Fit the three models on one cohort and write ``answer.json`` and ``answer.md``.

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    out : str or pathlib.Path
        Results folder; one sub-folder per model plus the answer files. Written atomically.
    seed, draws, tune, chains : int, optional
        Sampler settings for every model (each spec's defaults otherwise).
    models : tuple of str, optional
        Which models to fit (default every shipped one that applies to the cohort: the
        joint model only with each patient's end of follow-up).
    command : str
        Command line recorded in each manifest.
    progress : bool, optional
        Show sampling progress.

    Returns
    -------
    dict
        The content of ``answer.json``.
    """
    out = Path(out)
    if models is None:
        models = tuple(name for name in SHIPPED if get_model(name).applies_to(cohort))
    with atomic_folder(out) as tmp:
        entries: dict[str, dict[str, Any]] = {}
        for name in models:
            result = fit(
                cohort,
                name,
                seed=seed,
                draws=draws,
                tune=tune,
                chains=chains,
                command=command,
                progress=progress,
            )
            sensitivity = prior_sensitivity_writer(cohort)
            result.save(tmp / name, extra=[sensitivity])
            entries[name] = _entry(name, result)
            if sensitivity.table is not None:
                entries[name]["prior_sensitivity"] = sensitivity.table.to_dict(orient="records")
        payload = {
            "question": (
                "Does early reduction of the sural sensory response predict benefit from rituximab?"
            ),
            "cohort": jsonable(cohort.summary()),
            "data_sha256": cohort_digest(cohort),
            "models": entries,
            "agreement": agreement(entries),
            "all_converged": all(e["diagnostics"]["passed"] for e in entries.values()),
        }
        write_json(tmp / "answer.json", payload)
        write_text(tmp / "answer.md", answer_markdown(payload))
    return payload


def _entry(name: str, result: FitResult) -> dict[str, Any]:
    headline = result.headline()
    diagnostics = result.diagnostics()
    return {
        "headline": headline,
        "verdict": verdict(headline["p_sural_predicts_rituximab_benefit"]),
        "sentence": sentence(name, headline),
        "diagnostics": {
            "passed": diagnostics["passed"],
            "reasons": diagnostics["reasons"],
            "r_hat_max": diagnostics["r_hat_max"],
            "ess_bulk_min": diagnostics["ess_bulk_min"],
            "divergences": diagnostics["divergences"],
        },
        "left_out": {
            k: v
            for k, v in result.design_counts.items()
            if isinstance(v, int) and v and ("left out" in k or "not in the likelihood" in k)
        },
        "left_out_covariates": result.left_out_covariates,
        "results_folder": name,
    }


def answer_markdown(payload: dict[str, Any]) -> str:
    """The one-page ``answer.md``."""
    cohort = payload["cohort"]
    sural = cohort.get("early_sural", {})
    lines = [
        "# Does early sural reduction predict rituximab benefit?",
        "",
        f"Cohort: {cohort.get('n_patients')} patients from {cohort.get('n_sites')} sites, "
        f"{cohort.get('n_visits')} visits, {cohort.get('n_courses')} treatment courses; "
        f"early sural reduction (SNAP < {sural.get('threshold_uv')} µV within "
        f"{sural.get('window_years')} years of onset): {sural.get('reduced')} reduced, "
        f"{sural.get('preserved')} preserved, {sural.get('missing')} unknown. "
        f"Data SHA-256 `{payload.get('data_sha256', '')[:16]}…`.",
        "",
        f"**{payload['agreement']['text']}**",
        "",
        "| model | P(sural reduction predicts benefit) | MCSE | contrast (mean, HDI) | converged |",
        "|---|---|---|---|---|",
    ]
    for name, entry in payload["models"].items():
        h = entry["headline"]
        c = h["contrast"]
        ok = (
            "yes"
            if entry["diagnostics"]["passed"]
            else "NO: " + "; ".join(entry["diagnostics"]["reasons"])
        )
        lines.append(
            f"| {name} | {h['p_sural_predicts_rituximab_benefit']:.3f} | {h['mcse']:.3f} | "
            f"{c['mean']:.3f} [{c['hdi_low']:.3f}, {c['hdi_high']:.3f}] "
            f"({100 * c['hdi_prob']:.0f}% HDI) | {ok} |"
        )
    lines += ["", "## In words", ""]
    for name, entry in payload["models"].items():
        h = entry["headline"]
        lines.append(f"- **{name}**: {entry['sentence']} Scale: {h['contrast']['scale']}.")
        if "timing" in h:
            lines.append(f"  {h['timing']['sentence']}")
        if entry.get("prior_sensitivity"):
            values = ", ".join(
                f"{row['p_sural_predicts_rituximab_benefit']:.2f} ({row['label']}"
                + (f", {row['prior']} = {row['value']:g}" if row["prior"] != "default" else "")
                + ")"
                for row in entry["prior_sensitivity"]
            )
            lines.append(f"  Under other priors for the interaction: {values}.")
        if entry["left_out"]:
            left = ", ".join(f"{k}: {v}" for k, v in entry["left_out"].items())
            lines.append(f"  Left out of this model's likelihood: {left}.")
    lines += [
        "",
        "Each model's full report, with methods, diagnostics and figures, is in its folder "
        "(`progression/report.html`, ...).",
        "",
    ]
    if not payload["all_converged"]:
        lines.insert(
            4,
            "**Warning: at least one model failed its convergence checks; do not cite its "
            "probability until it is refitted with more draws.**\n",
        )
    return "\n".join(lines)
