"""Clinician-readable names of a fit's effects and outcome variable, for the report.

The names themselves (scores, treatments, covariates, :class:`~magbayes.labels.Effect`)
are in :mod:`magbayes.labels`; each model's effects and outcome are listed by its
definition (:class:`~magbayes.models.base.ModelDefinition`). This module reads them off a
fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magbayes.labels import (
    COVARIATE_NAMES,
    SCORE_NAMES,
    TREATMENT_NAMES,
    Effect,
    covariate_label,
    score_axis_label,
    score_name,
)
from magbayes.models import get_model

if TYPE_CHECKING:
    from magbayes.fit import FitResult

__all__ = [
    "COVARIATE_NAMES",
    "SCORE_NAMES",
    "TREATMENT_NAMES",
    "Effect",
    "covariate_label",
    "effects",
    "outcome_variable",
    "score_axis_label",
    "score_name",
]


def outcome_variable(model: str) -> str:
    """Name of the observed outcome variable (``score``, ``worsening``, ``response``).

    The model definition's ``outcome_var``.
    """
    return get_model(model).outcome_var


def effects(result: FitResult) -> list[Effect]:
    """The treatment, early-sural and covariate effects of a fit, readable, in order.

    Parameters
    ----------
    result : FitResult
        A fit (its posterior variables decide which effects exist).

    Returns
    -------
    list of Effect
        The headline contrast first, then the other rituximab, treatment and early-sural
        effects, then covariates. Intercepts, scales, cutpoints and site offsets are
        not effects and are left to the summary table.
    """
    post = result.posterior["posterior"]
    names = set(post.data_vars)
    dataset = post.to_dataset()
    out = []
    for effect in get_model(result.model).effects(result):
        if effect.variable not in names:
            continue
        if float(effect.draws(dataset).std()) == 0.0:
            continue  # a reference level fixed at 0 is not an estimate
        out.append(effect)
    return out
