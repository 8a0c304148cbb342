"""A patient's context in a fit: covariates, site offsets and early-sural status, per draw.

The blocks every model shares (:mod:`magbayes.models.blocks`: standardised covariates with
missing cells imputed in the model, partially pooled site offsets, the early-sural status
and its prevalence) seen from the predictions' side: for a patient of the fit, their
posterior draws; for a new patient, their values in the fit's units, and draws from the
population model of whatever they lack (a missing covariate, an unseen site's offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from magbayes.models import blocks


def flat(da: xr.DataArray) -> np.ndarray:
    """Draws as ``(sample, ...)``: chain and draw stacked."""
    other = [d for d in da.dims if d not in ("chain", "draw")]
    return np.asarray(da.transpose("chain", "draw", *other).values).reshape(
        -1, *[da.sizes[d] for d in other]
    )


def binary_covariates(
    constant: xr.Dataset, standardisation: dict[str, dict[str, float]]
) -> np.ndarray:
    """Which of the fit's covariates are 0/1 (left unstandardised, observed values 0 or 1)."""
    if "covariate" not in constant.coords:
        return np.zeros(0, bool)
    values = np.asarray(constant["covariate_value"].values, float)
    out = []
    for c, name in enumerate(str(n) for n in constant["covariate"].values):
        scale = standardisation.get(name, {})
        observed = values[:, c][np.isfinite(values[:, c])]
        unscaled = scale.get("mean") == 0.0 and scale.get("sd") == 1.0
        out.append(bool(unscaled and np.isin(observed, (0.0, 1.0)).all()))
    return np.asarray(out, bool)


def fitted_covariates(
    posterior: xr.Dataset, constant: xr.Dataset, binary: np.ndarray
) -> np.ndarray:
    """The fitted patients' standardised covariates per draw, ``(sample, patient, covariate)``.

    Missing cells take their imputed draws (``covariate_missing``; for a 0/1 covariate the
    probability ``covariate_missing_share``, as the model uses it).
    """
    values = np.asarray(constant["covariate_value"].values, float)
    n = int(posterior.sizes["chain"] * posterior.sizes["draw"])
    out = np.broadcast_to(np.where(np.isnan(values), 0.0, values), (n, *values.shape)).copy()
    rows, cols = np.nonzero(np.isnan(values))
    if not len(rows):
        return out
    is_bin = binary[cols]
    if (~is_bin).any():
        out[:, rows[~is_bin], cols[~is_bin]] = flat(posterior["covariate_missing"])
    if is_bin.any():
        out[:, rows[is_bin], cols[is_bin]] = flat(posterior["covariate_missing_share"])
    return out


@dataclass(frozen=True)
class NewPatient:
    """What the population model needs of a patient not in the fit.

    Attributes
    ----------
    site : int or None
        Index of the patient's site among the fit's sites (``None``: a site the fit has
        not seen, whose offsets are drawn from their spread).
    covariates : numpy.ndarray
        Standardised covariates in the fit's units (NaN where missing).
    binary : numpy.ndarray of bool
        Which covariates are 0/1.
    binary_share : numpy.ndarray
        Observed share of 1 of each 0/1 covariate in the fit (for a missing one).
    sural : float or None
        1 reduced, 0 preserved, ``None`` unknown.
    """

    site: int | None
    covariates: np.ndarray
    binary: np.ndarray
    binary_share: np.ndarray
    sural: float | None


def standardised(values: Any, binary: bool, scale: dict[str, float]) -> float:
    """A covariate value in the fit's standardised units (NaN stays NaN)."""
    value = float(values)
    if binary or not np.isfinite(value):
        return value
    return (value - scale["mean"]) / scale["sd"]


def new_patient(
    cohort: Any,
    patient_id: str,
    constant: xr.Dataset,
    standardisation: dict[str, dict[str, float]],
    binary: np.ndarray,
    sites: list[str],
) -> NewPatient:
    """The :class:`NewPatient` of a cohort's patient, in the fit's units.

    ``sites`` are the fit's sites, in the order of its site offsets.
    """
    site_name = str(cohort.patients.loc[patient_id, "site"])
    site = sites.index(site_name) if site_name in sites else None
    names = [str(c) for c in constant["covariate"].values] if "covariate" in constant.coords else []
    fitted = np.asarray(constant["covariate_value"].values, float) if names else np.zeros((0, 0))
    share = np.array([np.nanmean(fitted[:, c]) if binary[c] else np.nan for c in range(len(names))])
    values = []
    for c, name in enumerate(names):
        raw = blocks.covariate_values(cohort, name)
        values.append(standardised(raw.loc[patient_id], binary[c], standardisation.get(name, {})))
    status = cohort.patients.loc[patient_id, "sural_reduced"]
    sural = None if pd.isna(status) else float(bool(status))
    return NewPatient(site, np.asarray(values, float), binary, np.nan_to_num(share), sural)


def new_covariates(
    patient: NewPatient, shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """A new patient's covariates, ``(*shape, covariate)``, missing ones drawn.

    A missing continuous covariate is standard normal (the imputation model on the
    standardised scale); a missing 0/1 one is 1 with the fit's observed share.
    """
    x = np.broadcast_to(patient.covariates, (*shape, len(patient.covariates))).copy()
    for c in np.nonzero(np.isnan(patient.covariates))[0]:
        if patient.binary[c]:
            x[..., c] = rng.random(shape) < patient.binary_share[c]
        else:
            x[..., c] = rng.standard_normal(shape)
    return x


def new_site_offsets(
    params: dict[str, np.ndarray],
    name: str,
    site: int | None,
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """A new patient's site offset ``name`` per (sample, candidate).

    The fitted site's draws, or for a site the fit has not seen, draws from the offsets'
    spread (``{name}_sd``; 0 where the model has none, e.g. fixed site effects, where an
    unseen site is the reference).
    """
    if name not in params:
        return np.zeros(shape)
    if site is not None:
        return np.broadcast_to(params[name][:, site, None], shape)
    spread = params.get(f"{name}_sd")
    if spread is None:
        return np.zeros(shape)
    return spread[:, None] * rng.standard_normal(shape)


def new_sural_status(
    patient: NewPatient,
    params: dict[str, np.ndarray],
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """A new patient's early-sural status per (sample, candidate): theirs, or drawn.

    An unknown status is 1 (reduced) with the fit's prevalence
    ``sural_reduced_prevalence`` (0.5 where the model has none).
    """
    if patient.sural is not None:
        return np.full(shape, float(patient.sural))
    prevalence = params.get("sural_reduced_prevalence")
    prevalence = np.full(shape[0], 0.5) if prevalence is None else prevalence
    return (rng.random(shape) < prevalence[:, None]).astype(float)


def first_rituximab(courses: pd.DataFrame) -> float:
    """Start of a patient's first rituximab course (years since onset; NaN without one)."""
    starts = courses.loc[courses["treatment"] == "rituximab", "start_years"].astype(float)
    return float(starts.min()) if len(starts) else float("nan")
