"""What every model module provides, and the design object it builds.

A model module (``magbayes/models/progression.py`` and its siblings) exposes:

``NAME``
    The model's name, as in ``model = "..."`` in a spec.
``DEFAULTS``
    A nested dict of spec defaults (merged under the user's spec).
``HEADLINE``
    A :class:`Headline` naming the contrast variable and its benefit direction.
``make_design(cohort, spec) -> Design``
    Plain arrays and coordinates, printable (``magbayes fit --dry-run``).
``build_model(design, spec) -> pymc.Model``
    The PyMC model; every variable has named dims.
``refit_spec(spec, design, diagnostics) -> (Spec, str) | None``
    The spec of a refit in other coordinates of the same model when the first fit failed
    the convergence gate, and why; ``None`` when there is none.
``group_benefit(posterior, design) -> dict[str, xarray.DataArray]``
    Draws of the rituximab effect in sural-reduced and sural-preserved patients, on the
    contrast's scale, keyed ``"sural_reduced"`` and ``"sural_preserved"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from magbayes.spec_schema import (
    Rule,
    at_least_zero,
    list_of,
    one_of,
    open_fraction,
    positive,
    positive_integer,
    whole_number,
)

#: Treatments whose courses the models include by default (rituximab has its own terms).
MODELLED_TREATMENTS: list[str] = [
    "ivig",
    "corticosteroids",
    "plasma_exchange",
    "cyclophosphamide",
    "chlorambucil",
    "other",
]

#: Baseline covariates the models use by default (patients.csv names or derived ones).
BASELINE_COVARIATES: list[str] = [
    "age_at_onset",
    "log10_anti_mag_titer",
    "pattern_cidp_like",
    "pattern_axonal",
]

#: Spec defaults every model shares: the early-sural definition (threshold: lower limit of
#: normal of the sural SNAP, CLINICAL.md; window: an assumption), sampler settings and the
#: sensitivity grid. Each model's ``DEFAULTS`` is ``shared_defaults(own_tables)``.
SHARED_DEFAULTS: dict[str, Any] = {
    "early_sural": {"threshold_uv": 5.0, "window_years": 3.0, "missing": "marginalise"},
    "sampler": {
        "draws": 1000,
        "tune": 1000,
        "chains": 4,
        "target_accept": 0.9,
        "extra_doublings": 0,
        "cores": 0,
        "seed": 2020,
        "hdi_prob": 0.94,
    },
    "sensitivity": {
        "threshold_uv": [3.0, 5.0, 7.0],
        "window_years": [2.0, 3.0, 5.0],
        "prior_scale": [0.5, 1.0, 2.0],
    },
}


def shared_defaults(own: dict[str, Any]) -> dict[str, Any]:
    """A model's spec defaults: :data:`SHARED_DEFAULTS` with its own tables merged in."""
    from magbayes.spec import deep_merge

    return deep_merge(SHARED_DEFAULTS, own)


def prior_names(defaults: dict[str, Any]) -> list[str]:
    """The prior scales of a model's ``[priors]`` (its ``DEFAULTS``), without sub-tables."""
    return [k for k, v in defaults["priors"].items() if not isinstance(v, dict)]


def spec_rules(
    defaults: dict[str, Any], own: dict[str, dict[str, Rule]]
) -> dict[str, dict[str, Rule]]:
    """A model's ``SPEC_RULES``: the rules of the shared tables with its own merged in.

    Shared: the early-sural definition (threshold 0 µV or more, a positive window, what
    an unknown status means), the sampler (positive draws, tuning steps and chains,
    probabilities strictly between 0 and 1, ``prior_draws`` without a default), the
    sensitivity grid (lists of positive numbers; ``prior_keys`` naming priors) and the
    ``[priors.sensitivity]`` alternatives (for each prior, a list of positive scales).

    Parameters
    ----------
    defaults : dict
        The model's ``DEFAULTS`` (for the names of its priors).
    own : dict
        ``{table: {key: Rule}}`` of the model's own keys.
    """
    priors = prior_names(defaults)
    rules: dict[str, dict[str, Rule]] = {
        "early_sural": {
            "threshold_uv": at_least_zero(),
            "window_years": positive(),
            "missing": one_of("marginalise", "exclude"),
        },
        "sampler": {
            "draws": positive_integer(),
            "tune": positive_integer(),
            "chains": positive_integer(),
            "target_accept": open_fraction(),
            "extra_doublings": whole_number(),
            "cores": whole_number(),
            "seed": whole_number(),
            "hdi_prob": open_fraction(),
            "prior_draws": positive_integer(),
        },
        "sensitivity": {
            "threshold_uv": list_of(positive()),
            "window_years": list_of(positive()),
            "prior_scale": list_of(positive()),
            "prior_keys": list_of(one_of(*priors)),
        },
        "priors.sensitivity": {key: list_of(positive()) for key in priors},
    }
    for table, table_rules in own.items():
        rules[table] = {**rules.get(table, {}), **table_rules}
    return rules


