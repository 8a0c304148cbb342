"""The worsening model's design: outcomes, follow-up rows cut at course starts, covariates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.models import blocks, survival
from magbayes.models.base import Design
from magbayes.models.worsening.definition import DEFAULTS, NAME
from magbayes.models.worsening.events import worsening_outcomes
from magbayes.spec import Spec


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


def hazard_grid(spec: Spec) -> np.ndarray | None:
    """Boundaries ``[0, ..., inf]`` (years since onset) of the piecewise baseline hazard.

    None for a Weibull baseline.

    Raises
    ------
    magbayes.errors.SpecError
        For another ``[baseline_hazard] kind``, or a grid that does not start at 0 and
        increase.
    """
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

    grid = hazard_grid(spec)
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
