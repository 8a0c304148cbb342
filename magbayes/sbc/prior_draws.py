"""One SBC problem: a model compiled once, then, per fit, a prior draw and a refit.

The generative code is the model's own PyMC graph, never a second copy of it:

1. the model is built on a design (:class:`ModelStructure`: a simulated or real cohort's
   patients, visits, treatment courses, covariates and early-sural statuses);
2. every observed variable's data is swapped for a shared variable with
   :func:`pymc.observe` (:func:`observed_as_shared`), so that the log-density is
   compiled once (:func:`magbayes.compile_cache.compile_for_nutpie`, which also keeps it
   for later runs and other workers) and each fit only replaces the data
   (``with_data``);
3. per fit, one joint draw of the parameters and of every observed variable is taken
   from the prior predictive distribution (PyMC's forward-sampling function, compiled
   once and reseeded per fit), and the drawn outcomes become the observed data of the
   refit.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pymc.pytensorf import reseed_rngs
from pymc.sampling.forward import compile_forward_sampling_function
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.tensor.random.type import RandomGeneratorType

from magbayes.models.base import ModelDefinition
from magbayes.observed_inputs import observed_as_shared
from magbayes.over_draws import vectorised_mode
from magbayes.spec import Spec


@dataclass(frozen=True)
class ParameterElement:
    """One scalar ranked by SBC: a variable, or one labelled element of it.

    Attributes
    ----------
    label : str
        ``slope``, ``gamma_treatment[ivig]``, ``cutpoints[0|1]``.
    variable : str
        Model variable name.
    index : tuple of int
        Position in the variable's array (empty for a scalar).
    """

    label: str
    variable: str
    index: tuple[int, ...] = ()


@dataclass
class PriorDraw:
    """A joint prior draw: true parameter values and the data simulated from them.

    Attributes
    ----------
    truth : dict[str, float]
        Parameter label -> true value (model units).
    data : dict[str, numpy.ndarray]
        Observed variable name -> simulated data, in the model's layout (and, from a
        model's completion, ``pm.Data`` name -> value).
    warnings : list of str
        Drawn values outside the support the fitted model imposes (see
        :func:`ordered_violations`).
    """

    truth: dict[str, float]
    data: dict[str, np.ndarray]
    warnings: list[str] = field(default_factory=list)


def unused_observations(model: pm.Model, shared_names: dict[str, str]) -> list[str]:
    """Observed variables whose data the model's log-density does not actually read.

    The log-density graph is simplified (PyTensor's canonicalize / stabilize / specialize
    rewrites, as before compilation) so that a value used only for its shape
    (``logp = constant_log_likelihood + zeros_like(value)``) counts as unused.
    """
    from pytensor.graph.rewriting.utils import rewrite_graph
    from pytensor.graph.traversal import ancestors

    logp = rewrite_graph(model.logp(), include=("canonicalize", "stabilize", "specialize"))
    used = {v.name for v in ancestors([logp]) if isinstance(v, SharedVariable)}
    return [obs for obs, shared in shared_names.items() if shared not in used]


def ordered_variables(model: pm.Model) -> list[str]:
    """Free variables with PyMC's ``ordered`` transform."""
    from pymc.distributions.transforms import Ordered

    return [rv.name for rv, tr in model.rvs_to_transforms.items() if isinstance(tr, Ordered)]


def ordered_violations(values: dict[str, np.ndarray]) -> list[str]:
    """Names of drawn variables that should be increasing (``ordered``) but are not.

    PyMC's forward sampling (prior and prior predictive draws) ignores value transforms:
    ``pm.Normal(..., transform=ordered)`` is drawn from the unrestricted normal, while the
    fitted model's prior is restricted to increasing values. Data generated from such a
    draw do not come from the model that is fitted, and SBC ranks of the model are then
    expected to be non-uniform.
    """
    return [
        name
        for name, value in values.items()
        if np.asarray(value).shape[-1:] and not np.all(np.diff(np.asarray(value), axis=-1) > 0)
    ]


