"""Fitting a model spec to a cohort, and the fitted result.

``fit(cohort, "progression")`` runs the pipeline of STYLE.md: resolve the spec, apply its
early-sural definition to the cohort, build the design and the PyMC model, sample with
nutpie, add the log-likelihood, prior and posterior predictive draws, and return a
:class:`FitResult`. ``FitResult.save(folder)`` writes the results folder of CONTRACT.md
section 4 atomically; :func:`load_fit` reopens it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from magbayes import __version__
from magbayes.cohort.tables import Cohort
from magbayes.models import get_model_module, population_parameters
from magbayes.models.base import Design
from magbayes.provenance import RESULTS_LAYOUT, check_cohort, check_layout, cohort_digest
from magbayes.sampler import sample_posterior
from magbayes.spec import Spec, checked, deep_merge, load_spec

logger = logging.getLogger(__name__)

#: Convergence gate (CONTRACT.md section 3).
RHAT_MAX = 1.01
ESS_BULK_MIN = 400

#: Variables never listed in summaries or gated: raw non-centred draws and imputations
#: are gated through the quantities built from them.
_NOT_SUMMARISED_PREFIXES = ("patient_z", "covariate_missing")


def resolve_spec(model: str | Path | Spec, overrides: dict | None = None) -> Spec:
    """Load a spec by name or path and fill the model's defaults under it.

    Parameters
    ----------
    model : str, pathlib.Path or Spec
        ``"progression"``, a path to a ``.toml`` spec, or an already loaded spec.
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
    spec = model if isinstance(model, Spec) else load_spec(model)
    module = get_model_module(spec.model)
    data = deep_merge(module.DEFAULTS, spec.data)
    if overrides:
        data = deep_merge(data, overrides)
    builtin = spec.is_builtin and "covariates" not in (overrides or {})
    resolved = Spec(spec.model, data, path=spec.path, text=spec.text, is_builtin=builtin)
    return checked(resolved)


def predictive_backend() -> str | None:
    """PyTensor backend for posterior predictive draws: ``"c"`` when a C++ compiler is set up.

    PyMC draws predictive values one posterior draw at a time, so the cost is the call, and
    a call through PyTensor's C backend is cheaper than through numba: 1.0-1.2 s against
    2.6-2.7 s for the 4,000 draws of the 47-patient progression default (docs/performance.md).
    Without a compiler, PyMC's default.
    """
    import pytensor

    return "c" if pytensor.config.cxx else None


def prepare(cohort: Cohort, spec: Spec) -> tuple[Cohort, Design, pm.Model]:
    """Apply the spec's early-sural definition, then build the design and the model.

    This is what ``magbayes fit --dry-run`` shows; nothing is sampled.
    """
    module = get_model_module(spec.model)
    sural = spec.section("early_sural")
    cohort = cohort.with_sural_definition(
        float(sural.get("threshold_uv", cohort.sural_threshold_uv)),
        float(sural.get("window_years", cohort.sural_window_years)),
    )
    design = module.make_design(cohort, spec)
    model = module.build_model(design, spec)
    return cohort, design, model


def starting_values(spec: Spec, design: Design) -> dict[str, np.ndarray]:
    """Where the sampler starts for this spec's model and cohort (empty: its defaults).

    The model module's ``starting_values`` when it has one (the progression model reads
    them off each patient's scores); they move the start only, not the model.
    """
    module = get_model_module(spec.model)
    make = getattr(module, "starting_values", None)
    return make(design, spec) if make is not None else {}


