"""Building blocks shared by the three models.

Design side (plain numpy / pandas, no PyMC): covariate tables with standardisation,
early-sural status arrays, treatment-course tables.

Model side (inside a ``pm.Model`` context): covariates with missing values imputed in
the model, site effects (partial pooling or fixed), the early-sural prevalence and the
mixture over an unknown early-sural status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError

#: ``[sites] pooling`` options (:func:`site_effect`).
SITE_POOLING: tuple[str, ...] = ("partial", "fixed")
#: ``[sites] parametrisation`` options (:func:`site_parametrisation`).
SITE_PARAMETRISATIONS: tuple[str, ...] = ("auto", "centred", "non_centred")

# --------------------------------------------------------------------------- design side

#: Derived covariates a spec may name besides any numeric column of patients.csv.
DERIVED_COVARIATES = {
    "log10_anti_mag_titer": "log10 of anti_mag_titer_btu (BTU; values below 1 count as 1)",
    "pattern_cidp_like": "1 if pattern is cidp_like, 0 if another pattern (reference: distal)",
    "pattern_axonal": "1 if pattern is axonal, 0 if another pattern",
    "sex_male": "1 if sex is M, 0 if F",
}


def covariate_values(cohort: Cohort, name: str) -> pd.Series:
    """One covariate per patient in original units, NaN where missing.

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    name : str
        A numeric column of patients.csv (``age_at_onset``, ``median_dml_ms``, ...) or a
        derived covariate of :data:`DERIVED_COVARIATES`.

    Returns
    -------
    pandas.Series
        Float values indexed by patient id.
    """
    p = cohort.patients
    if name == "log10_anti_mag_titer":
        titre = pd.to_numeric(p.get("anti_mag_titer_btu"), errors="coerce")
        return np.log10(titre.clip(lower=1.0)).astype(float)
    if name.startswith("pattern_"):
        if "pattern" not in p.columns:
            return pd.Series(np.nan, index=p.index)
        level = name.removeprefix("pattern_")
        pattern = p["pattern"].astype("string")
        return pattern.eq(level).astype(float).where(pattern.notna(), np.nan)
    if name == "sex_male":
        if "sex" not in p.columns:
            return pd.Series(np.nan, index=p.index)
        sex = p["sex"].astype("string")
        return sex.eq("M").astype(float).where(sex.notna() & (sex != ""), np.nan)
    if name not in p.columns:
        raise SpecError(
            f"covariate {name!r} is neither a column of patients.csv nor one of "
            f"{', '.join(DERIVED_COVARIATES)}"
        )
    values = pd.to_numeric(p[name], errors="coerce")
    if values.notna().sum() == 0:
        raise SpecError(f"covariate {name!r} has no observed value in this cohort")
    return values.astype(float)


#: The patients.csv column each derived covariate is computed from.
DERIVED_FROM = {
    "log10_anti_mag_titer": "anti_mag_titer_btu",
    "pattern_cidp_like": "pattern",
    "pattern_axonal": "pattern",
    "sex_male": "sex",
}


@dataclass(frozen=True)
class LeftOutCovariate:
    """A covariate a shipped default spec names but the cohort cannot give.

    Attributes
    ----------
    covariate : str
        The covariate's name in the spec.
    reason : str
        Why, in words (``"patients.csv has no column median_dml_ms"``).
    """

    covariate: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """``{"covariate": ..., "reason": ...}`` (as ``manifest.json`` lists it)."""
        return {"covariate": self.covariate, "reason": self.reason}

    def __str__(self) -> str:
        return f"covariate '{self.covariate}' left out: {self.reason}"


def _unavailable(cohort: Cohort, name: str) -> str | None:
    """Why a covariate cannot be had from the cohort (None when it can)."""
    column = DERIVED_FROM.get(name, name)
    if column not in cohort.patients.columns:
        return f"patients.csv has no column {column}"
    if cohort.patients[column].notna().sum() == 0:
        return f"patients.csv has no observed value of {column}"
    return None


def usable_covariates(cohort: Cohort, spec: Any) -> tuple[list[str], list[LeftOutCovariate]]:
    """The spec's ``[covariates] baseline`` that the cohort has, and those left out.

    A covariate named by a shipped default spec (``spec.is_builtin``) that the cohort
    lacks (no such patients.csv column, or no observed value in it) is left out, with the
    reason; the models, the report and ``manifest.json`` say so (CONTRACT.md section 2).

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    spec : Spec
        The resolved spec.

    Returns
    -------
    names : list of str
        Covariates to model, in the spec's order.
    left_out : list of LeftOutCovariate
        Covariates of a shipped spec left out, and why.

    Raises
    ------
    SpecError
        When a covariate named by the user's own spec is missing from the cohort.
    """
    names, left_out, problems = [], [], []
    for name in spec.section("covariates").get("baseline", []):
        reason = _unavailable(cohort, name)
        if reason is None:
            names.append(name)
        elif spec.is_builtin:
            left_out.append(
                LeftOutCovariate(name, reason + f" (named by the shipped {spec.model} spec)")
            )
        elif name in DERIVED_FROM or name in cohort.patients.columns:
            problems.append(f"covariate {name!r}: {reason}")
        else:
            problems.append(
                f"covariate {name!r} is neither a column of patients.csv nor one of "
                f"{', '.join(DERIVED_COVARIATES)}"
            )
    if problems:
        where = spec.path or f"the {spec.model} spec"
        raise SpecError(f"{where}: [covariates] baseline: " + "; ".join(problems))
    return names, left_out


def is_binary(values: pd.Series) -> bool:
    """True when every observed value is 0 or 1 (such covariates are not standardised)."""
    observed = values.dropna()
    return len(observed) > 0 and bool(observed.isin([0.0, 1.0]).all())


def covariate_design(
    cohort: Cohort, names: list[str]
) -> tuple[np.ndarray, dict[str, dict[str, float]], dict[str, bool]]:
    """Patient × covariate matrix, standardised, with NaN where missing.

    Continuous covariates are centred on their observed mean and divided by their
    observed sd; 0/1 covariates are left as they are.

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    names : list of str
        Covariate names (see :func:`covariate_values`).

    Returns
    -------
    values : numpy.ndarray
        Shape (patient, covariate), NaN where missing.
    standardisation : dict
        ``{name: {"mean": m, "sd": s}}`` in original units (binary: mean 0, sd 1).
    binary : dict
        ``{name: bool}``.
    """
    columns, standardisation, binary = [], {}, {}
    for name in names:
        raw = covariate_values(cohort, name)
        binary[name] = is_binary(raw)
        if binary[name]:
            standardisation[name] = {"mean": 0.0, "sd": 1.0}
            columns.append(raw.to_numpy(float))
            continue
        mean, sd = float(raw.mean()), float(raw.std(ddof=0))
        if not np.isfinite(sd) or sd == 0:
            sd = 1.0
        standardisation[name] = {"mean": mean, "sd": sd}
        columns.append(((raw - mean) / sd).to_numpy(float))
    values = np.column_stack(columns) if columns else np.zeros((cohort.n_patients, 0))
    return values, standardisation, binary


def missing_covariate_labels(
    values: np.ndarray, patient_ids: list[str], names: list[str]
) -> list[str]:
    """Labels ``"P012:age_at_onset"`` of the missing cells of a covariate matrix."""
    rows, cols = np.nonzero(np.isnan(values))
    return [f"{patient_ids[r]}:{names[c]}" for r, c in zip(rows, cols, strict=True)]


def sural_status(cohort: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """Early-sural status per patient as arrays.

    Returns
    -------
    known : numpy.ndarray of bool
        True where the status is defined.
    reduced : numpy.ndarray of int
        1 reduced, 0 preserved; 0 where unknown (only read where ``known``).
    """
    status = cohort.patients["sural_reduced"]
    known = status.notna().to_numpy()
    reduced = status.fillna(False).astype(bool).to_numpy().astype(int)
    return known, reduced


def site_index(cohort: Cohort) -> tuple[np.ndarray, list[str]]:
    """Site index per patient and the site names (sorted)."""
    sites = cohort.sites
    lookup = {s: i for i, s in enumerate(sites)}
    return cohort.patients["site"].map(lookup).to_numpy(int), sites


def treatment_names(cohort: Cohort, spec_treatments: list[str] | None = None) -> list[str]:
    """Treatments that appear in the cohort (or those the spec lists), rituximab last.

    Rituximab's effect is modelled by its own named variables, so the ``treatment``
    dimension lists the other treatments.
    """
    present = sorted(set(cohort.treatments["treatment"]))
    wanted = spec_treatments if spec_treatments is not None else present
    return [t for t in wanted if t != "rituximab" and t in present]


# --------------------------------------------------------------------------- model side


def imputed_covariates(
    values: np.ndarray,
    binary: list[bool],
    *,
    patient_dim: str = "patient",
    covariate_dim: str = "covariate",
    missing_dim: str = "missing_covariate",
    as_data: bool = False,
) -> pt.TensorVariable:
    """Covariate matrix with each missing cell a model parameter.

    Standardised continuous covariates get a standard normal model
    (``covariate_missing ~ Normal(0, 1)``, the population model on the standardised
    scale); a missing 0/1 covariate is the probability of that category, with a Beta
    prior centred on the observed share (``covariate_missing_share``). Missing values are
    therefore carried with their uncertainty, never dropped and never set to zero.

    Parameters
    ----------
    values : numpy.ndarray
        Shape (patient, covariate), NaN where missing (from :func:`covariate_design`).
    binary : list of bool
        Whether each covariate is 0/1.
    as_data : bool
        Hold the observed values, the positions of the missing cells and the Beta priors'
        centres as ``pm.Data`` (inputs of the compiled model, not constants), so that one
        compiled model serves every cohort of the same structure.

    Returns
    -------
    pytensor.tensor.TensorVariable
        Shape (patient, covariate).
    """
    model = pm.modelcontext(None)
    filled = np.where(np.isnan(values), 0.0, values)
    rows, cols = np.nonzero(np.isnan(values))
    is_bin = np.asarray(binary, dtype=bool)[cols]
    cont = np.nonzero(~is_bin)[0]
    bins = np.nonzero(is_bin)[0]

    def tensor(name: str, value: np.ndarray) -> pt.TensorVariable:
        if as_data:
            return pm.Data(f"covariate_{name}", np.asarray(value))
        return pt.as_tensor_variable(np.asarray(value))

    matrix = tensor("observed_filled", filled)
    if len(rows) == 0:
        return matrix
    labels = list(model.coords[missing_dim]) if missing_dim in model.coords else None
    if labels is None or len(labels) != len(rows):
        raise SpecError(f"model needs coords[{missing_dim!r}] with one label per missing cell")
    rows_t, cols_t = tensor("missing_row", rows), tensor("missing_column", cols)
    imputed = pt.zeros(rows_t.shape[0])
    if len(cont):
        model.add_coord(f"{missing_dim}_continuous", [labels[i] for i in cont])
        z = pm.Normal("covariate_missing", mu=0.0, sigma=1.0, dims=f"{missing_dim}_continuous")
        imputed = pt.set_subtensor(imputed[tensor("missing_continuous_cell", cont)], z)
    if len(bins):
        model.add_coord(f"{missing_dim}_binary", [labels[i] for i in bins])
        col_share = np.nanmean(values, axis=0)
        share_t = tensor("missing_share_centre", np.clip(col_share[cols[bins]], 0.05, 0.95))
        p = pm.Beta(
            "covariate_missing_share",
            alpha=1.0 + 4.0 * share_t,
            beta=1.0 + 4.0 * (1.0 - share_t),
            dims=f"{missing_dim}_binary",
        )
        imputed = pt.set_subtensor(imputed[tensor("missing_binary_cell", bins)], p)
    return pt.set_subtensor(matrix[rows_t, cols_t], imputed)


def site_effect(
    name: str,
    site_idx: np.ndarray,
    *,
    pooling: str = "partial",
    scale: float = 0.5,
    dim: str = "site",
    centred: bool = False,
    information: pt.TensorVariable | None = None,
) -> pt.TensorVariable:
    """Site offsets, one per site.

    Parameters
    ----------
    name : str
        Variable name (``site_level``, ``site_log_frailty``, ...).
    site_idx : numpy.ndarray
        Site index of each row the effect is returned for.
    pooling : {"partial", "fixed"}
        ``partial``: offsets sum to zero across sites (the overall level lives in the
        intercept or the cutpoints), offsets = sd * ZeroSumNormal(1) with
        ``sd ~ HalfNormal(scale)``, non-centred (with two sites the sd is barely
        identified: ``scale`` is the stated, weakly informative prior).
        ``fixed``: the first site is the reference (0) and the others get independent
        Normal(0, scale) offsets.
    scale : float
        Prior scale (model units).
    centred : bool
        ``partial`` only: offsets ~ ZeroSumNormal(sd) sampled directly (no ``_raw``
        variable). Better when every site has so much data that its offset is pinned
        down far more tightly than ``scale`` (large cohorts); the default non-centred form
        is better for small ones (funnel otherwise).
    information : pytensor.tensor.TensorVariable, optional
        ``partial`` pooling, not ``centred``: what the data tell about a site's offset (the
        precision they give it, per unit squared, a scalar that may depend on other
        parameters). The offsets are then sampled partly centred, ``u ~ ZeroSumNormal(sd **
        w)`` and offsets ``= sd ** (1 - w) * u`` with ``w = information * sd**2 /
        (information * sd**2 + 1)`` at the current ``sd`` (the variable ``{name}_partly_centred``):
        centred where the data pin the offsets down, non-centred towards the funnel's neck.
        Same model at every weight.

    Returns
    -------
    pytensor.tensor.TensorVariable
        The offset of each row of ``site_idx``.
    """
    model = pm.modelcontext(None)
    n_sites = len(model.coords[dim])
    if pooling == "partial" and centred:
        sd = pm.HalfNormal(f"{name}_sd", sigma=scale)
        offsets = pm.ZeroSumNormal(name, sigma=sd, dims=dim)
    elif pooling == "partial" and information is not None:
        sd = pm.HalfNormal(f"{name}_sd", sigma=scale)
        weight = partial_centring_weight(information, sd)
        sampled = pm.ZeroSumNormal(f"{name}_partly_centred", sigma=sd**weight, dims=dim)
        offsets = pm.Deterministic(name, sd ** (1.0 - weight) * sampled, dims=dim)
    elif pooling == "partial":
        sd = pm.HalfNormal(f"{name}_sd", sigma=scale)
        raw = pm.ZeroSumNormal(f"{name}_raw", sigma=1.0, dims=dim)
        offsets = pm.Deterministic(name, raw * sd, dims=dim)
    elif pooling == "fixed":
        if n_sites == 1:
            offsets = pm.Deterministic(name, pt.zeros(1), dims=dim)
        else:
            model.add_coord(f"{dim}_vs_reference", list(model.coords[dim])[1:])
            free = pm.Normal(f"{name}_vs_reference", 0.0, scale, dims=f"{dim}_vs_reference")
            offsets = pm.Deterministic(name, pt.concatenate([pt.zeros(1), free]), dims=dim)
    else:
        raise SpecError(f"site pooling must be 'partial' or 'fixed', not {pooling!r}")
    return offsets[site_idx]


def sural_prevalence(
    known: np.ndarray, reduced: np.ndarray, *, as_data: bool = False
) -> pt.TensorVariable:
    """Share of patients with early sural reduction, learnt from the known statuses.

    Adds ``sural_reduced_prevalence ~ Beta(1, 1)`` and the known statuses as Bernoulli
    observations (``sural_reduced_observed``). The prevalence is the prior weight of the
    two statuses for patients whose status is unknown (see :func:`mix_over_sural`).
    ``as_data``: hold the known statuses as ``pm.Data`` (an input of the compiled model).
    """
    prevalence = pm.Beta("sural_reduced_prevalence", alpha=1.0, beta=1.0)
    model = pm.modelcontext(None)
    ids = [pid for pid, k in zip(model.coords["patient"], known, strict=True) if k]
    if ids and "patient_sural_known" not in model.coords:
        model.add_coord("patient_sural_known", ids)
    if ids:
        pm.Bernoulli(
            "sural_reduced_observed",
            p=prevalence,
            observed=pm.Data("sural_reduced_known", reduced[known]) if as_data else reduced[known],
            dims="patient_sural_known",
        )
    return prevalence


def mix_over_sural(
    logp_if_reduced: pt.TensorVariable,
    logp_if_preserved: pt.TensorVariable,
    known: np.ndarray | pt.TensorVariable,
    reduced: np.ndarray | pt.TensorVariable,
    prevalence: pt.TensorVariable,
) -> pt.TensorVariable:
    """Per-patient log-likelihood, marginalising an unknown early-sural status.

    For a patient with a known status the log-likelihood under that status is used; for
    one with an unknown status both are weighted by the prevalence:
    ``log(p * L_reduced + (1 - p) * L_preserved)``. The status is thus imputed in the
    model exactly (it is discrete, so it is summed out rather than sampled).

    Parameters
    ----------
    logp_if_reduced, logp_if_preserved : pytensor.tensor.TensorVariable
        Shape (patient,): the patient's log-likelihood under each status.
    known, reduced : numpy.ndarray or pytensor.tensor.TensorVariable
        From :func:`sural_status` (0/1 or bool), or the same as data of the model.
    prevalence : pytensor.tensor.TensorVariable
        From :func:`sural_prevalence`.
    """
    known_t = pt.as_tensor_variable(known.astype(bool))
    reduced_t = pt.as_tensor_variable(reduced.astype(bool))
    chosen = pt.switch(reduced_t, logp_if_reduced, logp_if_preserved)
    mixed = pt.logaddexp(
        pt.log(prevalence) + logp_if_reduced, pt.log1p(-prevalence) + logp_if_preserved
    )
    return pt.switch(known_t, chosen, mixed)


def rituximab_by_sural_status(
    prefix: str, mean_sd: float, interaction_sd: float
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Rituximab's effect in the two early-sural groups, with the same prior for both.

    Adds ``{prefix}_rituximab_mean ~ Normal(0, mean_sd)`` (the mean of the two groups'
    effects), ``{prefix}_rituximab_x_sural ~ Normal(0, interaction_sd)`` (sural-reduced
    minus sural-preserved) and the deterministic ``{prefix}_rituximab = mean -
    interaction / 2`` (sural-preserved; sural-reduced is that plus the interaction). Each
    group's effect then has prior sd ``sqrt(mean_sd**2 + interaction_sd**2 / 4)``. Written
    as the sural-preserved effect plus the interaction, the sural-reduced group's prior
    would be wider, the same data would shrink it less, and the interaction would lean
    towards benefit when rituximab helps both groups alike (docs/robustness.md).

    Returns
    -------
    preserved, interaction : pytensor.tensor.TensorVariable
        ``{prefix}_rituximab`` and ``{prefix}_rituximab_x_sural``.
    """
    mean = pm.Normal(f"{prefix}_rituximab_mean", 0.0, mean_sd)
    interaction = pm.Normal(f"{prefix}_rituximab_x_sural", 0.0, interaction_sd)
    preserved = pm.Deterministic(f"{prefix}_rituximab", mean - 0.5 * interaction)
    return preserved, interaction


