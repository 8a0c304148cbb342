r"""Worsening model: time to confirmed worsening of a disability score.

The event is *confirmed worsening*: the score at least ``change`` points worse than the
patient's baseline, confirmed at the next visit (CLINICAL.md). It is only seen at visits,
so it happened between the last visit without it (:math:`L`) and the first visit that
shows it (:math:`R`): the likelihood is interval-censored. For patient :math:`i` at site
:math:`s(i)`, at :math:`t` years since onset,

.. math::

    h_i(t) = h_0(t)\,\exp\Big(u_{s(i)} + x_i^\top\beta_{\mathrm{cov}}
        + \beta_{\mathrm{sural}}\,\mathrm{sural}_i
        + \sum_{k} n_{ik}(t)\,\beta_{k}
        + n_{i,\mathrm{rtx}}(t)\,(\beta_{\mathrm{rtx}}
        + \beta_{\mathrm{rtx}\times\mathrm{sural}}\,\mathrm{sural}_i)\Big)

with :math:`h_0` piecewise constant on a grid (or Weibull), :math:`n_{ik}(t)` the number of
courses of treatment :math:`k` started by :math:`t` (or 0/1: ever started), :math:`u_s` a
log-normal site frailty (partial pooling) and missing covariates imputed in the model.
The patient is at risk from the baseline visit (delayed entry). Per patient, with
:math:`H_i(a, b) = \int_a^b h_i`:

- worsening in :math:`(L, R]`: :math:`\log(S(L) - S(R)) = -H(e, L)
  + \log(1 - e^{-H(L, R)})` (``log1mexp``);
- no worsening by the end of follow-up :math:`C`: :math:`-H(e, C)`,

with :math:`e` the baseline visit. The observed value of ``worsening`` is the outcome as
an index over the visits checked for worsening, :math:`e = t_0 < t_1 < \dots < t_J = C`:
:math:`j` when the worsening happened in :math:`(t_{j-1}, t_j]` (:math:`L = t_{j-1}`,
:math:`R = t_j`), 0 when none was seen by :math:`C`. The visit times are design; the
likelihood reads the index, so predictive draws and SBC refits use the same outcome.
A patient whose early-sural status is unknown contributes the mixture over both
statuses, weighted by the estimated prevalence. The
rituximab log hazard ratio is :math:`\beta_{\mathrm{rtx}} +
\beta_{\mathrm{rtx}\times\mathrm{sural}}\,\mathrm{sural}_i`; a negative value means fewer
worsenings, so the headline is :math:`P(\beta_{\mathrm{rtx}\times\mathrm{sural}} < 0)`.

The likelihood is that of the survival core :mod:`magbayes.models.survival`
(:func:`~magbayes.models.survival.data.visit_interval_arrays`,
:func:`~magbayes.models.survival.likelihood.interval_hazards`,
:func:`~magbayes.models.survival.likelihood.visit_interval_log_likelihood`,
:func:`~magbayes.models.survival.likelihood.draw_visit_interval`), the one that
``tests/test_survival_core.py`` checks against lifelines on real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from magbayes.cohort.tables import SCORES, TREATMENTS, Cohort
from magbayes.errors import SpecError
from magbayes.models import blocks, survival
from magbayes.models.base import (
    BASELINE_COVARIATES,
    MODELLED_TREATMENTS,
    Design,
    Headline,
    prior_names,
    shared_defaults,
    spec_rules,
)
from magbayes.spec import Spec
from magbayes.spec_schema import (
    at_least_zero,
    increasing_from_zero,
    list_of,
    number,
    one_of,
    positive,
)

NAME = "worsening"

DEFAULTS: dict[str, Any] = shared_defaults(
    {
        "outcome": {
            "score": "incat",
            "change": 1,
            "baseline": "first",
            "confirmation": "next_visit",
            "follow_up_ends": "last_confirmable_visit",
            "event_time": "interval",
        },
        "baseline_hazard": {"kind": "piecewise", "grid_years": [0.0, 2.0, 4.0, 6.0, 8.0, 12.0]},
        "covariates": {"baseline": BASELINE_COVARIATES},
        "treatments": {
            "modelled": MODELLED_TREATMENTS,
            "exposure": "courses_started",
        },
        "sites": {"pooling": "partial", "parametrisation": "auto"},
        "priors": {
            "baseline_log_hazard_mean": -2.3,
            "baseline_log_hazard_sd": 1.5,
            "weibull_shape_sd": 0.5,
            "weibull_log_scale_mean": 2.3,
            "weibull_log_scale_sd": 1.5,
            "frailty_sd": 0.5,
            "treatment_sd": 1.0,
            "rituximab_sd": 1.0,
            "interaction_sd": 1.0,
            "sural_sd": 1.0,
            "covariate_sd": 1.0,
        },
        "figures": {"rituximab_start_years": 3.0, "horizon_years": 12.0},
    }
)

#: What each key of a spec accepts beyond the type of its default (the shared tables'
#: rules come from :func:`magbayes.models.base.spec_rules`). Prior means are any number;
#: every other prior is a positive scale.
SPEC_RULES = spec_rules(
    DEFAULTS,
    {
        "outcome": {
            "score": one_of(*SCORES),
            "change": positive(),
            "baseline": one_of("first", "best_so_far"),
            "confirmation": one_of("next_visit", "none"),
            "follow_up_ends": one_of("last_confirmable_visit", "last_visit"),
            "event_time": one_of("interval", "detecting_visit"),
        },
        "baseline_hazard": {
            "kind": one_of("piecewise", "weibull"),
            "grid_years": increasing_from_zero(),
        },
        "treatments": {
            "modelled": list_of(one_of(*TREATMENTS), non_empty=False),
            "exposure": one_of("courses_started", "ever"),
        },
        "sites": {
            "pooling": one_of(*blocks.SITE_POOLING),
            "parametrisation": one_of(*blocks.SITE_PARAMETRISATIONS),
        },
        "priors": {
            key: number() if key.endswith("_mean") else positive() for key in prior_names(DEFAULTS)
        },
        "figures": {"rituximab_start_years": at_least_zero(), "horizon_years": positive()},
    },
)

HEADLINE = Headline(
    question=(
        "Does early sural reduction predict a larger reduction in the hazard of confirmed "
        "worsening after rituximab?"
    ),
    contrast_var="beta_rituximab_x_sural",
    main_var="beta_rituximab",
    benefit_sign=-1,
    scale=(
        "difference in log hazard ratio of confirmed worsening for rituximab, "
        "sural-reduced minus sural-preserved"
    ),
)

#: Variables whose posteriors the summary lists.
SUMMARY_VARS = [
    "beta_rituximab",
    "beta_rituximab_x_sural",
    "beta_sural_reduced",
    "beta_treatment",
    "beta_covariate",
    "baseline_log_hazard",
    "weibull_shape",
    "weibull_log_scale",
    "site_log_frailty",
    "site_log_frailty_sd",
    "site_log_frailty_vs_reference",
    "sural_reduced_prevalence",
]

#: ``[sites] parametrisation = "auto"`` samples the site frailties directly (centred) when
#: every site has at least this many confirmed worsenings: the data then pin each frailty
#: down far more tightly than its prior, where the non-centred form has a funnel. Measured
#: (seeded simulated cohorts; 2 chains x 500 draws unless said): 47 patients, ~10 per site:
#: centred 189 divergences (4 x 1000), non-centred none; 1,000 patients, 81-202 per site:
#: centred 2-9 divergences, non-centred none (lower ESS); 1,500 patients, 371-431 per site:
#: neither diverges, centred ESS 2,008 vs 365 for the sd; 5,000 patients, ~1,000 per site
#: (4 x 1000): non-centred 2 divergences and ESS 306, centred none and ESS 2,358.
CENTRED_MIN_WORSENINGS_PER_SITE: int = 300

#: Scores for which a *lower* value is worse (I-RODS centile: higher = less disability).
LOWER_IS_WORSE = {"irods"}


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class WorseningOutcome:
    """One patient's confirmed-worsening outcome, in years since onset.

    Attributes
    ----------
    entry_years : float
        Baseline visit: start of the time at risk.
    kind : str
        ``"interval"`` (worsening in ``(lower, upper]``), ``"right"`` (none by
        ``upper``) or ``"observed"`` (worsening dated at ``upper``, only with
        ``event_time = "detecting_visit"``).
    lower_years, upper_years : float
        Interval bounds (interval); both the censoring time (right); the detecting visit
        (observed).
    end_of_follow_up_years : float
        Last time a worsening could still have been seen and confirmed: the end of the
        time at risk if no worsening had happened (used for predictive checks).
    baseline_score : float
        The reference score of the first worsening checked (the baseline visit's score
        with the ``"first"`` rule).
    checked_visit_years : tuple of float
        The visits checked for worsening, ``t_0`` (baseline, = ``entry_years``) to
        ``t_J`` (= ``end_of_follow_up_years``): the design of the outcome.
    worsening_interval : int
        The outcome as an index: ``j`` (1..J) when the worsening was first seen at the
        ``j``-th checked visit after baseline, i.e. happened in ``(t_{j-1}, t_j]``; 0
        when no confirmed worsening was seen by ``t_J`` (right-censored).
    """

    entry_years: float
    kind: str
    lower_years: float
    upper_years: float
    end_of_follow_up_years: float
    baseline_score: float
    checked_visit_years: tuple[float, ...] = ()
    worsening_interval: int = 0


def confirmed_worsening(
    years: np.ndarray,
    values: np.ndarray,
    *,
    change: float = 1.0,
    lower_is_worse: bool = False,
    baseline: str = "first",
    confirmation: str = "next_visit",
    follow_up_ends: str = "last_confirmable_visit",
    event_time: str = "interval",
) -> WorseningOutcome | None:
    """Confirmed worsening of one patient from their scored visits.

    Parameters
    ----------
    years : numpy.ndarray
        Visit times (years since onset), increasing; only visits with the score.
    values : numpy.ndarray
        The score at those visits.
    change : float
        Points (score units) worse than the reference that count as worsening.
    lower_is_worse : bool
        True for I-RODS (a fall is a worsening).
    baseline : {"first", "best_so_far"}
        Reference score: the first visit's (fixed), or the best score at any earlier
        visit (a roving reference: worsening from the best state reached).
    confirmation : {"next_visit", "none"}
        ``next_visit``: the next scored visit must also be at least ``change`` worse than
        the same reference; ``none``: the first worse visit counts.
    follow_up_ends : {"last_confirmable_visit", "last_visit"}
        ``last_confirmable_visit`` (default): with confirmation, a worsening first seen at
        the last visit can never be confirmed, so every patient's time at risk ends at
        the last visit that could still be confirmed (the second-to-last one). An
        unconfirmed worsening at the last visit is thus censored at the previous visit,
        and so is a patient without worsening, which keeps censoring independent of the
        outcome. ``last_visit``: assume worsening persists; an unconfirmed worsening at
        the last visit counts as worsening between the last two visits, and patients
        without worsening are censored at the last visit.
    event_time : {"interval", "detecting_visit"}
        ``interval`` (correct): worsening happened in ``(previous visit, detecting
        visit]``. ``detecting_visit``: pretend it happened exactly at the detecting visit
        (the shortcut of many published analyses, kept to show its bias).

    Returns
    -------
    WorseningOutcome or None
        None when the patient has no time at risk (fewer than two scored visits, or
        three with confirmation and ``last_confirmable_visit``).
    """
    t = np.asarray(years, float)
    v = np.asarray(values, float)
    if baseline not in ("first", "best_so_far"):
        raise SpecError(f"[outcome] baseline must be 'first' or 'best_so_far', not {baseline!r}")
    if confirmation not in ("next_visit", "none"):
        raise SpecError(
            f"[outcome] confirmation must be 'next_visit' or 'none', not {confirmation!r}"
        )
    if follow_up_ends not in ("last_confirmable_visit", "last_visit"):
        raise SpecError(
            "[outcome] follow_up_ends must be 'last_confirmable_visit' or 'last_visit', "
            f"not {follow_up_ends!r}"
        )
    if event_time not in ("interval", "detecting_visit"):
        raise SpecError(
            f"[outcome] event_time must be 'interval' or 'detecting_visit', not {event_time!r}"
        )
    n = len(t)
    confirm = confirmation == "next_visit"
    last_checked = n - 2 if (confirm and follow_up_ends == "last_confirmable_visit") else n - 1
    if n < 2 or last_checked < 1:
        return None
    sign = -1.0 if lower_is_worse else 1.0
    worse_side = sign * v  # higher = worse
    if baseline == "first":
        reference = np.full(n, worse_side[0])
    else:
        reference = np.r_[worse_side[0], np.minimum.accumulate(worse_side)[:-1]]
    end = t[last_checked]
    checked = tuple(float(x) for x in t[: last_checked + 1])
    for j in range(1, last_checked + 1):
        if worse_side[j] - reference[j] < change:
            continue
        confirmed = (
            not confirm
            or (j + 1 < n and worse_side[j + 1] - reference[j] >= change)
            or (j == n - 1 and follow_up_ends == "last_visit")
        )
        if not confirmed:
            continue
        ref_score = sign * reference[j]
        if event_time == "detecting_visit":
            return WorseningOutcome(t[0], "observed", t[j], t[j], end, ref_score, checked, j)
        return WorseningOutcome(t[0], "interval", t[j - 1], t[j], end, ref_score, checked, j)
    return WorseningOutcome(
        t[0], "right", end, end, end, sign * reference[last_checked], checked, 0
    )


def worsening_outcomes(visits: pd.DataFrame, outcome: dict[str, Any]) -> pd.DataFrame:
    """Confirmed-worsening outcome of every patient with follow-up.

    Parameters
    ----------
    visits : pandas.DataFrame
        ``patient_id``, ``years_since_onset`` and the score column (visits without the
        score are skipped).
    outcome : dict
        The spec's ``[outcome]`` table.

    Returns
    -------
    pandas.DataFrame
        Indexed by patient id: ``entry_years``, ``kind``, ``lower_years``,
        ``upper_years``, ``end_of_follow_up_years``, ``baseline_score``,
        ``checked_visit_years`` (tuple), ``worsening_interval`` (0: none; ``j``: between
        the ``j-1``-th and ``j``-th checked visits after baseline), ``n_scored_visits``.
        Patients without time at risk are absent.
    """
    score = outcome.get("score", "incat")
    if score not in SCORES:
        raise SpecError(f"[outcome] score must be one of {', '.join(SCORES)}, not {score!r}")
    change = float(outcome.get("change", 1))
    if change <= 0:
        raise SpecError(f"[outcome] change must be positive, not {change}")
    scored = visits[visits[score].notna()].sort_values(
        ["patient_id", "years_since_onset"], kind="stable"
    )
    rows = {}
    for pid, g in scored.groupby("patient_id", sort=False):
        result = confirmed_worsening(
            g["years_since_onset"].to_numpy(float),
            g[score].to_numpy(float),
            change=change,
            lower_is_worse=score in LOWER_IS_WORSE,
            baseline=outcome.get("baseline", "first"),
            confirmation=outcome.get("confirmation", "next_visit"),
            follow_up_ends=outcome.get("follow_up_ends", "last_confirmable_visit"),
            event_time=outcome.get("event_time", "interval"),
        )
        if result is not None:
            rows[pid] = {**result.__dict__, "n_scored_visits": len(g)}
    columns = [*WorseningOutcome.__dataclass_fields__, "n_scored_visits"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def exposure_rows(
    outcomes: pd.DataFrame,
    treatments: pd.DataFrame,
    modelled: list[str],
    exposure: str = "courses_started",
) -> pd.DataFrame:
    """Follow-up of each patient cut at treatment-course starts (counting-process rows).

    Parameters
    ----------
    outcomes : pandas.DataFrame
        From :func:`worsening_outcomes` (entry and end of follow-up per patient).
    treatments : pandas.DataFrame
        ``patient_id``, ``treatment``, ``start_years``.
    modelled : list of str
        Non-rituximab treatments with their own effect (others are not modelled).
    exposure : {"courses_started", "ever"}
        Value of a treatment's exposure column: the number of its courses started so far
        (each course adds its log hazard ratio from its start), or 0/1 (started at least
        once).

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``start_years``, ``stop_years``, one column per modelled treatment
        and ``rituximab``, from the baseline visit to the end of follow-up.
    """
    if exposure not in ("courses_started", "ever"):
        raise SpecError(
            f"[treatments] exposure must be 'courses_started' or 'ever', not {exposure!r}"
        )
    names = [*modelled, "rituximab"]
    col = {name: k for k, name in enumerate(names)}
    courses = treatments[treatments["treatment"].isin(names)]
    by_patient = {
        pid: (g["start_years"].to_numpy(float), g["treatment"].map(col).to_numpy(int))
        for pid, g in courses.groupby("patient_id", sort=False)
    }
    ids, starts, stops, values = [], [], [], []
    empty = (np.zeros(0), np.zeros(0, int))
    for pid, entry, end in zip(
        outcomes.index, outcomes["entry_years"], outcomes["end_of_follow_up_years"], strict=True
    ):
        course_start, course_col = by_patient.get(pid, empty)
        inside = np.unique(course_start[(course_start > entry) & (course_start < end)])
        cuts = np.r_[entry, inside, end]
        counts = np.zeros((len(cuts) - 1, len(names)))
        for k in range(len(names)):
            s = np.sort(course_start[course_col == k])
            counts[:, k] = np.searchsorted(s, cuts[:-1], side="right")
        if exposure == "ever":
            counts = np.minimum(counts, 1.0)
        ids.extend([pid] * (len(cuts) - 1))
        starts.append(cuts[:-1])
        stops.append(cuts[1:])
        values.append(counts)
    frame = pd.DataFrame(
        {
            "patient_id": ids,
            "start_years": np.concatenate(starts) if starts else np.zeros(0),
            "stop_years": np.concatenate(stops) if stops else np.zeros(0),
        }
    )
    matrix = np.vstack(values) if values else np.zeros((0, len(names)))
    for k, name in enumerate(names):
        frame[name] = matrix[:, k]
    return frame


# ----------------------------------------------------------------------------- design


def _grid(spec: Spec) -> np.ndarray | None:
    section = spec.section("baseline_hazard")
    kind = section.get("kind", "piecewise")
    if kind not in ("piecewise", "weibull"):
        raise SpecError(f"[baseline_hazard] kind must be 'piecewise' or 'weibull', not {kind!r}")
    if kind == "weibull":
        return None
    grid = [float(g) for g in section.get("grid_years", DEFAULTS["baseline_hazard"]["grid_years"])]
    if any(b <= a for a, b in zip(grid, grid[1:], strict=False)) or grid[0] != 0.0:
        raise SpecError("[baseline_hazard] grid_years must start at 0 and increase")
    return survival.make_grid(grid)


def make_design(cohort: Cohort, spec: Spec) -> Design:
    """Arrays of the worsening model for one cohort and spec.

    Parameters
    ----------
    cohort : Cohort
        The cohort (its early-sural definition is set to the spec's here if it differs).
    spec : Spec
        Resolved worsening spec.

    Returns
    -------
    Design
        Per patient: outcome (kind, bounds, entry, end of follow-up; ``worsening_interval``,
        the observed value of the model), the visits checked for worsening
        (``checked_visit_years``, dims (patient, checked_visit), NaN after the last),
        baseline score, site, covariates (NaN where missing), early-sural status. Per
        follow-up row (``exposure_row``): start and stop (years since onset) and the
        treatment exposure on that row.
    """
    outcome = {**DEFAULTS["outcome"], **spec.section("outcome")}
    score = outcome["score"]
    sural = spec.section("early_sural")
    threshold = float(sural.get("threshold_uv", cohort.sural_threshold_uv))
    window = float(sural.get("window_years", cohort.sural_window_years))
    if (threshold, window) != (cohort.sural_threshold_uv, cohort.sural_window_years):
        cohort = cohort.with_sural_definition(threshold, window)
    missing_rule = sural.get("missing", "marginalise")
    if missing_rule not in ("marginalise", "exclude"):
        raise SpecError("[early_sural] missing must be 'marginalise' or 'exclude'")

    counts: dict[str, Any] = {"score": score, "patients in cohort": cohort.n_patients}
    outcomes = worsening_outcomes(cohort.visits, outcome)
    no_follow_up = [p for p in cohort.patient_ids if p not in outcomes.index]
    counts["patients left out: no time at risk (too few visits with the score)"] = len(no_follow_up)
    keep = pd.Series(cohort.patient_ids).isin(outcomes.index).to_numpy()
    if missing_rule == "exclude":
        unknown = cohort.patients["sural_reduced"].isna().to_numpy()
        counts["patients left out: early-sural status unknown"] = int((keep & unknown).sum())
        keep &= ~unknown
    patient_ids = [p for p, k in zip(cohort.patient_ids, keep, strict=True) if k]
    if not patient_ids:
        raise SpecError(f"no patient has time at risk for confirmed worsening on {score}")
    outcomes = outcomes.loc[patient_ids]

    tspec = spec.section("treatments")
    modelled = blocks.treatment_names(cohort, list(tspec.get("modelled", [])))
    rows = exposure_rows(
        outcomes, cohort.treatments, modelled, tspec.get("exposure", "courses_started")
    )
    n_courses = cohort.treatments["patient_id"].isin(patient_ids)
    counted = cohort.treatments["treatment"].isin([*modelled, "rituximab"])
    counts["treatment courses modelled"] = int((n_courses & counted).sum())
    counts["treatment courses not modelled (treatment not in spec)"] = int(
        (n_courses & ~counted).sum()
    )

    kind = outcomes["kind"].to_numpy()
    counts["patients"] = len(patient_ids)
    counts["confirmed worsening (interval-censored)"] = int((kind == "interval").sum())
    counts["confirmed worsening (dated at the detecting visit)"] = int((kind == "observed").sum())
    counts["no confirmed worsening (right-censored)"] = int((kind == "right").sum())
    counts["follow-up at risk (patient-years)"] = float(
        (outcomes["end_of_follow_up_years"] - outcomes["entry_years"]).sum()
    )

    covariates, left_out = blocks.usable_covariates(cohort, spec)
    cov_all, standardisation, binary = blocks.covariate_design(cohort, covariates)
    cov_values = cov_all[keep]
    missing_labels = blocks.missing_covariate_labels(cov_values, patient_ids, covariates)
    counts["covariate values imputed in the model"] = len(missing_labels)

    known_all, reduced_all = blocks.sural_status(cohort)
    known, reduced = known_all[keep], reduced_all[keep]
    counts["early sural reduced"] = int((known & (reduced == 1)).sum())
    counts["early sural preserved"] = int((known & (reduced == 0)).sum())
    counts["early sural unknown (marginalised in the model)"] = int((~known).sum())

    site_all, sites = blocks.site_index(cohort)
    site_idx = site_all[keep]
    used_sites = sorted(set(site_idx))
    remap = {old: new for new, old in enumerate(used_sites)}
    site_idx = np.array([remap[s] for s in site_idx], dtype=int)
    sites = [sites[s] for s in used_sites]

    grid = _grid(spec)
    pieces = survival.piece_labels(grid) if grid is not None else []
    pos = {pid: i for i, pid in enumerate(patient_ids)}
    checked = outcomes["checked_visit_years"].tolist()
    visit_years = np.full((len(patient_ids), max(len(t) for t in checked)), np.nan)
    for i, t in enumerate(checked):
        visit_years[i, : len(t)] = t
    event_code = {
        "right": survival.RIGHT,
        "observed": survival.OBSERVED,
        "interval": survival.INTERVAL,
    }
    coords = {
        "patient": patient_ids,
        "site": sites,
        "treatment": modelled,
        "covariate": covariates,
        "missing_covariate": missing_labels,
        "hazard_piece": pieces,
        "checked_visit": list(range(visit_years.shape[1])),
        "exposure_row": [
            f"{p}:{k}"
            for p, k in zip(rows["patient_id"], rows.groupby("patient_id").cumcount(), strict=True)
        ],
    }
    data = {
        "entry_years": outcomes["entry_years"].to_numpy(float),
        "event_type": np.array([event_code[k] for k in kind], dtype=int),
        "worsening_seen": (kind != "right").astype(int),
        "worsening_interval": outcomes["worsening_interval"].to_numpy(int),
        "checked_visit_years": visit_years,
        "lower_years": outcomes["lower_years"].to_numpy(float),
        "upper_years": outcomes["upper_years"].to_numpy(float),
        "end_of_follow_up_years": outcomes["end_of_follow_up_years"].to_numpy(float),
        "baseline_score": outcomes["baseline_score"].to_numpy(float),
        "row_patient": rows["patient_id"].map(pos).to_numpy(int),
        "row_start_years": rows["start_years"].to_numpy(float),
        "row_stop_years": rows["stop_years"].to_numpy(float),
        "row_treatment_exposure": rows[modelled].to_numpy(float).reshape(len(rows), -1),
        "row_rituximab_exposure": rows["rituximab"].to_numpy(float),
        "covariate_value": cov_values,
        "covariate_binary": np.asarray([binary[c] for c in covariates], dtype=bool),
        "site_of_patient": site_idx,
        "sural_known": known,
        "sural_reduced": reduced,
        "hazard_grid_years": grid if grid is not None else np.array([0.0, np.inf]),
    }
    dims = {
        "entry_years": ("patient",),
        "event_type": ("patient",),
        "worsening_seen": ("patient",),
        "worsening_interval": ("patient",),
        "checked_visit_years": ("patient", "checked_visit"),
        "lower_years": ("patient",),
        "upper_years": ("patient",),
        "end_of_follow_up_years": ("patient",),
        "baseline_score": ("patient",),
        "row_patient": ("exposure_row",),
        "row_start_years": ("exposure_row",),
        "row_stop_years": ("exposure_row",),
        "row_treatment_exposure": ("exposure_row", "treatment"),
        "row_rituximab_exposure": ("exposure_row",),
        "covariate_value": ("patient", "covariate"),
        "covariate_binary": ("covariate",),
        "site_of_patient": ("patient",),
        "sural_known": ("patient",),
        "sural_reduced": ("patient",),
    }
    left = [c.as_dict() for c in left_out]
    return Design(NAME, coords, data, dims, counts, standardisation, left)


def _follow_up_rows(design: Design) -> tuple[pd.DataFrame, list[str]]:
    """The design's follow-up rows as a table, with one exposure column per treatment."""
    d = design.data
    patients = np.asarray(design.coords["patient"])
    n_trt = len(design.coords["treatment"])
    frame = pd.DataFrame(
        {
            "patient_id": patients[d["row_patient"]],
            "start": d["row_start_years"],
            "stop": d["row_stop_years"],
        }
    )
    names = [f"exposure_{k}" for k in range(n_trt)] + ["exposure_rituximab"]
    for k in range(n_trt):
        frame[names[k]] = d["row_treatment_exposure"][:, k]
    frame["exposure_rituximab"] = d["row_rituximab_exposure"]
    return frame, names


def _same_order(subject_ids: list, design: Design) -> None:
    # the survival core keeps first-appearance order, which is the design's order
    if list(subject_ids) != list(design.coords["patient"]):
        raise RuntimeError("patient order changed while splitting follow-up rows")


def visit_interval_data(design: Design) -> survival.VisitIntervalData:
    """The design's follow-up split at checked visits, course starts and the hazard grid.

    What the likelihood uses: each patient's time at risk from the baseline visit to the
    end of follow-up, split into the visit intervals in which a worsening can be seen
    (:func:`~magbayes.models.survival.visit_interval_arrays`); the observed value is
    ``design.data["worsening_interval"]``.
    """
    d = design.data
    frame, names = _follow_up_rows(design)
    visits = {
        pid: row[np.isfinite(row)]
        for pid, row in zip(design.coords["patient"], d["checked_visit_years"], strict=True)
    }
    data = survival.visit_interval_arrays(
        frame,
        visits,
        id_col="patient_id",
        covariates=names,
        grid=d["hazard_grid_years"],
    )
    _same_order(data.subject_ids, design)
    return data


def counting_process_data(design: Design) -> survival.CountingProcessData:
    """The design's outcome as counting-process data (interval bounds as constants).

    The same outcome as :func:`visit_interval_data` in the layout of the generic core
    (:func:`~magbayes.models.survival.counting_process_arrays`, with each patient's
    ``lower`` / ``upper`` bounds), for comparisons with
    :func:`~magbayes.models.survival.subject_log_likelihood` and other software; the
    model itself reads the outcome from its observed value.
    """
    d = design.data
    frame, names = _follow_up_rows(design)
    per_patient = d["row_patient"]
    labels = {v: k for k, v in survival.EVENT_TYPES.items()}
    frame["event_type"] = [labels[int(c)] for c in d["event_type"][per_patient]]
    frame["lower"] = d["lower_years"][per_patient]
    frame["upper"] = d["upper_years"][per_patient]
    data = survival.counting_process_arrays(
        frame,
        id_col="patient_id",
        event_type_col="event_type",
        covariates=names,
        grid=d["hazard_grid_years"],
    )
    _same_order(data.subject_ids, design)
    return data


# ----------------------------------------------------------------------------- model


def _prior(spec: Spec, key: str) -> float:
    return blocks.prior_from_spec(spec.section("priors"), key, DEFAULTS["priors"][key])


def _baseline(spec: Spec, kind: str) -> survival.PiecewiseBaseline | survival.WeibullBaseline:
    """The baseline hazard of ``[baseline_hazard] kind`` with the spec's priors."""
    priors = {**DEFAULTS["priors"], **spec.section("priors")}
    return survival.baseline_from_priors(
        kind,
        log_hazard_mean=float(priors["baseline_log_hazard_mean"]),
        log_hazard_sd=_prior(spec, "baseline_log_hazard_sd"),
        shape_sd=_prior(spec, "weibull_shape_sd"),
        log_scale_mean=float(priors["weibull_log_scale_mean"]),
        log_scale_sd=_prior(spec, "weibull_log_scale_sd"),
    )


def _centred_frailty(design: Design, spec: Spec) -> bool:
    """Whether to sample the site frailties centred (``[sites] parametrisation``)."""
    choice = blocks.site_parametrisation(spec)
    if choice != "auto":
        return choice == "centred"
    d = design.data
    per_site = np.bincount(
        d["site_of_patient"], weights=d["worsening_seen"], minlength=len(design.coords["site"])
    )
    return bool(per_site.min() >= CENTRED_MIN_WORSENINGS_PER_SITE)


def _worsening_distribution(known: np.ndarray, reduced: np.ndarray, exact_at_visit: bool):
    """``logp``, ``random`` and ``signature`` of the observed ``worsening`` (a CustomDist).

    The parameters are the sural-reduced prevalence, then (patient, interval) arrays
    (:func:`~magbayes.models.survival.interval_hazards`): the interval hazards of every
    patient under their own early-sural status (as if reduced where it is unknown), and,
    only for the patients whose status is unknown, under "preserved"; with
    ``exact_at_visit`` (``event_time = "detecting_visit"``) the log hazards at the visits
    (:func:`~magbayes.models.survival.visit_log_hazard`) follow in the same order.
    """
    known = np.asarray(known, bool)
    unknown = np.nonzero(~known)[0]
    n_unknown = len(unknown)

    def split(arrays):
        arrays = list(arrays)
        hazard, hazard_p = arrays.pop(0), (arrays.pop(0) if n_unknown else None)
        log_h = log_h_p = None
        if exact_at_visit:
            log_h, log_h_p = arrays.pop(0), (arrays.pop(0) if n_unknown else None)
        return hazard, hazard_p, log_h, log_h_p

    def logp(value, prevalence, *arrays):
        hazard, hazard_p, log_h, log_h_p = split(arrays)
        ll_status = survival.visit_interval_log_likelihood(value, hazard, log_h)
        ll_p = ll_status
        if n_unknown:
            ll_unknown_p = survival.visit_interval_log_likelihood(value[unknown], hazard_p, log_h_p)
            ll_p = pt.set_subtensor(ll_status[unknown], ll_unknown_p)
        return blocks.mix_over_sural(ll_status, ll_p, known, reduced, prevalence)

    def random(prevalence, *arrays, rng=None, size=None):
        hazard, hazard_p, _, _ = split(arrays)
        hazard = np.array(hazard, dtype=float)
        if n_unknown:
            as_reduced = rng.random(n_unknown) < np.asarray(prevalence)
            hazard[unknown] = np.where(as_reduced[:, None], hazard[unknown], hazard_p)
        return survival.draw_visit_interval(hazard, rng)

    per_status = ["(p,k)"] + (["(u,k)"] if n_unknown else [])
    inputs = ["()"] + per_status * (2 if exact_at_visit else 1)
    return logp, random, ",".join(inputs) + "->(p)"


def build_model(design: Design, spec: Spec) -> pm.Model:
    """The PyMC worsening model for a design.

    Parameters
    ----------
    design : Design
        From :func:`make_design`.
    spec : Spec
        Resolved worsening spec (baseline hazard, priors, site pooling).

    Returns
    -------
    pymc.Model
        Observed ``worsening`` (dims ``patient``): the visit interval in which a confirmed
        worsening was first seen (``j``: between the ``j-1``-th and ``j``-th checked
        visits after baseline; 0: none by the end of follow-up). Its log density is each
        patient's interval-/right-censored log-likelihood, read from that value, so
        PSIS-LOO leaves out one patient at a time and SBC can refit drawn outcomes; its
        ``random`` draws the same outcome from the model.
    """
    kind = spec.section("baseline_hazard").get("kind", "piecewise")
    d = design.data
    data = visit_interval_data(design)
    exact_at_visit = (
        spec.section("outcome").get("event_time", DEFAULTS["outcome"]["event_time"])
        == "detecting_visit"
    )
    internal = {"exposure_row", "checked_visit"}
    coords = {k: v for k, v in design.coords.items() if len(v) and k not in internal}
    n_trt = len(design.coords["treatment"])

    with pm.Model(coords=coords) as model:
        base = _baseline(spec, kind)
        patient_eta = blocks.site_effect(
            "site_log_frailty",
            d["site_of_patient"],
            pooling=spec.section("sites").get("pooling", "partial"),
            scale=_prior(spec, "frailty_sd"),
            centred=_centred_frailty(design, spec),
        )
        if len(design.coords["covariate"]):
            x = blocks.imputed_covariates(d["covariate_value"], list(d["covariate_binary"]))
            beta_cov = pm.Normal(
                "beta_covariate", 0.0, _prior(spec, "covariate_sd"), dims="covariate"
            )
            patient_eta = patient_eta + pt.dot(x, beta_cov)
        beta_rtx = pm.Normal("beta_rituximab", 0.0, _prior(spec, "rituximab_sd"))
        beta_x = pm.Normal("beta_rituximab_x_sural", 0.0, _prior(spec, "interaction_sd"))
        beta_sural = pm.Normal("beta_sural_reduced", 0.0, _prior(spec, "sural_sd"))
        beta_trt = (
            pm.Normal("beta_treatment", 0.0, _prior(spec, "treatment_sd"), dims="treatment")
            if n_trt
            else None
        )

        x_seg = data.segment_covariates
        eta_p = patient_eta[data.segment_subject] + beta_rtx * x_seg[:, n_trt]
        if beta_trt is not None:
            eta_p = eta_p + pt.dot(x_seg[:, :n_trt], beta_trt)
        eta_r = eta_p + beta_sural + beta_x * x_seg[:, n_trt]

        prevalence = blocks.sural_prevalence(d["sural_known"], d["sural_reduced"])
        known, reduced = d["sural_known"].astype(bool), d["sural_reduced"].astype(bool)
        # Interval hazards of each patient under their own status (unknown: as if reduced),
        # and under "preserved" only for the patients whose status is unknown (no wasted
        # work on the others); the likelihood mixes the two for those patients.
        as_reduced = (known & reduced) | ~known
        eta_status = pt.where(as_reduced[data.segment_subject], eta_r, eta_p)
        integrated = base.integrated(data)
        arrays = [survival.interval_hazards(data, eta_status, base, integrated_baseline=integrated)]
        unknown_data = unknown_segments = None
        if (~known).any():
            unknown_data, unknown_segments = data.subset(~known)
            arrays.append(
                survival.interval_hazards(
                    unknown_data,
                    eta_p[unknown_segments],
                    base,
                    integrated_baseline=integrated[unknown_segments],
                )
            )
        if exact_at_visit:
            arrays.append(survival.visit_log_hazard(data, eta_status, base))
            if unknown_data is not None:
                arrays.append(
                    survival.visit_log_hazard(unknown_data, eta_p[unknown_segments], base)
                )
        logp, random, signature = _worsening_distribution(known, reduced, exact_at_visit)
        pm.CustomDist(
            "worsening",
            prevalence,
            *arrays,
            logp=logp,
            random=random,
            signature=signature,
            observed=np.asarray(d["worsening_interval"], dtype="int64"),
            dims="patient",
            dtype="int64",
        )
    return model


# ----------------------------------------------------------------------------- results


def group_benefit(posterior: xr.Dataset, design: Design | None) -> dict[str, xr.DataArray]:
    """Rituximab's log hazard ratio of confirmed worsening by early-sural status."""
    preserved = posterior["beta_rituximab"]
    reduced = posterior["beta_rituximab"] + posterior["beta_rituximab_x_sural"]
    return {"sural_reduced": reduced, "sural_preserved": preserved}


def _posterior_dataset(posterior: xr.DataTree | xr.Dataset) -> xr.Dataset:
    if isinstance(posterior, xr.DataTree):
        node = posterior["posterior"] if "posterior" in posterior.children else posterior
        return node.to_dataset()
    return posterior


def _cumulative_baseline(post: xr.Dataset, spec: Spec, years: np.ndarray) -> xr.DataArray:
    """``H0(t)`` from onset at each of ``years``, per draw."""
    t = xr.DataArray(np.asarray(years, float), dims="years", coords={"years": years})
    if "baseline_log_hazard" in post:
        grid = _grid(spec)
        if grid is None:
            raise SpecError("spec has a Weibull baseline but the posterior is piecewise")
        lo, hi = grid[:-1], grid[1:]
        overlap = np.clip(
            np.minimum(np.asarray(years)[:, None], hi[None, :]) - lo[None, :], 0.0, None
        )
        width = xr.DataArray(overlap, dims=("years", "hazard_piece"))
        hazard = np.exp(post["baseline_log_hazard"])
        width = width.assign_coords(hazard_piece=hazard["hazard_piece"].values)
        return (hazard * width).sum("hazard_piece").assign_coords(years=years)
    shape, log_scale = post["weibull_shape"], post["weibull_log_scale"]
    return np.exp(shape * (np.log(t.clip(min=1e-12)) - log_scale)) * (t > 0)


def survival_curves(
    posterior: xr.DataTree | xr.Dataset,
    spec: Spec,
    *,
    years: np.ndarray | None = None,
    rituximab_start_years: float | None = None,
) -> xr.DataArray:
    """Probability of remaining free of confirmed worsening, from onset, per draw.

    For a reference patient (covariates at the cohort mean or the reference category, a
    typical site: frailty 0, no other treatment), by early-sural status, without
    rituximab or with one course started at ``rituximab_start_years``.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        A fit's DataTree (or its posterior group).
    spec : Spec
        The fit's resolved spec (for the baseline grid and figure defaults).
    years : numpy.ndarray, optional
        Times since onset (years); default 0 to ``[figures] horizon_years`` (12).
    rituximab_start_years : float, optional
        When rituximab starts (years since onset); default ``[figures]
        rituximab_start_years``.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, sural_status, rituximab, years) with sural_status
        ``["reduced", "preserved"]`` and rituximab ``["without", "with"]``.
    """
    post = _posterior_dataset(posterior)
    figures = {**DEFAULTS["figures"], **spec.section("figures")}
    if years is None:
        years = np.linspace(0.0, float(figures["horizon_years"]), 121)
    years = np.asarray(years, float)
    start = float(
        figures["rituximab_start_years"] if rituximab_start_years is None else rituximab_start_years
    )
    h_all = _cumulative_baseline(post, spec, years)
    h_before = _cumulative_baseline(post, spec, np.minimum(years, start)).assign_coords(years=years)
    h_after = h_all - h_before
    curves = []
    for status in ("reduced", "preserved"):
        is_reduced = status == "reduced"
        base_lhr = post["beta_sural_reduced"] if is_reduced else 0.0
        rtx_lhr = post["beta_rituximab"] + (post["beta_rituximab_x_sural"] if is_reduced else 0.0)
        without = np.exp(-h_all * np.exp(base_lhr))
        with_rtx = np.exp(-(h_before + h_after * np.exp(rtx_lhr)) * np.exp(base_lhr))
        curves.append(xr.concat([without, with_rtx], dim="rituximab"))
    out = xr.concat(curves, dim="sural_status")
    out = out.assign_coords(
        sural_status=["reduced", "preserved"], rituximab=["without", "with"], years=years
    )
    out.name = "probability_free_of_worsening"
    out.attrs["rituximab_start_years"] = start
    return out.transpose("chain", "draw", "sural_status", "rituximab", "years")


def survival_curve_table(curves: xr.DataArray, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Posterior mean and HDI of each survival curve (long table)."""
    mean = curves.mean(("chain", "draw"))
    band = az.hdi(curves, prob=hdi_prob)
    table = xr.Dataset(
        {
            "mean": mean,
            "hdi_low": band.sel(ci_bound="lower", drop=True),
            "hdi_high": band.sel(ci_bound="upper", drop=True),
        }
    ).to_dataframe()
    table["hdi_prob"] = hdi_prob
    return table.reset_index()


def hazard_ratio_table(posterior: xr.DataTree | xr.Dataset, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Hazard ratios of confirmed worsening with HDIs.

    Each row is one effect: ``hazard_ratio`` is the posterior median of the HR (exp of the
    median log HR), ``hdi_low`` / ``hdi_high`` the exp of the HDI of the log HR
    (``arviz.hdi``), ``p_below_1`` the posterior probability that the HR is below 1
    (fewer worsenings). Covariate HRs are per 1 sd (continuous) or 0 -> 1 (binary).
    """
    post = _posterior_dataset(posterior)
    effects: list[tuple[str, xr.DataArray]] = [
        ("rituximab, sural-preserved", post["beta_rituximab"]),
        ("rituximab, sural-reduced", post["beta_rituximab"] + post["beta_rituximab_x_sural"]),
        ("ratio of rituximab HRs, reduced / preserved", post["beta_rituximab_x_sural"]),
        ("early sural reduction, without rituximab", post["beta_sural_reduced"]),
    ]
    for var, dim, label in (
        ("beta_treatment", "treatment", "treatment"),
        ("beta_covariate", "covariate", "covariate"),
    ):
        if var in post:
            for name in post[dim].values:
                effects.append((f"{label}: {name}", post[var].sel({dim: name}, drop=True)))
    rows = []
    for name, draws in effects:
        band = az.hdi(draws, prob=hdi_prob)
        rows.append(
            {
                "effect": name,
                "hazard_ratio": float(np.exp(draws.median())),
                "hdi_low": float(np.exp(band.sel(ci_bound="lower"))),
                "hdi_high": float(np.exp(band.sel(ci_bound="upper"))),
                "hdi_prob": hdi_prob,
                "p_below_1": float((draws < 0).mean()),
            }
        )
    return pd.DataFrame(rows)


def plot_survival_curves(
    curves: xr.DataArray, path: str | Path, hdi_prob: float = 0.94, score: str = "INCAT"
) -> Path:
    """Draw survival curves by early-sural status, with and without rituximab.

    Two panels (sural-reduced, sural-preserved); posterior mean lines with HDI bands;
    the rituximab start marked.
    """
    from matplotlib.figure import Figure

    table = survival_curve_table(curves, hdi_prob)
    start = curves.attrs.get("rituximab_start_years")
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colours = {"without": "#666666", "with": "#1f77b4"}
    for ax, status in zip(axes, ["reduced", "preserved"], strict=True):
        for rtx in ("without", "with"):
            sub = table[(table["sural_status"] == status) & (table["rituximab"] == rtx)]
            label = "no rituximab" if rtx == "without" else f"rituximab from {start:g} y"
            ax.plot(sub["years"], sub["mean"], color=colours[rtx], label=label)
            ax.fill_between(
                sub["years"], sub["hdi_low"], sub["hdi_high"], color=colours[rtx], alpha=0.2
            )
        if start is not None:
            ax.axvline(start, color="#1f77b4", lw=0.8, ls=":")
        ax.set_title(f"early sural {status}")
        ax.set_xlabel("years since onset")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"probability free of confirmed {score} worsening")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(
        f"Reference patient, typical site; bands: {int(round(hdi_prob * 100))}% HDI", fontsize=9
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_outputs(result: Any, folder: str | Path) -> list[Path]:
    """Write the worsening model's tables into a results folder.

    ``survival_curves.csv`` (posterior mean and HDI of each curve of
    :func:`survival_curves`) and ``hazard_ratios.csv`` (:func:`hazard_ratio_table`). The
    report calls this, and draws ``figures/survival_curves.png`` with
    :func:`plot_survival_curves`.

    Parameters
    ----------
    result : magbayes.fit.FitResult
        The fit (its ``posterior`` DataTree, ``spec`` and ``hdi_prob`` are used).
    folder : str or pathlib.Path
        The results folder.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hdi_prob = float(getattr(result, "hdi_prob", 0.94))
    curves = survival_curves(result.posterior, result.spec)
    paths = [folder / "survival_curves.csv", folder / "hazard_ratios.csv"]
    survival_curve_table(curves, hdi_prob).to_csv(paths[0], index=False)
    hazard_ratio_table(result.posterior, hdi_prob).to_csv(paths[1], index=False)
    return paths


def refit_spec(spec: Spec, design: Design, diagnostics: dict[str, Any]) -> tuple[Spec, str] | None:
    """No automatic refit of the worsening model: a fit that fails the gate is reported as it is.

    (The progression model's :func:`magbayes.models.progression.refit_spec` refits with
    non-centred patients after divergences.)
    """
    return None
