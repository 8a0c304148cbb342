"""Clinician-readable names shared by the models and the report.

Scores, treatments and covariates are named the way a paper would name them, and an
:class:`Effect` pairs a posterior variable (one element of it) with a readable label and
its unit. Each model definition (:class:`magbayes.models.base.ModelDefinition`) lists its
own effects with these helpers; the report only reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import xarray as xr

from magbayes.cohort.tables import SCORES

#: Printed names of the disability scores, with their range.
SCORE_NAMES: dict[str, str] = {
    "incat": "INCAT disability score",
    "onls": "ONLS",
    "mrs": "modified Rankin scale",
    "irods": "I-RODS centile",
}

#: Printed names of treatments.
TREATMENT_NAMES: dict[str, str] = {
    "ivig": "IVIg",
    "rituximab": "rituximab",
    "corticosteroids": "corticosteroids",
    "plasma_exchange": "plasma exchange",
    "cyclophosphamide": "cyclophosphamide",
    "chlorambucil": "chlorambucil",
    "other": "other treatment",
}

#: Printed names of the usual covariates (other columns print as they are named).
COVARIATE_NAMES: dict[str, str] = {
    "age_at_onset": "age at onset",
    "log10_anti_mag_titer": "anti-MAG titre (log10 BTU)",
    "pattern_cidp_like": "CIDP-like pattern",
    "pattern_axonal": "axonal pattern",
    "sex_male": "male sex",
    "median_dml_ms": "median distal motor latency",
    "tli_median": "median terminal latency index",
    "median_mcv_ms": "median motor conduction velocity",
    "peroneal_cmap_mv": "peroneal CMAP amplitude",
}

#: What the shared population-level parameters mean (each model adds its own).
SHARED_PARAMETER_MEANINGS: dict[str, str] = {
    "sural_reduced_prevalence": "share of patients with early sural reduction",
}


@dataclass(frozen=True)
class Effect:
    """One effect as a report shows it.

    Attributes
    ----------
    label : str
        Readable name with its unit group (``"IVIg: change in rate"``).
    variable : str
        PyMC variable name.
    coords : dict
        Selection of one element of a vector variable (``{"treatment": "ivig"}``).
    unit : str
        What one unit of the effect is (``"latent INCAT logit per year"``).
    """

    label: str
    variable: str
    coords: dict
    unit: str

    def draws(self, dataset: xr.Dataset) -> xr.DataArray:
        """Draws of this effect from a posterior (or prior) dataset."""
        return dataset[self.variable].sel(self.coords, drop=True)


def score_of(spec: object) -> str:
    """The modelled score of a spec (``"incat"`` when it names none), or a score name."""
    if isinstance(spec, str):
        return spec
    section = getattr(spec, "section", None)
    if section is None:
        return "incat"
    return str(section("outcome").get("score", "incat"))


def score_name(spec_or_score: object) -> str:
    """The modelled score's short name in capitals (``"INCAT"``, ``"I-RODS"``)."""
    score = score_of(spec_or_score)
    return {"irods": "I-RODS", "mrs": "mRS"}.get(score, score.upper())


def score_axis_label(spec_or_score: object) -> str:
    """Axis label of a score with its range (``"INCAT disability score (0-10)"``)."""
    score = score_of(spec_or_score)
    low, high, _ = SCORES.get(score, (0, 0, True))
    name = SCORE_NAMES.get(score, score)
    higher = "higher = less disability" if score == "irods" else "higher = more disability"
    return f"{name} ({low:g}–{high:g}; {higher})"


def treatment_name(treatment: str) -> str:
    """A treatment's printed name (``"IVIg"``)."""
    return TREATMENT_NAMES.get(treatment, treatment)


def covariate_label(name: str, standardisation: Mapping[str, Mapping[str, float]]) -> str:
    """A covariate's name with what one unit of its coefficient means."""
    printed = COVARIATE_NAMES.get(name, name.replace("_", " "))
    scale = standardisation.get(name)
    if scale and not (scale.get("mean") == 0.0 and scale.get("sd") == 1.0):
        return f"{printed} (per sd {scale['sd']:.3g})"
    return f"{printed} (yes vs no)"


def vector_effects(
    posterior: xr.DataTree | xr.Dataset,
    variable: str,
    dim: str,
    label: Callable[[str], str],
    unit: str,
) -> list[Effect]:
    """One :class:`Effect` per element of a vector variable (none if it is absent)."""
    if variable not in posterior.data_vars or dim not in posterior[variable].dims:
        return []
    return [Effect(label(str(name)), variable, {dim: name}, unit) for name in posterior[dim].values]


def covariate_effects(
    posterior: xr.DataTree | xr.Dataset,
    standardisation: Mapping[str, Mapping[str, float]],
    unit: str,
    suffix: str = "",
) -> list[Effect]:
    """The ``beta_covariate`` effects, each labelled with its unit (:func:`covariate_label`)."""
    return vector_effects(
        posterior,
        "beta_covariate",
        "covariate",
        lambda c: covariate_label(c, standardisation) + suffix,
        unit,
    )
