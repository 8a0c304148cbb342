"""Tables of a report: cohort, design counts, priors, effects, headline, diagnostics.

Each function returns a small :class:`pandas.DataFrame` of already formatted text, ready
for :class:`magbayes.report.render.Table`. Numbers come from the fit's own outputs
(``result.summary()``, ``result.headline()``, ``result.diagnostics()``, the manifest):
nothing here recomputes a statistic.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from magbayes.models import get_model
from magbayes.report.labels import effects, score_name
from magbayes.spec import resolve_spec_path

if TYPE_CHECKING:
    from magbayes.fit import FitResult


def fmt(value: Any, digits: int = 3) -> str:
    """A number as text with ``digits`` significant decimals; other values as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


_PATTERNS = {
    "distal_demyelinating": "distal demyelinating",
    "cidp_like": "CIDP-like",
    "axonal": "axonal",
    "missing": "not recorded",
}


def cohort_table(summary: dict[str, Any]) -> pd.DataFrame:
    """The cohort in rows of ``what`` / ``value`` (from :meth:`Cohort.summary`)."""
    rows: list[tuple[str, str]] = []

    def add(what: str, value: Any) -> None:
        rows.append((what, fmt(value, 1) if isinstance(value, float) else str(value)))

    add("patients", summary.get("n_patients", ""))
    add("sites", summary.get("n_sites", ""))
    for site, n in summary.get("patients_by_site", {}).items():
        add(f"patients at {site}", n)
    for pattern, n in summary.get("patients_by_pattern", {}).items():
        add(f"pattern: {_PATTERNS.get(pattern, pattern)}", n)
    add("visits", summary.get("n_visits", ""))
    per = summary.get("visits_per_patient", {})
    if per:
        add("visits per patient (min / median / max)", _triple(per))
    for score, n in summary.get("scores_observed", {}).items():
        add(f"visits with {score_name(score)}", n)
    follow = summary.get("follow_up_years", {})
    if follow:
        add("follow-up, years since onset (min / median / max)", _triple(follow))
    add("treatment courses", summary.get("n_courses", ""))
    sural = summary.get("early_sural", {})
    if sural:
        add(
            "early sural reduction (definition)",
            f"sural SNAP < {fmt(sural.get('threshold_uv'), 1)} µV at a first nerve conduction "
            f"study within {fmt(sural.get('window_years'), 1)} years of onset",
        )
        add(
            "early sural: reduced / preserved / unknown",
            _slash(sural, "reduced", "preserved", "missing"),
        )
    responses = summary.get("responses", {})
    if responses:
        add("course ratings", ", ".join(f"{k} {v}" for k, v in responses.items()))
    return pd.DataFrame(rows, columns=["what", "value"])


def _triple(values: dict[str, Any]) -> str:
    return " / ".join(
        fmt(values.get(k), 1) if isinstance(values.get(k), float) else str(values.get(k))
        for k in ("min", "median", "max")
    )


def _slash(values: dict[str, Any], *keys: str) -> str:
    return " / ".join(str(values.get(k, "")) for k in keys)


