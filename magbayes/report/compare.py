"""PSIS-LOO comparison of fits of different specs on the same cohort.

:func:`compare_fits` checks that every fit saw the same data (same cohort SHA-256 and
the same observed outcome), computes each fit's PSIS-LOO with ``arviz.loo`` (pointwise,
on the outcome's log-likelihood, one term per patient, so it is leave-one-patient-out)
and ranks them with ``arviz.compare``. Each fit's Pareto-k values above 0.7 are counted
and named: for those patients the importance-sampling estimate is unreliable, and the
comparison should be read with that in mind (or the fits refitted with more draws, or
compared by K-fold cross-validation).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd

from magbayes.report.labels import outcome_variable

if TYPE_CHECKING:
    from magbayes.fit import FitResult

#: Pareto-k above which a patient's PSIS-LOO term is unreliable.
PARETO_K_THRESHOLD = 0.7


class DifferentDataError(ValueError):
    """Fits that were not made on the same data cannot be compared by LOO."""


@dataclass(frozen=True)
class ParetoKWarning:
    """Observations of one fit whose Pareto-k exceeds the threshold.

    Attributes
    ----------
    fit : str
        Name of the fit (its results folder).
    n_high : int
        Number of observations (patients) with k > ``threshold``.
    n_total : int
        Number of observations.
    labels : list of str
        Their labels (patient ids) with k, worst first.
    threshold : float
        The Pareto-k threshold (0.7).
    """

    fit: str
    n_high: int
    n_total: int
    labels: list[str]
    threshold: float = PARETO_K_THRESHOLD

    def message(self) -> str:
        """The warning in one line."""
        shown = ", ".join(self.labels[:10]) + (", ..." if len(self.labels) > 10 else "")
        return (
            f"{self.fit}: {self.n_high} of {self.n_total} Pareto k > {self.threshold} "
            f"(PSIS-LOO unreliable for: {shown})"
        )


@dataclass
class Comparison:
    """A LOO comparison table and its Pareto-k warnings.

    Attributes
    ----------
    table : pandas.DataFrame
        ``arviz.compare``'s table (rank, elpd, p, elpd_diff, dse, weight, ...) with the
        fit's model and spec, and ``pareto_k_gt_0_7`` (count), one row per fit, best first.
    warnings : list of ParetoKWarning
        Fits with Pareto k above the threshold.
    variable : str
        The log-likelihood variable compared (``score``, ``worsening``, ``response``).
    data_sha256 : str
        The cohort's SHA-256 shared by all fits.
    """

    table: pd.DataFrame
    warnings: list[ParetoKWarning] = field(default_factory=list)
    variable: str = ""
    data_sha256: str = ""

    def to_text(self) -> str:
        """The table and the warnings, for a terminal."""
        columns = [
            c
            for c in ("rank", "elpd", "se", "elpd_diff", "dse", "p", "weight", "pareto_k_gt_0_7")
            if c in self.table.columns
        ]
        shown = self.table[columns].copy()
        for column in ("elpd", "se", "elpd_diff", "dse", "p"):
            if column in shown:
                shown[column] = shown[column].map(lambda v: f"{float(v):.1f}")
        if "weight" in shown:
            shown["weight"] = shown["weight"].map(lambda v: f"{float(v):.2f}")
        lines = [
            f"PSIS-LOO comparison (log-likelihood of '{self.variable}', one term per "
            "patient; higher elpd = better expected predictive accuracy)",
            shown.to_string(),
        ]
        if self.warnings:
            lines.append("")
            lines.append(f"Pareto-k warnings (k > {PARETO_K_THRESHOLD}):")
            lines.extend(f"  {w.message()}" for w in self.warnings)
        else:
            lines.append(f"No Pareto k > {PARETO_K_THRESHOLD}.")
        return "\n".join(lines)


def check_same_data(results: Mapping[str, FitResult]) -> str:
    """Raise :class:`DifferentDataError` unless all fits used the same data.

    Two checks: the cohorts' SHA-256 (from the manifests) must agree, and the observed
    outcome each model was fitted to must be identical (same variable, same labels, same
    values), since LOO compares predictions of the same observations.

    Returns
    -------
    str
        The shared SHA-256 (empty when no fit recorded one).
    """
    if len(results) < 2:
        raise ValueError("compare needs at least two fits")
    hashes = {name: r.data_sha256 for name, r in results.items()}
    known = {h for h in hashes.values() if h}
    if len(known) > 1 or (known and any(not h for h in hashes.values())):
        listing = "; ".join(f"{name}: {h[:12] or '(none)'}" for name, h in hashes.items())
        raise DifferentDataError(
            "these fits were made on different data (cohort SHA-256 differs: "
            f"{listing}); PSIS-LOO only compares models of the same observations"
        )
    reference_name, reference = next(iter(results.items()))
    ref_var = outcome_variable(reference.model)
    ref_obs = reference.posterior["observed_data"][ref_var]
    for name, result in results.items():
        var = outcome_variable(result.model)
        observed = result.posterior["observed_data"][var] if var in _observed(result) else None
        same = (
            var == ref_var
            and observed is not None
            and observed.dims == ref_obs.dims
            and observed.shape == ref_obs.shape
            and all(
                np.array_equal(observed[d].values, ref_obs[d].values)
                for d in ref_obs.dims
                if d in observed.coords and d in ref_obs.coords
            )
            and np.array_equal(np.asarray(observed.values), np.asarray(ref_obs.values))
        )
        if not same:
            raise DifferentDataError(
                f"{name} and {reference_name} were not fitted to the same observations "
                f"({result.model} '{var}' vs {reference.model} '{ref_var}'): PSIS-LOO only "
                "compares models of the same outcome on the same patients"
            )
    return next(iter(known), "")


def _observed(result: FitResult) -> list[str]:
    if "observed_data" not in result.posterior.children:
        return []
    return list(result.posterior["observed_data"].data_vars)


def pareto_k_warning(name: str, loo, threshold: float = PARETO_K_THRESHOLD) -> ParetoKWarning:
    """Count and name the observations of one fit with Pareto k above ``threshold``."""
    k = loo.pareto_k
    values = np.asarray(k.values, float).ravel()
    if k.ndim == 1 and k.dims[0] in k.coords:
        labels = [str(v) for v in k[k.dims[0]].values]
    else:
        labels = [str(i) for i in range(values.size)]
    high = np.flatnonzero(values > threshold)
    order = high[np.argsort(-values[high])]
    return ParetoKWarning(
        fit=name,
        n_high=int(high.size),
        n_total=int(values.size),
        labels=[f"{labels[i]} (k={values[i]:.2f})" for i in order],
        threshold=threshold,
    )


def compare_fits(results: Mapping[str, FitResult]) -> Comparison:
    """PSIS-LOO comparison of fits on the same data.

    Parameters
    ----------
    results : mapping of str to FitResult
        Fits by name (their results folders), at least two.

    Returns
    -------
    Comparison

    Raises
    ------
    DifferentDataError
        When the fits were not made on the same cohort and observations.
    """
    sha = check_same_data(results)
    first = next(iter(results.values()))
    variable = outcome_variable(first.model)
    loos = {}
    pareto = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto-k warnings are reported below, by patient
        for name, result in results.items():
            loos[name] = az.loo(result.posterior, pointwise=True, var_name=variable)
            pareto.append(pareto_k_warning(name, loos[name]))
        table = az.compare(loos, round_to="none")
    table = table.copy()
    table.index.name = "fit"
    counts = {w.fit: w.n_high for w in pareto}
    table["pareto_k_gt_0_7"] = [counts[name] for name in table.index]
    table["n_observations"] = [loos[name].n_data_points for name in table.index]
    table["model"] = [results[name].model for name in table.index]
    table["spec"] = [results[name].spec.path for name in table.index]
    return Comparison(
        table=table,
        warnings=[w for w in pareto if w.n_high],
        variable=variable,
        data_sha256=sha,
    )


def fit_names(folders: Sequence[str | Path]) -> list[str]:
    """Names for results folders: their folder names, made unique with parents if needed."""
    paths = [Path(f).resolve() for f in folders]
    names = [p.name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.name}" for p in paths]
    if len(set(names)) < len(names):
        names = [f"{name}#{k + 1}" for k, name in enumerate(names)]
    return names


def compare_folders(folders: Sequence[str | Path]) -> Comparison:
    """Load results folders (no refitting) and compare them (see :func:`compare_fits`)."""
    from magbayes.fit import load_fit

    names = fit_names(folders)
    results = {name: load_fit(folder) for name, folder in zip(names, folders, strict=True)}
    return compare_fits(results)