@dataclass(frozen=True)
class Headline:
    """How a model answers "does early sural reduction predict rituximab benefit?".

    Attributes
    ----------
    question : str
        The question in words, as written in ``headline.json``.
    contrast_var : str
        Posterior variable of the interaction (``gamma_rituximab_x_sural``).
    main_var : str
        Posterior variable of the rituximab effect in sural-preserved patients.
    benefit_sign : int
        ``-1`` when benefit means a negative value (slower progression, lower hazard),
        ``+1`` when it means a positive value (higher odds of good response).
    scale : str
        What the contrast measures, with units.
    """

    question: str
    contrast_var: str
    main_var: str
    benefit_sign: int
    scale: str


@dataclass
class Design:
    """A model's data, as plain arrays with labelled coordinates.

    Attributes
    ----------
    model : str
        Model name.
    coords : dict[str, list]
        Dimension name -> labels (patient ids, site names, treatment names, ...).
    data : dict[str, numpy.ndarray]
        Named arrays the model reads (``score``, ``years_since_onset``, ...).
    dims : dict[str, tuple[str, ...]]
        Dimension names of each array in ``data`` (saved as ``constant_data``).
    counts : dict[str, Any]
        What the report must say: numbers of patients, sites, visits, courses, values
        imputed, records left out of the likelihood and why.
    standardisation : dict[str, dict[str, float]]
        Mean and sd used to standardise each covariate (original units).
    left_out_covariates : list[dict[str, str]]
        Covariates of a shipped default spec that the cohort lacks, left out of the model:
        ``{"covariate": name, "reason": why}`` (:func:`magbayes.models.blocks.usable_covariates`).
    """

    model: str
    coords: dict[str, list]
    data: dict[str, np.ndarray]
    dims: dict[str, tuple[str, ...]]
    counts: dict[str, Any] = field(default_factory=dict)
    standardisation: dict[str, dict[str, float]] = field(default_factory=dict)
    left_out_covariates: list[dict[str, str]] = field(default_factory=list)

    def constant_data(self) -> xr.Dataset:
        """The design's arrays as a labelled dataset (the ``constant_data`` group)."""
        variables = {}
        for name, values in self.data.items():
            dims = self.dims.get(name)
            if dims is None:
                continue
            variables[name] = xr.DataArray(np.asarray(values), dims=dims)
        coords = {d: self.coords[d] for ds in self.dims.values() for d in ds if d in self.coords}
        return xr.Dataset(variables, coords=coords)

    def __str__(self) -> str:
        lines = [f"Design for model '{self.model}'"]
        lines.append("  dimensions:")
        for dim, labels in self.coords.items():
            shown = ", ".join(map(str, labels[:5])) + (", ..." if len(labels) > 5 else "")
            lines.append(f"    {dim:<24} {len(labels):>6}  [{shown}]")
        lines.append("  arrays:")
        for name, values in self.data.items():
            arr = np.asarray(values)
            dims = ",".join(self.dims.get(name, ())) or "-"
            lines.append(f"    {name:<24} {str(arr.shape):<14} ({dims})")
        if self.counts:
            lines.append("  counts:")
            for key, value in self.counts.items():
                lines.append(f"    {key:<32} {value}")
        for left in self.left_out_covariates:
            lines.append(f"  covariate '{left['covariate']}' left out: {left['reason']}")
        if self.standardisation:
            lines.append("  covariates standardised (original units):")
            for cov, ms in self.standardisation.items():
                lines.append(f"    {cov:<32} mean {ms['mean']:.4g}  sd {ms['sd']:.4g}")
        return "\n".join(lines)

    def counts_frame(self) -> pd.DataFrame:
        """``counts`` as a two-column table (for reports)."""
        return pd.DataFrame({"what": list(self.counts), "n": list(self.counts.values())})