def courses_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Treatment courses by line (rows) and treatment (columns)."""
    by_line = summary.get("courses_by_line_and_treatment", {})
    if not by_line:
        return pd.DataFrame(columns=["line"])
    frame = pd.DataFrame(by_line).T.fillna(0).astype(int)
    frame = frame.reindex(sorted(frame.columns), axis=1)
    frame.index.name = "line"
    return frame.reset_index().astype(str)


def design_counts_table(counts: dict[str, Any]) -> pd.DataFrame:
    """What entered the model, what was imputed and what was left out (and why)."""
    rows = [
        (what, fmt(value, 2) if isinstance(value, float) else str(value))
        for what, value in counts.items()
    ]
    return pd.DataFrame(rows, columns=["what", "n"])


def prior_meanings(model: str) -> dict[str, str]:
    """Comments on each ``[priors]`` key of the built-in spec of ``model``.

    The built-in spec (``models/<model>.toml``) documents each prior on its line
    (``slope_sd = 0.5   # mean progression rate (per year), Normal(0, slope_sd)``); these
    comments are the report's explanation of the resolved values.
    """
    try:
        text = resolve_spec_path(model).read_text(encoding="utf-8")
    except Exception:  # noqa: BLE001 (no built-in spec: no explanations)
        return {}
    meanings: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        header = re.match(r"^\[([^\]]+)\]", stripped)
        if header:
            section = header.group(1).strip()
            continue
        if section != "priors" or "=" not in stripped or stripped.startswith("#"):
            continue
        key, _, rest = stripped.partition("=")
        if "#" in rest:
            meanings[key.strip()] = rest.split("#", 1)[1].strip()
    return meanings


def priors_table(result: FitResult) -> pd.DataFrame:
    """The resolved ``[priors]`` of the fit, each with its meaning."""
    priors = result.spec.section("priors")
    meanings = prior_meanings(result.model)
    rows = []
    for key, value in priors.items():
        if isinstance(value, dict):
            continue
        rows.append(
            (
                f"`{key}`",
                fmt(value) if isinstance(value, float) else str(value),
                meanings.get(key, ""),
            )
        )
    return pd.DataFrame(rows, columns=["prior", "value", "meaning"])


def effects_table(result: FitResult) -> pd.DataFrame:
    """``result.summary()`` with a readable name per row, formatted.

    Columns: parameter, meaning, mean, sd, HDI bounds, MCSE of the mean, bulk and tail ESS,
    R-hat.
    """
    summary = result.summary()
    meanings = get_model(result.model).meanings
    readable = {}
    for effect in effects(result):
        key = effect.variable
        if effect.coords:
            key += "[" + ", ".join(str(v) for v in effect.coords.values()) + "]"
        readable[key] = effect.label
    prob = round(100 * result.hdi_prob)
    low = next((c for c in summary.columns if c.endswith("_lb")), None)
    high = next((c for c in summary.columns if c.endswith("_ub")), None)
    rows = []
    for name, row in summary.iterrows():
        rows.append(
            {
                "parameter": f"`{name}`",
                "meaning": readable.get(str(name)) or meanings.get(str(name).split("[")[0], ""),
                "mean": fmt(row.get("mean")),
                "sd": fmt(row.get("sd")),
                f"{prob}% HDI": f"[{fmt(row.get(low))}, {fmt(row.get(high))}]" if low else "",
                "MCSE": fmt(row.get("mcse_mean")),
                "ESS bulk": fmt(row.get("ess_bulk"), 0),
                "ESS tail": fmt(row.get("ess_tail"), 0),
                "R-hat": fmt(row.get("r_hat")),
            }
        )
    return pd.DataFrame(rows)


def headline_table(headline: dict[str, Any]) -> pd.DataFrame:
    """The headline's numbers, one per row."""
    contrast = headline["contrast"]
    prob = round(100 * contrast["hdi_prob"])
    rows = [
        (
            "P(early sural reduction predicts rituximab benefit)",
            f"{fmt(headline['p_sural_predicts_rituximab_benefit'])} (MCSE {fmt(headline['mcse'])})",
        ),
        (
            f"contrast `{contrast.get('variable', '')}`: mean [{prob}% HDI]",
            f"{fmt(contrast['mean'])} [{fmt(contrast['hdi_low'])}, {fmt(contrast['hdi_high'])}]",
        ),
        ("what the contrast measures", contrast["scale"]),
        ("benefit direction", f"{contrast.get('benefit_direction', '')} values"),
        (
            "P(rituximab benefit), sural-reduced",
            _with_mcse(headline, "p_rituximab_benefit_sural_reduced"),
        ),
        (
            "P(rituximab benefit), sural-preserved",
            _with_mcse(headline, "p_rituximab_benefit_sural_preserved"),
        ),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def _with_mcse(headline: dict[str, Any], key: str) -> str:
    text = fmt(headline.get(key))
    mcse = headline.get(f"mcse_{key.removeprefix('p_')}")
    return f"{text} (MCSE {fmt(mcse)})" if mcse is not None else text


def diagnostics_table(diagnostics: dict[str, Any]) -> pd.DataFrame:
    """Convergence checks against their thresholds."""
    thresholds = diagnostics.get("thresholds", {})
    rows = [
        (
            "largest R-hat",
            f"{fmt(diagnostics['r_hat_max'])} (`{diagnostics.get('r_hat_max_variable', '')}`)",
            f"≤ {thresholds.get('r_hat_max', 1.01)}",
            _ok(diagnostics["r_hat_max"] <= thresholds.get("r_hat_max", 1.01)),
        ),
        (
            "smallest bulk ESS",
            f"{fmt(diagnostics['ess_bulk_min'], 0)} "
            f"(`{diagnostics.get('ess_bulk_min_variable', '')}`)",
            f"≥ {thresholds.get('ess_bulk_min', 400)}",
            _ok(diagnostics["ess_bulk_min"] >= thresholds.get("ess_bulk_min", 400)),
        ),
        (
            "smallest tail ESS",
            f"{fmt(diagnostics['ess_tail_min'], 0)} "
            f"(`{diagnostics.get('ess_tail_min_variable', '')}`)",
            "(reported)",
            "",
        ),
        (
            "divergent transitions",
            str(diagnostics["divergences"]),
            "0",
            _ok(diagnostics["divergences"] == 0),
        ),
        (
            "chains × draws",
            f"{diagnostics['chains']} × {diagnostics['draws']}",
            "",
            "",
        ),
        (
            "sampling time (s, incl. compilation)",
            fmt(diagnostics.get("sampling_seconds"), 1),
            "",
            "",
        ),
    ]
    return pd.DataFrame(rows, columns=["check", "value", "required", "ok"])


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


def versions_table(versions: dict[str, str]) -> pd.DataFrame:
    """Software versions, one per row."""
    return pd.DataFrame(sorted(versions.items()), columns=["software", "version"])


def prior_sensitivity_table(table: pd.DataFrame) -> pd.DataFrame:
    """The headline under each prior (rows of ``prior_sensitivity.csv``), for the report."""
    return pd.DataFrame(
        {
            "prior": [f"`{row.prior}` = {row.value:g} ({row.label})" for row in table.itertuples()],
            "P(sural predicts benefit)": table["p_sural_predicts_rituximab_benefit"].map(
                "{:.3f}".format
            ),
            "MCSE": table["mcse"].map("{:.3f}".format),
            "contrast mean [HDI]": [
                f"{row.contrast_mean:.3f} [{row.hdi_low:.3f}, {row.hdi_high:.3f}]"
                for row in table.itertuples()
            ],
            "converged": [
                "yes"
                if (row.divergences == 0 and row.r_hat_max <= 1.01 and row.ess_bulk_min >= 400)
                else "no"
                for row in table.itertuples()
            ],
        }
    )


def timing_table(timing: dict) -> pd.DataFrame:
    """The timing answer as a table: one row per early-sural group and measure."""
    rows = []
    for group in ("sural_reduced", "sural_preserved"):
        for measure, words in (
            ("expected_score", "expected score (points)"),
            ("p_disabled", f"P({timing.get('disabled', 'disabled')})"),
        ):
            e = (timing.get(group) or {}).get(measure)
            if e is None:
                continue
            prob = round(100 * e["hdi_prob"])
            rows.append(
                {
                    "group": group.replace("_", " "),
                    "prompt minus delayed": words,
                    "mean": fmt(e["mean"]),
                    f"{prob}% HDI": f"[{fmt(e['hdi_low'])}, {fmt(e['hdi_high'])}]",
                    "MCSE": fmt(e["mcse"]),
                    "P(prompt better)": fmt(e["p_prompt_better"]),
                }
            )
    return pd.DataFrame(rows)
