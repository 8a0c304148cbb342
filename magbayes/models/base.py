"""The model definition every model provides, and the design object it builds.

A model is one :class:`ModelDefinition`: its spec's defaults and schema, how it turns a
cohort into a :class:`Design` and a design into a PyMC model, its headline contrast and
benefit direction, how its effects and outcome are named in the report, and its own
figures and output files. The pipeline (:mod:`magbayes.fit`), the report, ``answer``,
``compare``, ``sbc`` and ``sensitivity`` read only this object; a model module exposes it
as ``DEFINITION`` and :func:`magbayes.models.get_model` returns it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from magbayes.labels import SHARED_PARAMETER_MEANINGS, Effect
from magbayes.sampler import MASS_MATRICES
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

if TYPE_CHECKING:
    import pymc as pm

    from magbayes.cohort.tables import Cohort
    from magbayes.fit import FitResult
    from magbayes.spec import Spec

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
        "mass_matrix": "diag",
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
    """A model's spec defaults: :data:`SHARED_DEFAULTS` with its own tables merged in.

    For a model defined in code; a shipped model's defaults are its spec file
    (:func:`shipped_defaults`).
    """
    from magbayes.spec import deep_merge

    return deep_merge(SHARED_DEFAULTS, own)


def shipped_defaults(name: str) -> dict[str, Any]:
    """The defaults of a shipped model: its spec file ``models/NAME.toml``, the one source.

    Every key the model reads is in that file (the file users read and copy); the
    top-level ``model`` and ``description`` are not defaults.
    """
    from magbayes.spec import resolve_spec_path

    path: Path = resolve_spec_path(name)
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return {k: v for k, v in data.items() if k not in ("model", "description")}


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
            "mass_matrix": one_of(*MASS_MATRICES),
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

    def group_benefit(self, posterior: xr.Dataset | xr.DataTree) -> dict[str, xr.DataArray]:
        """Draws of rituximab's effect by early-sural status, on the contrast's scale.

        Parameters
        ----------
        posterior : xarray.Dataset or xarray.DataTree
            Posterior (or prior) draws, or a DataTree holding a ``posterior`` group.

        Returns
        -------
        dict of str to xarray.DataArray
            ``"sural_preserved"``: the main effect; ``"sural_reduced"``: main effect plus
            the interaction.
        """
        if isinstance(posterior, xr.DataTree) and "posterior" in posterior.children:
            posterior = posterior["posterior"]
        main = posterior[self.main_var]
        return {
            "sural_reduced": main + posterior[self.contrast_var],
            "sural_preserved": main,
        }


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


class NotApplicable(Exception):  # noqa: N818 (a reason, not an error)
    """A figure or output that does not apply to this fit; the message says why."""


@dataclass(frozen=True)
class ModelFigure:
    """A figure of a model's own, drawn into ``figures/NAME.png`` of a results folder.

    Attributes
    ----------
    name : str
        File stem (``"survival_curves"``).
    title : str
        Heading in the report.
    draw : callable
        ``draw(result, path) -> caption``: draws the figure of a fit (a
        :class:`~magbayes.fit.FitResult`, or a :class:`~magbayes.fit.PriorSample` for a
        prior figure) as PNG; raises :class:`NotApplicable` when it does not apply.
    """

    name: str
    title: str
    draw: Callable[[Any, Path], str]


@dataclass(frozen=True)
class ReportSection:
    """A section of a model's own in the report, after the headline.

    Attributes
    ----------
    title : str
        Its heading.
    paragraphs : tuple of str
        Text (Markdown), before the table.
    table : pandas.DataFrame or None
        Cells formatted as printed.
    caption : str
        The table's caption.
    """

    title: str
    paragraphs: tuple[str, ...]
    table: pd.DataFrame | None = None
    caption: str = ""


def _applies_to_every_cohort(cohort: Cohort) -> bool:
    return True


def _no_sections(result: FitResult) -> list[ReportSection]:
    return []


def _no_starting_values(design: Design, spec: Spec) -> dict[str, np.ndarray]:
    return {}


def _no_refit(spec: Spec, design: Design, diagnostics: dict[str, Any]) -> None:
    return None


def _no_advice(spec: Spec, posterior: xr.Dataset) -> list[str]:
    return []


def _as_sampled(tree: xr.DataTree, design: Design) -> xr.DataTree:
    return tree


def _no_outputs(result: FitResult, folder: Path) -> list[Path]:
    return []


def _generic_effects(result: FitResult) -> list[Effect]:
    """Every scalar or one-dimensional ``alpha_``/``beta_``/``gamma_``/``delta_`` variable."""
    from magbayes.labels import vector_effects

    post = result.posterior["posterior"]
    out: list[Effect] = []
    for name, var in post.data_vars.items():
        if not str(name).startswith(("gamma_", "beta_", "alpha_", "delta_")):
            continue
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        if not extra:
            out.append(Effect(str(name), str(name), {}, "model scale"))
        elif len(extra) == 1:
            out += vector_effects(
                post, str(name), extra[0], lambda x, n=name: f"{n}[{x}]", "model scale"
            )
    return out


@dataclass(frozen=True)
class ModelDefinition:
    """Everything the pipeline, the report and the analyses know about one model.

    Required: what to fit. The rest has neutral defaults (no refit, no own figures, the
    variable names as labels), so a new model starts small and grows.

    Attributes
    ----------
    name : str
        The model's name, as in ``model = "..."`` in a spec.
    defaults : dict
        Every table and key of its spec with its default value (a shipped model's are its
        spec file, :func:`shipped_defaults`; a model defined in code uses
        :func:`shared_defaults`).
    make_design : callable
        ``make_design(cohort, spec) -> Design``: plain arrays and coordinates, printable
        (``magbayes fit --dry-run``).
    build_model : callable
        ``build_model(design, spec) -> pymc.Model``; every variable has named dims.
    headline : Headline
        The contrast variable, the main effect and the benefit direction.
    outcome_var : str
        Its observed variable: pointwise log-likelihood (PSIS-LOO, ``compare``) and
        posterior predictive draws (the report's checks).
    other_observed : tuple of str
        Further observed variables whose log-likelihood and predictive draws the fit also
        keeps (the joint model's ``end_of_follow_up``).
    title : str
        What the model is about, in the report's title (``"disability progression"``).
    own_rules : dict
        ``{table: {key: Rule}}`` of its own keys beyond the type of their default; the
        shared tables' rules are added (:func:`spec_rules`).
    summary_vars : tuple of str
        Population-level variables the summary lists, in order (empty: every free
        variable with at most one dimension).
    parameter_meanings : dict
        What each population-level variable that is not an effect means (summary table).
    effects : callable
        ``effects(result) -> list[Effect]``: its treatment, early-sural and covariate
        effects, readable, the headline contrast first.
    outcome_words : callable
        ``outcome_words(result) -> str``: the outcome in words, for figure axes.
    effect_units : callable
        ``effect_units(result) -> str``: the units of its effects, in one sentence.
    methods_sentence : callable
        ``methods_sentence(result) -> str``: what was modelled, for the methods paragraph.
    benefit_words : str
        What "benefit" means in this model (``"slowing of disability progression"``).
    equations : str
        The model in equations (reST, usually its module's docstring), for the report.
    has_trajectory : bool
        Its outcome is a score at each visit: prior draws are made on a grid of years.
    starting_values : callable
        ``starting_values(design, spec) -> dict``: where the sampler starts (empty: its
        own defaults); the start only, not the model.
    refit_spec : callable
        ``refit_spec(spec, design, diagnostics) -> (Spec, why) | None``: the spec of a refit
        in other coordinates of the same model when the first fit failed the gate.
    divergence_advice : callable
        ``divergence_advice(spec, posterior) -> list[str]``: what to change after
        divergences, beyond the shared advice.
    finalise : callable
        ``finalise(tree, design) -> tree``: lay sampled groups out for reading (scores per
        visit, ratings per course) after sampling.
    figures : tuple of ModelFigure
        Its own figures of a fit, drawn after the shared ones.
    prior_figures : tuple of ModelFigure
        Its own figures of prior draws (``magbayes fit --prior-only``).
    write_outputs : callable
        ``write_outputs(result, folder) -> list[Path]``: its own tables in a results
        folder (e.g. survival curves, hazard ratios).
    predict : callable or None
        ``predict(result, cohort, *, years, strategies, threshold, patients, seed) ->
        xarray.Dataset``: predictions for a cohort's patients under treatment strategies
        (:func:`magbayes.predict`); ``None`` for a model with nothing over time to predict.
    applies_to : callable
        ``applies_to(cohort) -> bool``: whether ``magbayes answer`` fits it on a cohort
        (default every cohort; the joint model needs the end of follow-up).
    timing : callable or None
        ``timing(result, cohort) -> xarray.Dataset``: draws of prompt minus delayed
        rituximab by early-sural group (the ``timing`` group of the results and of
        ``headline.json``); ``None`` when the model does not answer it.
    report_sections : callable
        ``report_sections(result) -> list[ReportSection]``: its own sections of the report,
        after the headline (the joint model's association); none by default.
    simulation_options : dict
        Options of :func:`magbayes.simulate_cohort` that a simulated cohort needs for this
        model (the joint model's ``end_of_follow_up``); used by SBC and the benchmarks.
    sbc_completion : callable or None
        ``sbc_completion(cohort, design, spec)``: for a model with data that SBC cannot
        redraw as the values of observed variables (the joint model's event times and the
        arrays that follow from them), an object with ``outputs(generator)`` (further
        tensors of the forward draw), ``prepare(generator)`` (data of the generating model
        before its draws) and ``complete(values, data, rng) -> dict`` (the refit's data, by
        observed variable or ``pm.Data`` name); ``None`` for the others.
    """

    name: str
    defaults: Mapping[str, Any]
    make_design: Callable[[Cohort, Spec], Design]
    build_model: Callable[[Design, Spec], pm.Model]
    headline: Headline
    outcome_var: str
    other_observed: tuple[str, ...] = ()
    title: str = ""
    own_rules: Mapping[str, Mapping[str, Rule]] = field(default_factory=dict)
    summary_vars: tuple[str, ...] = ()
    parameter_meanings: Mapping[str, str] = field(default_factory=dict)
    effects: Callable[[FitResult], list[Effect]] = _generic_effects
    outcome_words: Callable[[FitResult], str] | None = None
    effect_units: Callable[[FitResult], str] | None = None
    methods_sentence: Callable[[FitResult], str] | None = None
    benefit_words: str = "benefit"
    equations: str = ""
    has_trajectory: bool = False
    starting_values: Callable[[Design, Spec], dict[str, np.ndarray]] = _no_starting_values
    refit_spec: Callable[[Spec, Design, dict[str, Any]], tuple[Spec, str] | None] = _no_refit
    divergence_advice: Callable[[Spec, xr.Dataset], list[str]] = _no_advice
    finalise: Callable[[xr.DataTree, Design], xr.DataTree] = _as_sampled
    figures: tuple[ModelFigure, ...] = ()
    prior_figures: tuple[ModelFigure, ...] = ()
    write_outputs: Callable[[FitResult, Path], list[Path]] = _no_outputs
    predict: Callable[..., xr.Dataset] | None = None
    timing: Callable[[FitResult, Cohort], xr.Dataset] | None = None
    prediction_figure: Callable[[xr.Dataset, Cohort, str, Path], Path] | None = None
    applies_to: Callable[[Cohort], bool] = _applies_to_every_cohort
    report_sections: Callable[[FitResult], list[ReportSection]] = _no_sections
    simulation_options: Mapping[str, Any] = field(default_factory=dict)
    sbc_completion: Callable[[Cohort, Design, Spec], Any] | None = None

    @property
    def rules(self) -> dict[str, dict[str, Rule]]:
        """The spec's schema rules: the shared tables' with the model's own merged in."""
        return spec_rules(dict(self.defaults), {k: dict(v) for k, v in self.own_rules.items()})

    @property
    def meanings(self) -> dict[str, str]:
        """What each population-level variable that is not an effect means."""
        return {**SHARED_PARAMETER_MEANINGS, **self.parameter_meanings}

    def population_parameters(self, model: pm.Model) -> list[str]:
        """Population-level parameters of a built model: :attr:`summary_vars` present.

        Without ``summary_vars``, every free random variable with at most one dimension.
        """
        present = {v.name for v in model.free_RVs + model.deterministics}
        if self.summary_vars:
            return [v for v in self.summary_vars if v in present]
        return [v.name for v in model.free_RVs if v.ndim <= 1]

    def present_summary_vars(self, dataset: xr.Dataset | xr.DataTree) -> list[str]:
        """:attr:`summary_vars` present in a posterior (or prior) group, in order."""
        present = list(dataset.data_vars)
        if not self.summary_vars:
            return present
        return [v for v in self.summary_vars if v in present]

    def group_benefit(self, posterior: xr.Dataset | xr.DataTree) -> dict[str, xr.DataArray]:
        """Rituximab's effect by early-sural status (:meth:`Headline.group_benefit`)."""
        return self.headline.group_benefit(posterior)

    def describe_outcome(self, result: FitResult) -> str:
        """The outcome in words (:attr:`outcome_words`, else its variable name)."""
        return self.outcome_words(result) if self.outcome_words else self.outcome_var

    def describe_units(self, result: FitResult, units: list[str]) -> str:
        """The units of the effects (:attr:`effect_units`, else the effects' own)."""
        if self.effect_units:
            return self.effect_units(result)
        return "Units: " + "; ".join(units)

    def describe_methods(self, result: FitResult) -> str:
        """What was modelled, in one sentence (:attr:`methods_sentence`, else generic)."""
        if self.methods_sentence:
            return self.methods_sentence(result)
        return f"The data were analysed with the {self.name} model of magbayes."

    @property
    def report_title(self) -> str:
        """What the report's title calls the model."""
        return self.title or self.name