def parameter_elements(model: pm.Model, names: list[str]) -> list[ParameterElement]:
    """Every scalar of the named variables, labelled with the model's coordinates.

    Parameters
    ----------
    model : pymc.Model
        The model (its ``dims`` and ``coords`` give the labels).
    names : list of str
        Free random variables or deterministics.

    Returns
    -------
    list of ParameterElement
    """
    dims = model.named_vars_to_dims
    elements = []
    for name in names:
        var_dims = dims.get(name)
        if var_dims and all(d in model.coords and model.coords[d] is not None for d in var_dims):
            labels = [list(model.coords[d]) for d in var_dims]
            shape = tuple(len(lab) for lab in labels)
        else:
            shape = tuple(int(s) for s in model[name].shape.eval(mode=vectorised_mode()))
            labels = [list(range(n)) for n in shape]
        for index in np.ndindex(*shape):
            if not index:
                label = name
            else:
                label = f"{name}[{', '.join(str(labels[k][i]) for k, i in enumerate(index))}]"
            elements.append(ParameterElement(label, name, tuple(int(i) for i in index)))
    return elements


def default_parameters(model: pm.Model, definition: ModelDefinition | None = None) -> list[str]:
    """Population-level parameters to rank.

    The definition's (:meth:`~magbayes.models.base.ModelDefinition.population_parameters`);
    without one, every free random variable with at most one dimension.
    """
    if definition is not None:
        return definition.population_parameters(model)
    return [v.name for v in model.free_RVs if v.ndim <= 1]