def fit(
    cohort: Cohort | str | Path,
    model: str | Path | Spec = "progression",
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
        misses only the R-hat threshold, narrowly, is run once more with twice the draws
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
    if earlier:
        result.earlier_fits = earlier
        result.timing["wall_seconds"] = time.perf_counter() - started
    return result


#: Draws and tuning steps are multiplied by this once when a fit without divergences and
#: with enough effective draws misses only the R-hat threshold, by at most
#: :data:`RHAT_MARGIN`: over every parameter, per-patient ones included, a largest R-hat of
#: 1.0103 after 4 x 1,000 draws is chance more often than non-convergence
#: (docs/robustness.md); the longer fit tells which.
LONGER_FACTOR = 2
RHAT_MARGIN = 0.01


def _next_fit(result: FitResult, design: Design) -> tuple[Spec, str] | None:
    """The spec of the next fit when ``result`` failed the gate, and why; ``None`` if none.

    First the model's own refit in other coordinates (its module's ``refit_spec``, e.g.
    non-centred patients after divergences), once; then, for a fit without divergences
    and with enough effective draws whose largest R-hat is at most :data:`RHAT_MARGIN`
    above the threshold, once with :data:`LONGER_FACTOR` times the draws and tuning steps.
    """
    diagnostics = result.diagnostics()
    if diagnostics["passed"]:
        return None
    done = [fit["why"] for fit in result.earlier_fits]
    spec = result.spec
    if not done:
        refit = get_model_module(spec.model).refit_spec(spec, design, diagnostics)
        if refit is not None:
            return refit
    marginal = (
        not diagnostics["divergences"]
        and diagnostics["ess_bulk_min"] >= ESS_BULK_MIN
        and diagnostics["r_hat_max"] <= RHAT_MAX + RHAT_MARGIN
    )
    if not marginal or any(why.startswith(_LONGER) for why in done):
        return None
    settings = spec.section("sampler")
    draws = int(settings.get("draws", 1000)) * LONGER_FACTOR
    tune = int(settings.get("tune", 1000)) * LONGER_FACTOR
    why = (
        f"{_LONGER} ({'; '.join(diagnostics['reasons'])}; no divergences, enough effective "
        f"draws): refitted with "
        f"{draws} draws after {tune} tuning steps per chain"
    )
    return spec.with_overrides({"sampler": {"draws": draws, "tune": tune}}), why


_LONGER = "the fit missed only the R-hat threshold, narrowly"


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


def _fit_once(
    cohort: Cohort,
    spec: Spec,
    sampler: str,
    progress: bool | None,
    prior_predictive: bool,
    command: str | None,
) -> tuple[FitResult, Design]:
    """One fit of a resolved spec (:func:`fit` without the refit in other coordinates)."""
    settings = spec.section("sampler")
    seed_value = int(settings.get("seed", 2020))
    if progress is None:
        progress = sys.stderr.isatty()

    started = time.perf_counter()
    cohort, design, pm_model = prepare(cohort, spec)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*object mode.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        sample_start = time.perf_counter()
        # the gate is computed by FitResult.diagnostics (ArviZ), not by the sampler
        tree = sample_posterior(
            pm_model, settings, sampler, progress=progress, start=starting_values(spec, design)
        )
        sampling_seconds = time.perf_counter() - sample_start
        timing = {"sampling_seconds": sampling_seconds}
        # the outcome's log-likelihood only (not the early-sural statuses' Bernoulli)
        outcome = [rv.name for rv in pm_model.observed_RVs if rv.name != "sural_reduced_observed"]
        step = time.perf_counter()
        pm.compute_log_likelihood(
            tree, var_names=outcome, model=pm_model, extend_inferencedata=True, progressbar=False
        )
        timing["log_likelihood_seconds"] = time.perf_counter() - step
        step = time.perf_counter()
        pm.sample_posterior_predictive(
            tree,
            var_names=outcome,
            model=pm_model,
            random_seed=seed_value + 1,
            extend_inferencedata=True,
            progressbar=False,
            backend=predictive_backend(),
        )
        timing["posterior_predictive_seconds"] = time.perf_counter() - step
        if prior_predictive:
            step = time.perf_counter()
            # population-level parameters only: the prior of the headline contrast and of
            # every effect, for prior/posterior plots (full prior predictive checks:
            # ``sample_prior``). Their graph holds no cohort data, so its compiled form is
            # shared by every cohort.
            prior = pm.sample_prior_predictive(
                draws=int(settings.get("prior_draws", 1000)),
                model=pm_model,
                var_names=population_parameters(pm_model, get_model_module(spec.model)),
                random_seed=seed_value + 2,
            )
            if "prior" in prior.children:
                tree["prior"] = prior["prior"]
            timing["prior_seconds"] = time.perf_counter() - step
    tree["constant_data"] = xr.DataTree(design.constant_data())
    module = get_model_module(spec.model)
    if hasattr(module, "finalise"):
        tree = module.finalise(tree, design)
    wall_seconds = time.perf_counter() - started

    return FitResult(
        posterior=tree,
        spec=spec,
        design_counts=_jsonable(design.counts),
        standardisation=design.standardisation,
        cohort_summary=_jsonable(cohort.summary()),
        data_sha256=cohort_digest(cohort),
        seed=seed_value,
        sampler=sampler,
        timing={**timing, "wall_seconds": wall_seconds},
        command=command or "",
        left_out_covariates=design.left_out_covariates,
    ), design


@dataclass
class FitResult:
    """A fitted model: posterior DataTree plus everything needed to report it.

    Attributes
    ----------
    posterior : xarray.DataTree
        Groups posterior, posterior_predictive, log_likelihood, sample_stats,
        observed_data, constant_data (and prior, prior_predictive when drawn).
    spec : Spec
        The resolved spec (defaults filled in).
    design_counts : dict
        Numbers the report states (visits used, values imputed, records left out).
    standardisation : dict
        Mean and sd (original units) of each standardised covariate.
    cohort_summary : dict
        :meth:`Cohort.summary` of the fitted cohort.
    data_sha256 : str
        SHA-256 of the cohort (:func:`magbayes.provenance.cohort_digest`: of its files, or
        of its tables for a cohort made in memory).
    seed : int
        Random seed of the sampler.
    sampler : str
        NUTS implementation used.
    timing : dict
        ``sampling_seconds`` and ``wall_seconds`` (s).
    command : str
        Command line that produced the fit.
    earlier_fits : list of dict
        The fits of :func:`fit` that failed the gate and were refitted, in order: why the
        next fit was run, the spec values it changed (``"table.key": [before, after]``)
        and the failed fit's divergences, R-hat, ESS, times and reasons. Empty for a fit
        that passed at once (or was not refitted).
    left_out_covariates : list of dict
        Covariates of a shipped default spec the cohort lacks, left out of the model
        (``{"covariate": ..., "reason": ...}``; CONTRACT.md section 2).
    """

    posterior: xr.DataTree
    spec: Spec
    design_counts: dict[str, Any]
    standardisation: dict[str, dict[str, float]]
    cohort_summary: dict[str, Any]
    data_sha256: str
    seed: int
    sampler: str
    timing: dict[str, float]
    command: str = ""
    earlier_fits: list[dict[str, Any]] = field(default_factory=list)
    left_out_covariates: list[dict[str, str]] = field(default_factory=list)

    # ----------------------------------------------------------------- statistics
    @property
    def model(self) -> str:
        """Model name."""
        return self.spec.model

    @property
    def hdi_prob(self) -> float:
        """Probability mass of the highest-density intervals reported."""
        return float(self.spec.section("sampler").get("hdi_prob", 0.94))

    def summary_vars(self) -> list[str]:
        """Population-level variables present in the posterior, in the module's order."""
        module = get_model_module(self.model)
        present = list(self.posterior["posterior"].data_vars)
        wanted = getattr(module, "SUMMARY_VARS", present)
        return [v for v in wanted if v in present]

    def summary(self, var_names: list[str] | None = None) -> pd.DataFrame:
        """ArviZ summary: mean, sd, HDI bounds, ess_bulk, ess_tail, r_hat, MCSE.

        Parameters
        ----------
        var_names : list of str, optional
            Variables to list; default the model's population-level parameters.
        """
        names = var_names or self.summary_vars()
        with warnings.catch_warnings():
            # constant elements (a reference level fixed at 0) have no R-hat: NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            table = az.summary(
                self.posterior,
                var_names=names,
                ci_prob=self.hdi_prob,
                ci_kind="hdi",
                round_to="none",
            )
        return table.apply(pd.to_numeric, errors="coerce")

    def diagnostics(self) -> dict[str, Any]:
        """Convergence checks over every sampled parameter (the gate of the CLI)."""
        post = self.posterior["posterior"].to_dataset()
        names = [
            v
            for v in post.data_vars
            if not v.startswith(_NOT_SUMMARISED_PREFIXES) and post[v].dtype.kind == "f"
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant elements: NaN
            rhat = az.rhat(post[names])
            ess_bulk = az.ess(post[names], method="bulk")
            ess_tail = az.ess(post[names], method="tail")

        def extreme(ds: xr.Dataset, how: str) -> tuple[float, str]:
            values = {k: float(getattr(ds[k], how)(skipna=True)) for k in ds.data_vars}
            values = {k: v for k, v in values.items() if np.isfinite(v)}
            if not values:
                return float("nan"), ""
            key = (max if how == "max" else min)(values, key=values.get)
            return values[key], key

        r_hat_max, r_hat_var = extreme(rhat, "max")
        ess_bulk_min, ess_bulk_var = extreme(ess_bulk, "min")
        ess_tail_min, ess_tail_var = extreme(ess_tail, "min")
        stats = self.posterior["sample_stats"]
        divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
        reasons = []
        if r_hat_max > RHAT_MAX:
            reasons.append(f"R-hat {r_hat_max:.3f} > {RHAT_MAX} ({r_hat_var})")
        if ess_bulk_min < ESS_BULK_MIN:
            reasons.append(f"bulk ESS {ess_bulk_min:.0f} < {ESS_BULK_MIN} ({ess_bulk_var})")
        if divergences:
            reasons.append(f"{divergences} divergent transition(s)")
        post_attrs = self.posterior["posterior"].attrs
        advice = []
        if divergences:
            target = self.spec.section("sampler").get("target_accept", 0.8)
            advice.append(
                f"raise the target acceptance (`[sampler] target_accept`, now {target}; "
                "e.g. 0.9 or 0.95), so that the sampler takes smaller steps"
            )
        if r_hat_max > RHAT_MAX or ess_bulk_min < ESS_BULK_MIN:
            advice.append("run more tuning steps and draws (`--tune`, `--draws`)")
        module = get_model_module(self.model)
        if divergences and hasattr(module, "divergence_advice"):
            advice.extend(module.divergence_advice(self.spec, post))
        return {
            "r_hat_max": r_hat_max,
            "r_hat_max_variable": r_hat_var,
            "ess_bulk_min": ess_bulk_min,
            "ess_bulk_min_variable": ess_bulk_var,
            "ess_tail_min": ess_tail_min,
            "ess_tail_min_variable": ess_tail_var,
            "divergences": divergences,
            "chains": int(post.sizes["chain"]),
            "draws": int(post.sizes["draw"]),
            "sampling_seconds": float(
                self.timing.get("sampling_seconds", post_attrs.get("sampling_time", 0.0))
            ),
            "wall_seconds": float(self.timing.get("wall_seconds", 0.0)),
            "thresholds": {"r_hat_max": RHAT_MAX, "ess_bulk_min": ESS_BULK_MIN, "divergences": 0},
            "passed": not reasons,
            "reasons": reasons,
            "advice": advice,
            "earlier_fits": self.earlier_fits,
        }

    def headline(self) -> dict[str, Any]:
        """The study question's answer (``headline.json`` of CONTRACT.md)."""
        from magbayes.report.headline import headline_for

        return headline_for(self)

    # ----------------------------------------------------------------- figures
    def _plot(self, name: str, path: str | Path) -> str:
        from magbayes.report import figures

        return getattr(figures, name)(self, path)

    def plot_trajectories(self, path: str | Path) -> str:
        """Observed scores of a few patients with posterior predictive bands (PNG)."""
        return self._plot("plot_trajectories", path)

    def plot_ppc(self, path: str | Path) -> str:
        """Posterior predictive check of the outcome's distribution (rootogram, PNG)."""
        return self._plot("plot_ppc", path)

    def plot_forest(self, path: str | Path) -> str:
        """Forest plot of treatment and covariate effects with HDIs (PNG)."""
        return self._plot("plot_forest", path)

    def plot_headline(self, path: str | Path) -> str:
        """Prior and posterior of the headline contrast, benefit side shaded (PNG)."""
        return self._plot("plot_headline", path)

    def plot_survival_curves(self, path: str | Path) -> str:
        """Probability of remaining free of worsening by group (worsening model, PNG)."""
        return self._plot("plot_survival_curves", path)

    def plot_rank(self, path: str | Path) -> str:
        """Rank plots of the headline and the worst-mixing parameters (PNG)."""
        return self._plot("plot_rank", path)

    # ----------------------------------------------------------------- files
    def manifest(self) -> dict[str, Any]:
        """Provenance: results layout, command, resolved spec, seed, data SHA-256, versions."""
        return {
            "layout_version": RESULTS_LAYOUT,
            "magbayes_version": __version__,
            "model": self.model,
            "command": self.command,
            "spec_path": self.spec.path,
            "spec": self.spec.data,
            "seed": self.seed,
            "sampler": self.sampler,
            "data_sha256": self.data_sha256,
            "cohort": self.cohort_summary,
            "design_counts": self.design_counts,
            "left_out_covariates": self.left_out_covariates,
            "standardisation": self.standardisation,
            "timing": self.timing,
            "earlier_fits": self.earlier_fits,
            # "cache": the compiled model was loaded (magbayes.compile_cache)
            "compiled_from": self.posterior["posterior"].attrs.get("compiled_from", ""),
            "versions": package_versions(),
        }

    def save(self, folder: str | Path, *, report: bool = True) -> Path:
        """Write the results folder atomically (CONTRACT.md section 4).

        Everything is written into a temporary sibling folder that replaces ``folder``
        only when complete, so an interrupted save leaves no half-written results.

        Parameters
        ----------
        folder : str or pathlib.Path
            Results folder (created or replaced).
        report : bool
            Also draw the figures and write ``report.md`` / ``report.html``.

        Returns
        -------
        pathlib.Path
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            self._write_files(tmp, report=report)
            _replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    def _write_files(self, out: Path, *, report: bool) -> None:
        tree = self.posterior.copy()
        tree.attrs.update(
            {
                "magbayes_version": __version__,
                "magbayes_model": self.model,
                "magbayes_manifest": json.dumps(_jsonable(self.manifest())),
            }
        )
        tree.to_netcdf(out / "posterior.nc", engine="h5netcdf")
        self.summary().to_csv(out / "summary.csv", index_label="parameter")
        _write_json(out / "headline.json", self.headline())
        _write_json(out / "diagnostics.json", self.diagnostics())
        _write_json(out / "manifest.json", self.manifest())
        if report:
            from magbayes.report import write_report

            write_report(self, out)


def _replace_folder(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def load_fit(folder: str | Path, cohort: Cohort | str | Path | None = None) -> FitResult:
    """Reopen a results folder written by :meth:`FitResult.save`.

    Parameters
    ----------
    folder : str or pathlib.Path
        Results folder containing ``posterior.nc`` and ``manifest.json``.
    cohort : Cohort or path, optional
        The cohort the results are to be used with: refused unless it is the one fitted
        (same SHA-256 as the manifest's ``data_sha256``).

    Returns
    -------
    FitResult

    Raises
    ------
    FileNotFoundError
        When ``folder`` holds no ``posterior.nc``.
    ResultsLayoutError
        When the folder was written in another results layout (a refit is needed).
    CohortMismatchError
        When ``cohort`` is not the cohort fitted; the message names both SHA-256.
    """
    folder = Path(folder)
    path = folder / "posterior.nc"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a magbayes results folder (no posterior.nc)")
    manifest_file = folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
    if manifest is not None:  # before opening posterior.nc: another layout may misread
        check_layout(folder, manifest)
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load()
    if manifest is None:
        manifest = json.loads(tree.attrs.get("magbayes_manifest", "{}"))
        check_layout(folder, manifest)
    if cohort is not None:
        check_cohort(folder, manifest, cohort)
    spec = Spec(
        model=manifest.get("model", tree.attrs.get("magbayes_model", "")),
        data=manifest.get("spec", {}),
        path=manifest.get("spec_path", ""),
    )
    return FitResult(
        posterior=tree,
        spec=spec,
        design_counts=manifest.get("design_counts", {}),
        standardisation=manifest.get("standardisation", {}),
        cohort_summary=manifest.get("cohort", {}),
        data_sha256=manifest.get("data_sha256", ""),
        seed=int(manifest.get("seed", 0)),
        sampler=manifest.get("sampler", ""),
        timing=manifest.get("timing", {}),
        command=manifest.get("command", ""),
        earlier_fits=manifest.get("earlier_fits", []),
        left_out_covariates=manifest.get("left_out_covariates", []),
    )


#: Packages whose versions a manifest records (those that compile and sample the model first).
_RECORDED_PACKAGES = (
    "pymc",
    "pytensor",
    "nutpie",
    "numba",
    "arviz",
    "numpy",
    "pandas",
    "xarray",
    "scipy",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a fit depends on."""
    import importlib.metadata as md
    import platform

    versions = {"python": platform.python_version(), "magbayes": __version__}
    for name in _RECORDED_PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(_jsonable(payload), indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------- prior only


@dataclass
class PriorSample:
    """Draws from a model's prior and prior predictive, without the data's likelihood.

    Attributes
    ----------
    tree : xarray.DataTree
        Groups ``prior``, ``prior_predictive`` and ``constant_data`` (and
        ``observed_data`` when the draws are at the cohort's own visits).
    spec : Spec
        The resolved spec.
    design_counts : dict
        The design's counts (of the visits the draws are made at).
    cohort_summary : dict
        :meth:`Cohort.summary` of the cohort (its real visits).
    observed_visits : pandas.DataFrame
        The cohort's real scored visits (``patient_id``, ``years_since_onset`` and the
        scores), to set the prior's predictions beside.
    data_sha256 : str
        SHA-256 of the cohort files.
    seed : int
        Random seed of the draws.
    visit_years : list of float or None
        The grid of years since onset the draws were made at (every patient seen at each),
        or ``None`` for the cohort's own visits.
    command : str
        Command line that produced the draws.
    """

    tree: xr.DataTree
    spec: Spec
    design_counts: dict[str, Any]
    cohort_summary: dict[str, Any]
    observed_visits: pd.DataFrame
    data_sha256: str
    seed: int
    visit_years: list[float] | None = None
    command: str = ""

    @property
    def model(self) -> str:
        """Model name."""
        return self.spec.model

    @property
    def hdi_prob(self) -> float:
        """Probability mass of the intervals reported."""
        return float(self.spec.section("sampler").get("hdi_prob", 0.94))

    def manifest(self) -> dict[str, Any]:
        """Provenance of the draws (as :meth:`FitResult.manifest`)."""
        return {
            "layout_version": RESULTS_LAYOUT,
            "magbayes_version": __version__,
            "kind": "prior predictive",
            "model": self.model,
            "command": self.command,
            "spec_path": self.spec.path,
            "spec": self.spec.data,
            "seed": self.seed,
            "prior_draws": int(self.tree["prior"].sizes.get("draw", 0)),
            "visit_years": self.visit_years,
            "data_sha256": self.data_sha256,
            "cohort": self.cohort_summary,
            "design_counts": self.design_counts,
            "versions": package_versions(),
        }


def sample_prior(
    cohort: Cohort | str | Path,
    model: str | Path | Spec = "progression",
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
    seed_value = int(seed if seed is not None else spec.section("sampler").get("seed", 2020))
    observed_visits = cohort.visits.copy()
    cohort_summary = _jsonable(cohort.summary())
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
                draws=int(draws), model=pm_model, random_seed=seed_value
            )
    finally:
        pymc_log.setLevel(level)
    groups = ["prior", "prior_predictive"] + (["observed_data"] if grid is None else [])
    tree = xr.DataTree.from_dict({g: prior[g].to_dataset() for g in groups if g in prior.children})
    tree["constant_data"] = xr.DataTree(design.constant_data())
    module = get_model_module(spec.model)
    if hasattr(module, "finalise"):
        tree = module.finalise(tree, design)
    return PriorSample(
        tree=tree,
        spec=spec,
        design_counts=_jsonable(design.counts),
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
