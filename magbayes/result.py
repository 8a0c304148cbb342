"""A fitted model and the results folder it is saved as.

:class:`FitResult` holds the posterior DataTree and what the report needs (the resolved
spec, the design's counts, the cohort's summary and digest, timings, earlier fits); it
computes its summary, convergence diagnostics and headline, and saves itself
(:meth:`FitResult.save`, CONTRACT.md section 4); :func:`load_fit` reopens the folder.
Figures and the report are functions of :mod:`magbayes.report` that take a FitResult.
:class:`PriorSample` is the same for draws from the prior alone.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from magbayes import __version__
from magbayes.atomic import atomic_folder, jsonable, write_csv, write_json
from magbayes.models import get_model
from magbayes.provenance import RESULTS_LAYOUT, check_cohort, check_layout
from magbayes.spec import Spec

if TYPE_CHECKING:
    from magbayes.cohort.tables import Cohort
    from magbayes.models.base import ModelDefinition

#: Convergence gate (CONTRACT.md section 3).
RHAT_MAX = 1.01
ESS_BULK_MIN = 400

#: Table of the headline under the spec's alternative priors, in a results folder
#: (:func:`magbayes.analyses.prior_sensitivity.write_prior_sensitivity`); the report shows it.
PRIOR_SENSITIVITY_FILE = "prior_sensitivity.csv"

#: Variables never listed in summaries or gated: raw non-centred draws and imputations
#: are gated through the quantities built from them.
_NOT_SUMMARISED_PREFIXES = ("patient_z", "covariate_missing")


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
    #: R-hat and ESS extremes of the posterior they were computed from (that group, the
    #: names and sizes of its variables), so that the fit, its files, report and figures
    #: compute them once (about 1.5 s for the progression default's 4 x 1,000 draws).
    _convergence: tuple[Any, tuple, dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    #: The default :meth:`summary` and what it was computed from (posterior group, the
    #: names and sizes of its variables, HDI probability), so that ``summary.csv`` and the
    #: report's effects table share one (0.3 s each for the progression default).
    _summary: tuple[Any, tuple, pd.DataFrame] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # ----------------------------------------------------------------- statistics
    @property
    def model(self) -> str:
        """Model name."""
        return self.spec.model

    @property
    def hdi_prob(self) -> float:
        """Probability mass of the highest-density intervals reported."""
        return float(self.spec.section("sampler")["hdi_prob"])

    @property
    def definition(self) -> ModelDefinition:
        """The fitted model's definition (:func:`magbayes.models.get_model`)."""
        return get_model(self.model)

    def summary_vars(self) -> list[str]:
        """Population-level variables present in the posterior, in the model's order."""
        return self.definition.present_summary_vars(self.posterior["posterior"])

    def summary(self, var_names: list[str] | None = None) -> pd.DataFrame:
        """ArviZ summary: mean, sd, HDI bounds, ess_bulk, ess_tail, r_hat, MCSE.

        Parameters
        ----------
        var_names : list of str, optional
            Variables to list; default the model's population-level parameters.
        """
        node, seen = self._posterior_state()
        seen = (*seen, self.hdi_prob)
        cached = self._summary
        if var_names is None and cached is not None and cached[0] is node and cached[1] == seen:
            return cached[2].copy()
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
        table = table.apply(pd.to_numeric, errors="coerce")
        if var_names is None:
            self._summary = (node, seen, table.copy())
        return table

    def _posterior_state(self) -> tuple[Any, tuple]:
        """The posterior group, and the names and sizes of its variables.

        What a statistic kept for reuse (:meth:`summary`, the convergence extremes) was
        computed from.
        """
        node = self.posterior["posterior"]
        post = node.to_dataset()
        return node, (tuple(post.data_vars), tuple(post.sizes.items()))

    def _convergence_extremes(self) -> dict[str, Any]:
        """Largest R-hat and smallest bulk and tail ESS over the sampled parameters, and which.

        Computed once for a posterior, again when its variables change.
        """
        node, seen = self._posterior_state()
        post = node.to_dataset()
        cached = self._convergence
        if cached is not None and cached[0] is node and cached[1] == seen:
            return cached[2]
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

        extremes = {}
        for name, table, how in (
            ("r_hat_max", rhat, "max"),
            ("ess_bulk_min", ess_bulk, "min"),
            ("ess_tail_min", ess_tail, "min"),
        ):
            extremes[name], extremes[f"{name}_variable"] = extreme(table, how)
        self._convergence = (node, seen, extremes)
        return extremes

    def diagnostics(self) -> dict[str, Any]:
        """Convergence checks over every sampled parameter (the gate of the CLI)."""
        post = self.posterior["posterior"].to_dataset()
        extremes = self._convergence_extremes()
        r_hat_max, r_hat_var = extremes["r_hat_max"], extremes["r_hat_max_variable"]
        ess_bulk_min, ess_bulk_var = extremes["ess_bulk_min"], extremes["ess_bulk_min_variable"]
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
            target = self.spec.section("sampler")["target_accept"]
            advice.append(
                f"raise the target acceptance (`[sampler] target_accept`, now {target}; "
                "e.g. 0.9 or 0.95), so that the sampler takes smaller steps"
            )
        if r_hat_max > RHAT_MAX or ess_bulk_min < ESS_BULK_MIN:
            advice.append("run more tuning steps and draws (`--tune`, `--draws`)")
        if divergences:
            advice.extend(self.definition.divergence_advice(self.spec, post))
        return {
            **extremes,
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

    def save(
        self,
        folder: str | Path,
        *,
        report: bool = True,
        extra: Sequence[Callable[[FitResult, Path], object]] = (),
    ) -> Path:
        """Write the results folder atomically (CONTRACT.md section 4).

        Everything is written into a temporary sibling folder that replaces ``folder``
        only when complete, so an interrupted save leaves no half-written results.

        Parameters
        ----------
        folder : str or pathlib.Path
            Results folder (created or replaced).
        report : bool
            Also draw the figures and write ``report.md`` / ``report.html``
            (:func:`magbayes.report.write_report`).
        extra : sequence of callables
            ``write(result, folder)`` run before the report, into the same temporary
            folder (e.g. the prior-sensitivity refits the report shows).

        Returns
        -------
        pathlib.Path
        """
        with atomic_folder(folder) as tmp:
            self.write_files(tmp)
            for write in extra:
                write(self, tmp)
            if report:
                from magbayes.report import write_report

                write_report(self, tmp)
        return Path(folder)

    def write_files(self, out: Path) -> None:
        """Write the data files of a results folder into ``out`` (not atomically).

        ``posterior.nc``, ``summary.csv``, ``headline.json``, ``diagnostics.json`` and
        ``manifest.json``; :meth:`save` calls it inside its temporary folder.
        """
        tree = self.posterior.copy()
        tree.attrs.update(
            {
                "magbayes_version": __version__,
                "magbayes_model": self.model,
                "magbayes_manifest": json.dumps(jsonable(self.manifest())),
            }
        )
        tree.to_netcdf(out / "posterior.nc", engine="h5netcdf")
        write_csv(out / "summary.csv", self.summary(), index_label="parameter")
        write_json(out / "headline.json", self.headline())
        write_json(out / "diagnostics.json", self.diagnostics())
        write_json(out / "manifest.json", self.manifest())


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
        return float(self.spec.section("sampler")["hdi_prob"])

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