class SBCProblem:
    """A model prepared for many SBC fits: compile once, draw and refit per fit.

    Parameters
    ----------
    model : pymc.Model
        The model that is fitted (built on the design; its observed data are placeholders).
    parameters : list of str, optional
        Variables whose true values are ranked (default :func:`default_parameters`).
    generator : pymc.Model, optional
        Model the prior draws come from (default ``model``). It must have the same observed
        and parameter variable names; a different generator (a shifted prior, say) makes a
        deliberately mis-specified check.
    name : str
        Model name, for messages.
    counts : dict, optional
        The design's counts (patients, visits, ...), recorded with the run.
    sampler_options : dict, optional
        nutpie options of the spec (``extra_doublings``), so that SBC samples the way a
        fit of that spec does (:func:`magbayes.sampler.nutpie_options`).
    completion : object, optional
        The model definition's ``sbc_completion`` for this design: further data of each
        draw that are not values of observed variables (the joint model's event times);
        it then needs a ``generator`` of its own (its data are changed for the draws).

    Notes
    -----
    The compiled objects are built on first use and kept, so a Dask worker that runs many
    fits of one problem compiles it once.
    """

    def __init__(
        self,
        model: pm.Model,
        *,
        parameters: list[str] | None = None,
        generator: pm.Model | None = None,
        name: str = "",
        counts: dict[str, Any] | None = None,
        sampler_options: dict[str, Any] | None = None,
        completion: Any = None,
    ) -> None:
        if completion is not None and (generator is None or generator is model):
            raise ValueError("a completion changes its generator's data: give a generator")
        self.completion = completion
        self.name = name
        self.counts = dict(counts or {})
        self.sampler_options = dict(sampler_options or {})
        self.fit_model, self.shared_names = observed_as_shared(model)
        self.generator = generator if generator is not None else model
        self.parameters = list(parameters) if parameters else default_parameters(model)
        missing = [p for p in self.parameters if p not in self.fit_model.named_vars]
        if missing:
            raise ValueError(f"parameters not in the model: {', '.join(missing)}")
        self.elements = parameter_elements(self.fit_model, self.parameters)
        self.observed_names = list(self.shared_names)
        unused = unused_observations(self.fit_model, self.shared_names)
        if unused:
            raise ValueError(
                f"model {name or ''!r}: the log-density does not read the observed value of "
                f"{', '.join(unused)} (its likelihood takes its outcomes from constants), so "
                "data drawn from the prior cannot be fitted; SBC needs every outcome to be "
                "the value of an observed variable"
            )
        self.ordered = ordered_variables(self.fit_model)
        self._forward = None
        self._forward_rngs: list[SharedVariable] = []
        self._compiled = None
        self._refit_names: set[str] | None = None

    @property
    def labels(self) -> list[str]:
        """Labels of the ranked scalars, in order."""
        return [e.label for e in self.elements]

    # ------------------------------------------------------------------ prior draws
    def _forward_function(self):
        if self._forward is None:
            names = self.parameters + self.observed_names + self._extra_ordered()
            outputs = [self.generator[name] for name in names]
            if self.completion is not None:
                self.completion.prepare(self.generator)
                outputs += self.completion.outputs(self.generator)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*object mode.*")
                fn, _ = compile_forward_sampling_function(
                    outputs,
                    vars_in_trace=[],
                    basic_rvs=self.generator.basic_RVs,
                    random_seed=0,
                    model=self.generator,
                    allow_input_downcast=True,
                    accept_inplace=True,
                    mode=vectorised_mode(),  # NumPy, nothing compiled (magbayes.over_draws)
                )
            self._forward = fn
            self._forward_rngs = [
                v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)
            ]
        return self._forward

    def _extra_ordered(self) -> list[str]:
        return [
            v for v in self.ordered if v not in self.parameters and v in self.generator.named_vars
        ]

    def draw(self, seed: int) -> PriorDraw:
        """One joint draw of parameters and data from the prior predictive distribution.

        Parameters
        ----------
        seed : int
            Seed of this draw (the same seed gives the same draw).

        Returns
        -------
        PriorDraw
        """
        fn = self._forward_function()
        reseed_rngs(self._forward_rngs, seed)
        values = fn()
        n_par, n_obs = len(self.parameters), len(self.observed_names)
        by_name = dict(zip(self.parameters, values[:n_par], strict=True))
        truth = {e.label: float(np.asarray(by_name[e.variable])[e.index]) for e in self.elements}
        data = {
            name: np.asarray(v)
            for name, v in zip(self.observed_names, values[n_par : n_par + n_obs], strict=True)
        }
        n_ordered = len(self._extra_ordered())
        extra = values[n_par + n_obs : n_par + n_obs + n_ordered]
        by_name.update(zip(self._extra_ordered(), extra, strict=True))
        if self.completion is not None:
            rng = np.random.default_rng([seed, 1])
            completed = self.completion.complete(
                list(values[n_par + n_obs + n_ordered :]), data, rng
            )
            data.update({k: v for k, v in completed.items() if k in self._refit_data_names()})
        violated = ordered_violations({v: by_name[v] for v in self.ordered if v in by_name})
        notes = [f"prior draw of {v} is not increasing (ordered transform)" for v in violated]
        return PriorDraw(truth=truth, data=data, warnings=notes)

    def _refit_data_names(self) -> set[str]:
        """Observed variables, and the model data the fitted model's log density reads.

        A completion's other data (such as an output's length) do not enter the refit.
        """
        from magbayes.compile_cache import data_inputs

        if self._refit_names is None:
            self._refit_names = set(self.observed_names) | {
                v.name for v in data_inputs(self.fit_model)
            }
        return self._refit_names

    # ------------------------------------------------------------------ refits
    def compiled(self):
        """The compiled log-density of the fitted model for nutpie (built once).

        Through :func:`magbayes.compile_cache.compile_for_nutpie`: every worker, and every
        later SBC run of the same model, loads what the first one compiled.
        """
        if self._compiled is None:
            from magbayes.compile_cache import compile_for_nutpie

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*object mode.*")
                self._compiled, _ = compile_for_nutpie(self.fit_model)
        return self._compiled

    def posterior(
        self,
        data: dict[str, np.ndarray],
        *,
        seed: int,
        draws: int,
        tune: int,
        chains: int,
        target_accept: float = 0.9,
        cores: int = 1,
    ) -> xr.DataTree:
        """Fit the compiled model to new data with nutpie.

        Parameters
        ----------
        data : dict[str, numpy.ndarray]
            Observed variable name -> data (as :meth:`draw` returns).
        seed : int
            Sampler seed.
        draws, tune, chains : int
            Posterior draws and tuning steps per chain, number of chains.
        target_accept : float
            NUTS target acceptance rate.
        cores : int
            Chains run in parallel (1 on a Dask worker: one fit per core).

        Returns
        -------
        xarray.DataTree
            nutpie's result (groups ``posterior``, ``sample_stats``, ...), every traced
            value included (:func:`magbayes.compile_cache.sample_compiled`).
        """
        from magbayes.compile_cache import sample_compiled

        # observed variables' data by their shared names; other model data (a
        # completion's) by their own
        compiled = self.compiled().with_data(
            **{self.shared_names.get(name, name): values for name, values in data.items()}
        )
        return sample_compiled(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            target_accept=target_accept,
            progress_bar=False,
            save_warmup=False,
            **self.sampler_options,
        )


