"""How much the headline depends on the priors.

Two complementary checks:

Refitting (:func:`refit_priors`)
    The spec's ``[priors.sensitivity]`` table lists alternative values of prior scales
    (``interaction_sd = [1.0, 5.0]`` in ``models/response.toml``). Each alternative is
    refitted through :func:`magbayes.fit.fit` with :meth:`magbayes.spec.Spec.with_overrides`
    and the headline is tabulated beside the default's. Exact, but one fit per row.

Power-scaling (:func:`power_scaling`, :func:`plot_power_scaling`)
    ArviZ's ``psense`` / ``psense_summary`` (Kallioinen et al., Stat Comput 2024) raise the
    prior or the likelihood to a power close to 1 and measure, by Pareto-smoothed importance
    sampling of the existing draws, how much the posterior moves; no refit. It needs the
    ``log_prior`` group (:func:`pymc.stats.compute_log_prior`) and the ``log_likelihood``
    group (:func:`pymc.compute_log_likelihood`). A prior sensitivity above 0.05 flags an
    informative prior; a likelihood sensitivity below 0.05 a weak likelihood.

Neither depends on the model: they read the model definition's ``headline``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import pandas as pd
import pymc as pm
import xarray as xr

from magbayes.atomic import write_csv
from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.model_draws import add_log_likelihood, log_prior
from magbayes.models import get_model
from magbayes.result import PRIOR_SENSITIVITY_FILE
from magbayes.spec import Spec

#: A function fitting a spec to a cohort: ``fitter(cohort, spec, draws=, tune=, chains=,
#: seed=)`` returning a :class:`magbayes.fit.FitResult` (or anything with ``posterior``,
#: ``headline()`` and ``diagnostics()``).
Fitter = Callable[..., Any]

if TYPE_CHECKING:
    from magbayes.fit import FitResult


def prior_alternatives(spec: Spec) -> list[tuple[str, float, str]]:
    """The default prior scales and the alternatives of ``[priors.sensitivity]``.

    Parameters
    ----------
    spec : Spec
        A resolved spec (defaults filled in, as :func:`magbayes.fit.resolve_spec` gives).

    Returns
    -------
    list of (prior, value, label)
        For each prior named in ``[priors.sensitivity]``: its default value labelled
        ``"default"``, then each alternative labelled ``"narrower"`` or ``"wider"``
        (smaller or larger than the default).

    Raises
    ------
    SpecError
        When an alternative names a prior the spec does not have, or is not a list of
        positive numbers.
    """
    priors = spec.section("priors")
    alternatives = priors.get("sensitivity", {})
    if not isinstance(alternatives, dict):
        raise SpecError("[priors.sensitivity] must be a table of lists")
    rows: list[tuple[str, float, str]] = []
    for key, values in alternatives.items():
        if key not in priors:
            raise SpecError(f"[priors.sensitivity] {key}: no such prior in [priors]")
        if not isinstance(values, list) or not values:
            raise SpecError(f"[priors.sensitivity] {key} must be a list of numbers")
        default = float(priors[key])
        rows.append((key, default, "default"))
        for value in values:
            try:
                value = float(value)
            except (TypeError, ValueError) as err:
                raise SpecError(f"[priors.sensitivity] {key}: {value!r} is not a number") from err
            if value <= 0:
                raise SpecError(f"[priors.sensitivity] {key}: {value} must be positive")
            if value != default:
                rows.append((key, value, "narrower" if value < default else "wider"))
    return rows


def _default_fitter() -> Fitter:
    from magbayes.fit import fit

    return fit


def refit_priors(
    cohort: Cohort,
    spec: Spec | str,
    *,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int | None = None,
    fitter: Fitter | None = None,
) -> pd.DataFrame:
    """Refit under each prior alternative of ``[priors.sensitivity]`` and tabulate the headline.

    The default fit is included once per prior named (it is refitted, not reused, so every
    row comes from the same sampler settings and seed).

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    spec : Spec or str
        The spec (or its name / path); defaults are filled in.
    draws, tune, chains, seed : int, optional
        Sampler settings for every refit (default: the spec's ``[sampler]``).
    fitter : callable, optional
        Fitting function (default :func:`magbayes.fit.fit`).

    Returns
    -------
    pandas.DataFrame
        One row per (prior, value): ``prior``, ``value``, ``label``, the headline
        probability ``p_sural_predicts_rituximab_benefit`` and its ``mcse``, the
        contrast's ``contrast_mean``, ``hdi_low``, ``hdi_high`` (on the headline's
        scale), ``p_rituximab_benefit_sural_reduced``,
        ``p_rituximab_benefit_sural_preserved``, and the fit's ``divergences``,
        ``r_hat_max`` and ``ess_bulk_min``.
    """
    from magbayes.fit import resolve_spec

    spec = resolve_spec(spec)
    fit = fitter or _default_fitter()
    rows = []
    for key, value, label in prior_alternatives(spec):
        alternative = spec.with_overrides({"priors": {key: value}})
        result = fit(cohort, alternative, draws=draws, tune=tune, chains=chains, seed=seed)
        headline = result.headline()
        diagnostics = result.diagnostics()
        rows.append(
            {
                "prior": key,
                "value": value,
                "label": label,
                "p_sural_predicts_rituximab_benefit": headline[
                    "p_sural_predicts_rituximab_benefit"
                ],
                "mcse": headline["mcse"],
                "contrast_mean": headline["contrast"]["mean"],
                "hdi_low": headline["contrast"]["hdi_low"],
                "hdi_high": headline["contrast"]["hdi_high"],
                "hdi_prob": headline["contrast"]["hdi_prob"],
                "p_rituximab_benefit_sural_reduced": headline["p_rituximab_benefit_sural_reduced"],
                "p_rituximab_benefit_sural_preserved": headline[
                    "p_rituximab_benefit_sural_preserved"
                ],
                "divergences": diagnostics["divergences"],
                "r_hat_max": diagnostics["r_hat_max"],
                "ess_bulk_min": diagnostics["ess_bulk_min"],
            }
        )
    return pd.DataFrame(rows)


def with_log_densities(
    tree: xr.DataTree, model: pm.Model, *, likelihood_vars: list[str] | None = None
) -> xr.DataTree:
    """A copy of a fit's DataTree with ``log_prior`` and ``log_likelihood`` groups.

    Parameters
    ----------
    tree : xarray.DataTree
        Posterior draws of ``model``.
    model : pymc.Model
        The model that produced them (``magbayes.fit.prepare`` rebuilds it).
    likelihood_vars : list of str, optional
        Observed variables whose log-likelihood to compute when the group is missing
        (default: all).
    """
    tree = tree.copy()
    if "log_likelihood" not in tree.children:
        add_log_likelihood(tree, model, likelihood_vars)
    if "log_prior" not in tree.children:
        tree["log_prior"] = xr.DataTree(log_prior(tree["posterior"].to_dataset(), model))
    return tree


def power_scaling(
    tree: xr.DataTree,
    model: pm.Model,
    *,
    var_names: list[str] | None = None,
    model_name: str | None = None,
) -> pd.DataFrame:
    """Power-scaling sensitivity of the headline's variables (no refit).

    Parameters
    ----------
    tree : xarray.DataTree
        A fit's DataTree (``log_prior`` / ``log_likelihood`` are added when missing).
    model : pymc.Model
        The model that produced the draws.
    var_names : list of str, optional
        Posterior variables to assess (default: the headline's contrast and main effect).
    model_name : str, optional
        Model name, for the headline's variables (default: the tree's ``magbayes_model``
        attribute).

    Returns
    -------
    pandas.DataFrame
        Indexed by variable: ``prior`` (sensitivity to scaling the whole joint prior),
        ``prior_own`` (scaling only the variable's own prior, where it has one),
        ``likelihood`` (scaling the whole likelihood) and ArviZ's ``diagnosis`` (from the
        joint prior and the likelihood).
    """
    if var_names is None:
        headline = get_model(_model_name(tree, model_name)).headline
        var_names = [headline.contrast_var, headline.main_var]
    tree = with_log_densities(tree, model)
    table = az.psense_summary(tree, var_names=var_names)
    own = []
    for var in var_names:
        if var in tree["log_prior"].data_vars:
            ds = az.psense(tree, var_names=[var], group="prior", group_var_names=[var])
            own.append(float(ds[var]))
        else:
            own.append(float("nan"))
    table.insert(1, "prior_own", own)
    return table


def _model_name(tree: xr.DataTree, model_name: str | None) -> str:
    """The model whose headline variables to assess: given, or saved in the tree."""
    name = model_name or tree.attrs.get("magbayes_model")
    if not name:
        raise SpecError("name the model (model_name=...): the DataTree does not say which it is")
    return str(name)


def plot_power_scaling(
    tree: xr.DataTree,
    model: pm.Model,
    path: str | Path,
    *,
    var_names: list[str] | None = None,
    model_name: str | None = None,
) -> Path:
    """Save ArviZ's power-scaling plot (posterior under prior and likelihood scaled by 0.8-1.25).

    Parameters
    ----------
    tree : xarray.DataTree
        A fit's DataTree.
    model : pymc.Model
        The model that produced the draws.
    path : str or pathlib.Path
        PNG file to write (``figures/prior_sensitivity.png``).
    var_names : list of str, optional
        Variables to show (default: the headline's contrast).
    model_name : str, optional
        Model name (default: the tree's ``magbayes_model`` attribute).

    Returns
    -------
    pathlib.Path
    """
    if var_names is None:
        var_names = [get_model(_model_name(tree, model_name)).headline.contrast_var]
    tree = with_log_densities(tree, model)
    plot = az.plot_psense_dist(tree, var_names=var_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot.savefig(path)
    return path


def write_prior_sensitivity(
    result: FitResult,
    cohort: Cohort,
    folder: str | Path,
    *,
    fitter: Fitter | None = None,
) -> pd.DataFrame | None:
    """Refit under the spec's prior alternatives and write the table into a results folder.

    Writes ``prior_sensitivity.csv`` (the default prior refitted with the same settings,
    then each alternative), which the report shows; ``magbayes report`` later reads the
    saved table and never refits. Does nothing when the spec has no
    ``[priors.sensitivity]``. :meth:`FitResult.save` runs it before the report, through
    :class:`PriorSensitivityWriter`, so the folder is written once.

    Parameters
    ----------
    result : FitResult
        The fit under the default prior (its sampler settings and seed are reused).
    cohort : Cohort
        The cohort it was fitted to.
    folder : str or pathlib.Path
        The results folder being written.
    fitter : callable, optional
        Fitting function (default :func:`magbayes.fit.fit`).

    Returns
    -------
    pandas.DataFrame or None
        The table, or ``None`` when there is nothing to refit.
    """
    if not prior_alternatives(result.spec):
        return None
    posterior = result.posterior["posterior"]
    settings = {
        "draws": int(posterior.sizes["draw"]),
        "tune": int(result.spec.section("sampler")["tune"]),
        "chains": int(posterior.sizes["chain"]),
        "seed": result.seed,
    }
    table = refit_priors(cohort, result.spec, fitter=fitter, **settings)
    write_csv(Path(folder) / PRIOR_SENSITIVITY_FILE, table, index=False)
    return table


@dataclass
class PriorSensitivityWriter:
    """Writes the prior-sensitivity table into a results folder as it is saved.

    Pass it to :meth:`FitResult.save` (``extra=[writer]``); afterwards ``table`` holds
    what was written (``None`` when the spec has no alternatives).

    Attributes
    ----------
    cohort : Cohort
        The cohort the fit was made on.
    fitter : callable, optional
        Fitting function (default :func:`magbayes.fit.fit`).
    table : pandas.DataFrame or None
        The table written.
    """

    cohort: Cohort
    fitter: Fitter | None = None
    table: pd.DataFrame | None = None

    def __call__(self, result: FitResult, folder: Path) -> None:
        """Refit and write ``prior_sensitivity.csv`` into ``folder``."""
        self.table = write_prior_sensitivity(result, self.cohort, folder, fitter=self.fitter)


def prior_sensitivity_writer(
    cohort: Cohort, fitter: Fitter | None = None
) -> PriorSensitivityWriter:
    """A :class:`PriorSensitivityWriter` for fits of ``cohort``."""
    return PriorSensitivityWriter(cohort, fitter)
