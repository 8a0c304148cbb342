"""The fit pipeline, in stages that can be called alone.

``fit(cohort, "progression")`` runs them all (STYLE.md):

1. :func:`resolve_spec`: the spec by name or path, the model's defaults under it, checked;
2. :func:`prepare`: the spec's early-sural definition applied to the cohort, the
   printable :class:`~magbayes.models.base.Design` and the PyMC model
   (``magbayes fit --dry-run`` stops here);
3. :func:`sample`: the posterior, with nutpie;
4. :func:`augment`: log-likelihood, posterior predictive and prior draws, the design;
5. a :class:`~magbayes.result.FitResult`, which saves itself as the results folder of
   CONTRACT.md section 4 (:meth:`~magbayes.result.FitResult.save`).

A fit that fails the convergence gate is refitted once in the model's other coordinates
(its definition's ``refit_spec``) and, when it missed only R-hat or ESS narrowly, once longer.
:func:`sample_prior` draws from the prior alone (a prior predictive check).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from magbayes import model_draws
from magbayes.atomic import jsonable
from magbayes.cohort.tables import Cohort
from magbayes.models import DEFAULT_MODEL, get_model, is_registered
from magbayes.models.base import Design
from magbayes.over_draws import vectorised_mode
from magbayes.provenance import cohort_digest
from magbayes.result import (
    ESS_BULK_MIN,
    RHAT_MAX,
    FitResult,
    PriorSample,
    load_fit,
    package_versions,
)
from magbayes.sampler import sample_posterior
from magbayes.spec import Spec, checked, deep_merge, load_spec

__all__ = [
    "FitResult",
    "PriorSample",
    "augment",
    "fit",
    "load_fit",
    "package_versions",
    "prepare",
    "resolve_spec",
    "sample",
    "sample_prior",
]

logger = logging.getLogger(__name__)


def resolve_spec(model: str | Path | Spec, overrides: dict | None = None) -> Spec:
    """Load a spec by name or path and fill the model's defaults under it.

    Parameters
    ----------
    model : str, pathlib.Path or Spec
        ``"progression"``, a path to a ``.toml`` spec, the name of a model registered in
        code (:func:`magbayes.models.register_model`), or an already loaded spec.
    overrides : dict, optional
        Nested values replacing the spec's (``{"sampler": {"draws": 200}}``).

    Returns
    -------
    Spec
        With every key the model reads present.

    Raises
    ------
    SpecError
        When the spec (or an override) has an unknown table or key, a value of the wrong
        type or out of range (:func:`magbayes.spec.checked`): before anything is fitted.
    """
    if isinstance(model, Spec):
        spec = model
    elif isinstance(model, str) and is_registered(model):
        spec = Spec(model, {"model": model})  # a model defined in code: its defaults
    else:
        spec = load_spec(model)
    data = deep_merge(dict(get_model(spec.model).defaults), spec.data)
    if overrides:
        data = deep_merge(data, overrides)
    builtin = spec.is_builtin and "covariates" not in (overrides or {})
    resolved = Spec(spec.model, data, path=spec.path, text=spec.text, is_builtin=builtin)
    return checked(resolved)


def prepare(cohort: Cohort, spec: Spec) -> tuple[Cohort, Design, pm.Model]:
    """Apply the spec's early-sural definition, then build the design and the model.

    This is what ``magbayes fit --dry-run`` shows; nothing is sampled.
    """
    definition = get_model(spec.model)
    sural = spec.section("early_sural")
    cohort = cohort.with_sural_definition(
        float(sural["threshold_uv"]),
        float(sural["window_years"]),
    )
    design = definition.make_design(cohort, spec)
    model = definition.build_model(design, spec)
    return cohort, design, model


def starting_values(spec: Spec, design: Design) -> dict[str, np.ndarray]:
    """Where the sampler starts for this spec's model and cohort (empty: its defaults).

    The model definition's ``starting_values`` (the progression model reads them off each
    patient's scores); they move the start only, not the model.
    """
    return get_model(spec.model).starting_values(design, spec)


def fit(
    cohort: Cohort | str | Path,
    model: str | Path | Spec = DEFAULT_MODEL,
    *,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int | None = None,
    sampler: str = "nutpie",
    overrides: dict | None = None,
    progress: bool | None = None,
    prior_predictive: bool = True,
    command: str | None = None,
) -> FitResult:
    """Fit a model spec to a cohort.

    Parameters
    ----------
    cohort : Cohort or path
        A loaded cohort, or a cohort folder / workbook to load.
    model : str, pathlib.Path or Spec
        Spec name (``"progression"``, ``"worsening"``, ``"response"``) or path.
    draws, tune, chains, seed : int, optional
        Override the spec's ``[sampler]`` values.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        NUTS implementation (PyMC's ``nuts_sampler``).
    overrides : dict, optional
        Nested spec values to replace.
    progress : bool, optional
        Show sampling progress; default: only on a terminal.
    prior_predictive : bool
        Also draw from the prior (for prior/posterior plots and prior predictive checks).
    command : str, optional
        The command line to record in the manifest.

    Returns
    -------
    FitResult
        When the first fit fails the convergence gate and the model offers other
        coordinates for the same model (its module's ``refit_spec``, e.g. non-centred
        patients after divergences), the fit is run once more in them; a fit that then
        misses only the R-hat or ESS threshold, narrowly, is run once more with twice the draws
        and tuning steps. ``FitResult.earlier_fits`` says why and what each earlier fit showed.
    """
    if not isinstance(cohort, Cohort):
        from magbayes.cohort.read import load_cohort

        cohort = load_cohort(cohort)
    sampler_overrides = {
        k: v
        for k, v in {"draws": draws, "tune": tune, "chains": chains, "seed": seed}.items()
        if v is not None
    }
    spec = resolve_spec(model, deep_merge(overrides or {}, {"sampler": sampler_overrides}))
    started = time.perf_counter()
    result, design = _fit_once(cohort, spec, sampler, progress, prior_predictive, command)
    earlier: list[dict[str, Any]] = []
    while (step := _next_fit(result, design)) is not None:
        next_spec, why = step
        logger.info("refitting %s: %s", spec.model, why)
        diagnostics = result.diagnostics()
        earlier.append(
            {
                "why": why,
                "spec": _changed_values(result.spec.data, next_spec.data),
                **{key: diagnostics[key] for key in _REFIT_RECORD},
            }
        )
        result, _ = _fit_once(cohort, next_spec, sampler, progress, prior_predictive, command)
        result.earlier_fits = list(earlier)  # what the next step may still try
    add_timing(result, cohort)
    result.timing["wall_seconds"] = time.perf_counter() - started
    return result


def add_timing(result: FitResult, cohort: Cohort) -> None:
    """Add the model's timing answer (prompt against delayed rituximab) to a fit.

    Its definition's ``timing`` needs the cohort (each patient's own treatment history),
    so it runs here, where the cohort is known, and is kept as the ``timing`` group of the
    results; a model without one is left as it is. A failure is a warning, never a lost fit.
    """
    definition = get_model(result.model)
    if definition.timing is None:
        return
    step = time.perf_counter()
    try:
        contrast = definition.timing(result, cohort)
    except Exception as err:  # noqa: BLE001 (reported; the fit is kept)
        warnings.warn(f"the timing answer could not be computed: {err!r}", stacklevel=2)
        return
    result.posterior["timing"] = xr.DataTree(contrast)
    result.timing["timing_answer_seconds"] = time.perf_counter() - step


#: Draws and tuning steps are multiplied by this once when a fit without divergences misses
#: the R-hat threshold by at most :data:`RHAT_MARGIN`, or the bulk ESS threshold with at
#: least 1 / LONGER_FACTOR of it: over every parameter, per-patient ones included, a largest
#: R-hat of 1.0103 after 4 x 1,000 draws is chance more often than non-convergence, and on
#: stress cohorts fits without divergences ended at R-hat 1.022-1.023 with a bulk ESS of
#: 217-258, which more draws settle (docs/robustness.md); the longer fit tells which.
LONGER_FACTOR = 2
RHAT_MARGIN = 0.03


def _next_fit(result: FitResult, design: Design) -> tuple[Spec, str] | None:
    """The spec of the next fit when ``result`` failed the gate, and why; ``None`` if none.

    Each of two refits at most once, in whichever order the fits call for them: the model's
    own refit in other coordinates (its module's ``refit_spec``, e.g. non-centred patients
    after divergences), and, for a fit without divergences whose largest R-hat is at most
    :data:`RHAT_MARGIN` above the threshold and whose smallest bulk ESS is at least the
    threshold over :data:`LONGER_FACTOR`, one with :data:`LONGER_FACTOR` times the draws
    and tuning steps. So at most three fits.
    """
    diagnostics = result.diagnostics()
    if diagnostics["passed"]:
        return None
    done = [fit["why"] for fit in result.earlier_fits]
    spec = result.spec
    if all(why.startswith(_LONGER) for why in done):  # no refit in other coordinates yet
        refit = get_model(spec.model).refit_spec(spec, design, diagnostics)
        if refit is not None:
            return refit
    marginal = (
        not diagnostics["divergences"]
        and diagnostics["ess_bulk_min"] >= ESS_BULK_MIN / LONGER_FACTOR
        and diagnostics["r_hat_max"] <= RHAT_MAX + RHAT_MARGIN
    )
    if not marginal or any(why.startswith(_LONGER) for why in done):
        return None
    settings = spec.section("sampler")
    draws = int(settings["draws"]) * LONGER_FACTOR
    tune = int(settings["tune"]) * LONGER_FACTOR
    why = (
        f"{_LONGER} ({'; '.join(diagnostics['reasons'])}; no divergences): refitted with "
        f"{draws} draws after {tune} tuning steps per chain"
    )
    return spec.with_overrides({"sampler": {"draws": draws, "tune": tune}}), why


_LONGER = "the fit missed only the R-hat or ESS threshold, narrowly"


#: What the results keep of each fit that was refitted.
_REFIT_RECORD = (
    "divergences",
    "r_hat_max",
    "ess_bulk_min",
    "sampling_seconds",
    "wall_seconds",
    "reasons",
)


def _changed_values(before: dict, after: dict) -> dict[str, Any]:
    """``{"table.key": [before, after]}`` for every value that differs between two specs."""
    changed: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            inner = _changed_values(old, new)
            changed.update({f"{key}.{k}": v for k, v in inner.items()})
        elif old != new:
            changed[key] = [old, new]
    return changed


def sample(
    pm_model: pm.Model,
    design: Design,
    spec: Spec,
    *,
    sampler: str = "nutpie",
    progress: bool | None = None,
) -> xr.DataTree:
    """Sample the posterior of a prepared model (stage 3 of the pipeline).

    Parameters
    ----------
    pm_model : pymc.Model
        From :func:`prepare`.
    design : Design
        Its design (for the model's starting values).
    spec : Spec
        The resolved spec (its ``[sampler]`` table).
    sampler : str
        NUTS implementation.
    progress : bool, optional
        Show progress; default only on a terminal.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior``, ``sample_stats`` and ``observed_data``. The convergence
        gate is computed by :meth:`FitResult.diagnostics` (ArviZ), not by the sampler.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*object mode.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        return sample_posterior(
            pm_model,
            spec.section("sampler"),
            sampler,
            progress=progress,
            start=starting_values(spec, design),
        )


def augment(
    tree: xr.DataTree,
    pm_model: pm.Model,
    design: Design,
    spec: Spec,
    *,
    prior_predictive: bool = True,
) -> tuple[xr.DataTree, dict[str, float]]:
    """Add what the report and model comparison read to sampled draws (stage 4).

    The outcome's pointwise log-likelihood (for PSIS-LOO), posterior predictive draws of
    the outcome, prior draws of the population-level parameters (for prior/posterior
    plots) and the design as ``constant_data``; then the model's ``finalise`` lays the
    groups out for reading. Each is computed over all draws at once, with nothing compiled
    (:mod:`magbayes.model_draws`).

    Returns
    -------
    tree : xarray.DataTree
        The same tree with the new groups.
    timing : dict
        Seconds of each step (``log_likelihood_seconds``, ...).
    """
    definition = get_model(spec.model)
    settings = spec.section("sampler")
    seed = int(settings["seed"])
    outcome = [definition.outcome_var, *definition.other_observed]
    timing: dict[str, float] = {}
    posterior = tree["posterior"].to_dataset()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*object mode.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        step = time.perf_counter()
        tree["log_likelihood"] = xr.DataTree(
            model_draws.log_likelihood(posterior, pm_model, outcome)
        )
        timing["log_likelihood_seconds"] = time.perf_counter() - step
        step = time.perf_counter()
        tree["posterior_predictive"] = xr.DataTree(
            model_draws.posterior_predictive(posterior, pm_model, outcome, seed + 1)
        )
        timing["posterior_predictive_seconds"] = time.perf_counter() - step
        population = definition.population_parameters(pm_model)
        if prior_predictive and population:
            step = time.perf_counter()
            # population-level parameters only: the prior of the headline contrast and of
            # every effect, for prior/posterior plots (full prior predictive checks:
            # ``sample_prior``).
            tree["prior"] = xr.DataTree(
                model_draws.prior_draws(
                    pm_model,
                    population,
                    int(settings.get("prior_draws", 1000)),
                    seed + 2,
                )
            )
            timing["prior_seconds"] = time.perf_counter() - step
    tree["constant_data"] = xr.DataTree(design.constant_data())
    return definition.finalise(tree, design), timing


def _fit_once(
    cohort: Cohort,
    spec: Spec,
    sampler: str,
    progress: bool | None,
    prior_predictive: bool,
    command: str | None,
) -> tuple[FitResult, Design]:
    """One fit of a resolved spec: prepare, sample, augment (no refit)."""
    started = time.perf_counter()
    cohort, design, pm_model = prepare(cohort, spec)
    sample_start = time.perf_counter()
    tree = sample(pm_model, design, spec, sampler=sampler, progress=progress)
    timing = {"sampling_seconds": time.perf_counter() - sample_start}
    tree, steps = augment(tree, pm_model, design, spec, prior_predictive=prior_predictive)
    timing.update(steps)
    timing["wall_seconds"] = time.perf_counter() - started
    return FitResult(
        posterior=tree,
        spec=spec,
        design_counts=jsonable(design.counts),
        standardisation=design.standardisation,
        cohort_summary=jsonable(cohort.summary()),
        data_sha256=cohort_digest(cohort),
        seed=int(spec.section("sampler")["seed"]),
        sampler=sampler,
        timing=timing,
        command=command or "",
        left_out_covariates=design.left_out_covariates,
    ), design


def sample_prior(
    cohort: Cohort | str | Path,
    model: str | Path | Spec = DEFAULT_MODEL,
    draws: int = 500,
    seed: int | None = None,
    *,
    visit_years: list[float] | np.ndarray | None = None,
    overrides: dict | None = None,
    command: str | None = None,
) -> PriorSample:
    """Draw from a model's priors and prior predictive for one cohort (no sampling).

    What the priors imply for the data, before the data are seen: a prior predictive
    check. With ``visit_years`` every patient is given a visit at each of those times
    (their covariates, early-sural status and treatment courses kept), so the draws show
    the trajectories the priors imply over the whole follow-up.

    Parameters
    ----------
    cohort : Cohort or path
        A loaded cohort, or a cohort folder / workbook to load.
    model : str, pathlib.Path or Spec
        Spec name or path.
    draws : int
        Number of prior draws.
    seed : int, optional
        Random seed (default: the spec's ``[sampler] seed``).
    visit_years : sequence of float, optional
        Years since onset at which to predict each patient's score (e.g. 0 to 12); default
        the cohort's own visits.
    overrides : dict, optional
        Nested spec values to replace.
    command : str, optional
        The command line to record.

    Returns
    -------
    PriorSample
    """
    if not isinstance(cohort, Cohort):
        from magbayes.cohort.read import load_cohort

        cohort = load_cohort(cohort)
    spec = resolve_spec(model, overrides)
    seed_value = int(seed if seed is not None else spec.section("sampler")["seed"])
    observed_visits = cohort.visits.copy()
    cohort_summary = jsonable(cohort.summary())
    grid = None if visit_years is None else [float(t) for t in visit_years]
    drawn_on = cohort if grid is None else _cohort_seen_at(cohort, grid)
    _, design, pm_model = prepare(drawn_on, spec)
    pymc_log = logging.getLogger("pymc")
    level = pymc_log.level
    pymc_log.setLevel(logging.WARNING)  # not the "Sampling: [...]" line
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*object mode.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            prior = pm.sample_prior_predictive(
                draws=int(draws),
                model=pm_model,
                random_seed=seed_value,
                compile_kwargs={"mode": vectorised_mode()},
            )
    finally:
        pymc_log.setLevel(level)
    groups = ["prior", "prior_predictive"] + (["observed_data"] if grid is None else [])
    tree = xr.DataTree.from_dict({g: prior[g].to_dataset() for g in groups if g in prior.children})
    tree["constant_data"] = xr.DataTree(design.constant_data())
    tree = get_model(spec.model).finalise(tree, design)
    return PriorSample(
        tree=tree,
        spec=spec,
        design_counts=jsonable(design.counts),
        cohort_summary=cohort_summary,
        observed_visits=observed_visits,
        data_sha256=cohort_digest(cohort),
        seed=seed_value,
        visit_years=grid,
        command=command or "",
    )


def _cohort_seen_at(cohort: Cohort, years: list[float]) -> Cohort:
    """The cohort with every patient's visits replaced by one at each of ``years``.

    The scores of these visits are placeholders (prior predictive draws do not read them).
    """
    from magbayes.cohort.tables import SCORES

    ids = cohort.patient_ids
    visits = pd.DataFrame(
        {
            "patient_id": np.repeat(ids, len(years)),
            "years_since_onset": np.tile(np.asarray(years, float), len(ids)),
        }
    )
    for score, (low, high, integer) in SCORES.items():
        visits[score] = int(low) if integer else (low + high) / 2.0
    return Cohort.from_frames(
        cohort.patients.reset_index(),
        visits,
        cohort.treatments,
        source=cohort.source,
        sha256=cohort.sha256,
        sural_threshold_uv=cohort.sural_threshold_uv,
        sural_window_years=cohort.sural_window_years,
    )