@dataclass(frozen=True)
class ModelStructure:
    """What SBC fixes across its fits: the model spec and the cohort's design.

    The cohort gives the structure only (patients, sites, visit times, treatment courses,
    covariates with their missing values, early-sural statuses); parameters and outcomes
    are redrawn from the model's prior for every fit. It is small and picklable, so Dask
    sends it to the workers, and each worker builds and compiles the problem once
    (:meth:`build`, cached by :meth:`key`).

    Attributes
    ----------
    spec : Spec
        Resolved model spec (see :func:`magbayes.fit.resolve_spec`).
    n_patients, n_sites : int
        Size of the simulated cohort (ignored with ``data``).
    cohort_seed : int
        Seed of the simulated cohort's structure.
    data : str, optional
        A cohort folder or workbook whose design is used instead of a simulated one.
    data_format : tuple of (str, str)
        How its files are written, as stated on the command line: ``(key, value)`` pairs
        of :func:`magbayes.load_cohort`'s ``date_format``, ``sep`` and ``decimal``
        (the others as its ``cohort.toml`` says, or the defaults).
    parameters : tuple of str, optional
        Variables to rank (default: the model's ``SUMMARY_VARS``).
    """

    spec: Spec
    n_patients: int = 47
    n_sites: int = 2
    cohort_seed: int = 1
    data: str | None = None
    data_format: tuple[tuple[str, str], ...] = ()
    parameters: tuple[str, ...] | None = None

    @property
    def model(self) -> str:
        """Model name."""
        return self.spec.model

    def describe(self) -> dict[str, Any]:
        """Plain description (stored in ``sbc.json``; the basis of :meth:`key`)."""
        return {
            "model": self.model,
            "spec": self.spec.data,
            "cohort": (
                {"data": self.data}
                | ({"format": dict(self.data_format)} if self.data_format else {})
                if self.data
                else {
                    "simulated": True,
                    "n_patients": self.n_patients,
                    "n_sites": self.n_sites,
                    "cohort_seed": self.cohort_seed,
                }
            ),
            "parameters": list(self.parameters) if self.parameters else None,
        }

    def key(self) -> str:
        """Identity of the compiled problem (same key, same graph)."""
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def cohort(self):
        """The cohort whose design is used."""
        if self.data:
            from magbayes.cohort.read import load_cohort

            return load_cohort(self.data, **dict(self.data_format))
        from magbayes.models import get_model
        from magbayes.simulate import simulate_cohort

        return simulate_cohort(
            n_patients=self.n_patients,
            n_sites=self.n_sites,
            seed=self.cohort_seed,
            **get_model(self.model).simulation_options,
        ).cohort

    def build(self) -> SBCProblem:
        """Build the design and the model (nothing is compiled yet)."""
        from magbayes.fit import prepare
        from magbayes.models import get_model
        from magbayes.sampler import nutpie_options

        cohort, design, model = prepare(self.cohort(), self.spec)
        definition = get_model(self.model)
        parameters = list(self.parameters) if self.parameters else None
        completion = generator = None
        if definition.sbc_completion is not None:
            completion = definition.sbc_completion(cohort, design, self.spec)
            generator = definition.build_model(design, self.spec)
        return SBCProblem(
            model,
            parameters=parameters or default_parameters(model, definition),
            generator=generator,
            name=self.model,
            counts=design.counts,
            sampler_options=nutpie_options(self.spec.section("sampler")),
            completion=completion,
        )
