"""The small fits that several test modules share, and the summary of a fit's posterior.

``conftest.py`` makes each fit once per test session (its fixtures) and
``data/make_posterior_reference.py`` makes the same fits to store their summaries, so the
cohorts and sampler settings are written here once.

A fit compiles its model the first time a model of its structure is sampled (numba, one to
two minutes; later fits of that structure load it from the compile cache). The models hold
their cohorts as data inputs, so any cohort with the same kinds of data (which covariates
have missing values, whether some early-sural statuses are unknown) shares one compiled
model, and so does an SBC run of it; the spec's prior values are constants, so a
prior-sensitivity refit compiles its own. The fixtures therefore fit each default model
once, on one cohort, and the tests that need a fit but do not test its structure read
these fits.
"""

from __future__ import annotations

from pathlib import Path

import arviz as az
import pandas as pd
import xarray as xr

import magbayes as mb
from magbayes import FitResult
from magbayes.cohort.tables import Cohort
from magbayes.simulate import SimulatedCohort

#: Sampler settings of the shared progression fit (2 x 100 draws: it fails the ESS gate).
PROGRESSION_RUN = {"draws": 100, "tune": 100, "chains": 2, "seed": 5}
#: Sampler settings of the shared response fit (and of its prior-sensitivity refits).
RESPONSE_RUN = {"draws": 200, "tune": 200, "chains": 2, "seed": 4}
#: Sampler settings of the shared worsening fit.
WORSENING_RUN = {"draws": 300, "tune": 300, "chains": 2, "seed": 1}
#: Sampler settings of the shared joint fit.
JOINT_RUN = {"draws": 300, "tune": 400, "chains": 2, "seed": 3}

#: The command line recorded in the shared progression fit's manifest and report.
PROGRESSION_COMMAND = "magbayes fit progression --data COHORT --out RESULTS --seed 5"

#: The headline probability of every model's ``headline.json``.
HEADLINE = "p_sural_predicts_rituximab_benefit"


def write_progression_cohort(folder: Path, seed: int = 7) -> Cohort:
    """25 simulated patients at two sites, written to ``folder`` and read back (so the
    cohort has a SHA-256 and a source folder)."""
    mb.simulate_cohort(n_patients=25, seed=seed).write(folder, overwrite=True)
    return mb.load_cohort(folder)


def fit_progression(cohort: Cohort, **kwargs) -> FitResult:
    """The default progression spec with :data:`PROGRESSION_RUN` (keywords of ``mb.fit``
    override it)."""
    return mb.fit(cohort, "progression", **{**PROGRESSION_RUN, **kwargs})


def shared_progression_fit(cohort: Cohort) -> FitResult:
    """The shared progression fit: 100 prior draws, the command line recorded."""
    return fit_progression(
        cohort, overrides={"sampler": {"prior_draws": 100}}, command=PROGRESSION_COMMAND
    )


def response_cohort() -> SimulatedCohort:
    """47 simulated patients (the seed study's size) at two sites, default effects."""
    return mb.simulate_cohort(n_patients=47, n_sites=2, seed=2020)


def shared_response_fit(cohort: Cohort) -> FitResult:
    """The default response spec with :data:`RESPONSE_RUN`."""
    return mb.fit(cohort, "response", **RESPONSE_RUN)


def worsening_cohort() -> SimulatedCohort:
    """47 simulated patients at two sites, worsening from the proportional-hazards truth."""
    return mb.simulate_cohort(n_patients=47, n_sites=2, seed=4)


def fit_worsening(cohort: Cohort, **overrides) -> FitResult:
    """The worsening spec with :data:`WORSENING_RUN`, no prior draws; ``overrides`` are
    spec values (e.g. another baseline hazard)."""
    return mb.fit(cohort, "worsening", **WORSENING_RUN, overrides=overrides, prior_predictive=False)


def joint_sim() -> SimulatedCohort:
    """90 simulated patients with their end of follow-up: strongly informative death
    (``death_alpha`` 0.8), INCAT exactly the score model's (``worsening_from="scores"``),
    and a clear benefit of rituximab on the rate (``gamma_rituximab`` -0.4 per year), so
    that strategies differ in their probability of death."""
    return mb.simulate_cohort(
        n_patients=90,
        seed=31,
        end_of_follow_up=True,
        death_alpha=0.8,
        worsening_from="scores",
        gamma_rituximab=-0.4,
    )


def write_joint_cohort(sim: SimulatedCohort, folder: Path) -> Cohort:
    """``sim`` written to ``folder`` and read back (so the cohort has a SHA-256)."""
    sim.write(folder, overwrite=True)
    return mb.load_cohort(folder)


def fit_joint(cohort: Cohort) -> FitResult:
    """The default joint spec with :data:`JOINT_RUN`, no prior draws."""
    return mb.fit(cohort, "joint", **JOINT_RUN, progress=False, prior_predictive=False)


def posterior_summary(posterior: xr.DataTree, names: list[str]) -> pd.DataFrame:
    """Mean, sd and their Monte Carlo standard errors of each element of ``names``.

    Parameters
    ----------
    posterior : xarray.DataTree
        A fit's draws (its ``posterior`` group is read).
    names : list of str
        Variables of the posterior.

    Returns
    -------
    pandas.DataFrame
        Indexed by ArviZ's element labels (``gamma_treatment[ivig]``); columns ``mean``,
        ``sd``, ``mcse_mean``, ``mcse_sd`` (NaN for an element fixed at one value).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant elements: no MCSE
        table = az.summary(posterior, var_names=names, kind="all", round_to="none")
    return table[["mean", "sd", "mcse_mean", "mcse_sd"]].apply(pd.to_numeric, errors="coerce")


def true_timing_contrast(sim: SimulatedCohort, cohort: Cohort) -> dict[tuple[str, str], float]:
    """The true prompt-minus-delayed contrast at 10 years, by (early-sural group, measure).

    Every patient of ``cohort`` replayed under the default ``prompt`` and ``delayed``
    strategies with their true parameters (:func:`magbayes.simulate.replay.true_contrast`),
    averaged over the patients of each true group; measures as in a fit's ``timing`` group
    (``expected_score``, ``p_disabled``: INCAT at or above 4).
    """
    import json

    from magbayes.predict import DEFAULT_STRATEGIES, apply_to_cohort
    from magbayes.simulate.replay import true_contrast

    courses = {}
    for strategy in (s for s in DEFAULT_STRATEGIES if s.name in ("prompt", "delayed")):
        treatments = apply_to_cohort(strategy, cohort).treatments
        courses[strategy.name] = {
            pid: treatments[treatments["patient_id"] == pid] for pid in cohort.patients.index
        }
    truth = json.loads(sim.files()["truth.json"])
    table = true_contrast(truth, cohort, courses, years=10.0, threshold=4).set_index(
        ["group", "strategy"]
    )
    out = {}
    for group in ("sural_reduced", "sural_preserved"):
        for measure, column in (("expected_score", "expected"), ("p_disabled", "p_at_or_above")):
            prompt, delayed = (
                table.loc[(group, "prompt"), column],
                table.loc[(group, "delayed"), column],
            )
            out[(group, measure)] = float(prompt - delayed)
    return out