def prior_from_spec(priors: dict[str, Any], key: str, default: float) -> float:
    """A prior scale from the spec's ``[priors]`` table, with a default."""
    value = priors.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise SpecError(f"[priors] {key} must be a number, not {value!r}") from err
    if value <= 0:
        raise SpecError(f"[priors] {key} must be positive, not {value}")
    return value


def site_parametrisation(spec: Any, allowed: tuple[str, ...] = SITE_PARAMETRISATIONS) -> str:
    """The spec's ``[sites] parametrisation``, one of ``allowed``.

    Raises
    ------
    magbayes.errors.SpecError
        For any other value.
    """
    choice = spec.section("sites")["parametrisation"]
    if choice not in allowed:
        raise SpecError(
            "[sites] parametrisation must be one of "
            + ", ".join(repr(c) for c in allowed)
            + f", not {choice!r}"
        )
    return choice


def partial_centring_weight(information: Any, sd: Any) -> Any:
    """How centred a Normal(mean, sd) effect is sampled, from 0 (non-centred) to 1 (centred).

    The share of the effect's posterior precision that its own data give, ``information *
    sd**2 / (information * sd**2 + 1)`` (Papaspiliopoulos, Roberts & Skold 2007, Stat Sci
    22:59-73), with ``information`` the precision the data give it (per unit squared) and
    ``sd`` its prior spread, in the same units.
    """
    ratio = information * sd**2
    return ratio / (ratio + 1.0)
