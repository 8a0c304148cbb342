"""``simulate_cohort``: a synthetic anti-MAG cohort whose true parameters are known.

The stages run in a fixed order, each with its own random stream spawned from the seed
(``numpy.random.SeedSequence(seed).spawn``), so that changing one stage's settings does
not reshuffle the others:

1. patients and electrophysiology (:mod:`~magbayes.simulate.population`);
2. visit times (:mod:`~magbayes.simulate.schedule`);
3. treatment courses (:mod:`~magbayes.simulate.treatments`);
4. latent disability and scores (:mod:`~magbayes.simulate.trajectories`);
5. time of confirmed worsening (:mod:`~magbayes.simulate.events`);
6. clinician ratings of each course (:mod:`~magbayes.simulate.responses`);
7. values missing at random, then the tables as written and ``truth.json``;
8. with ``end_of_follow_up=True`` only: death and loss to follow-up
   (:mod:`~magbayes.simulate.dropout`), the visits and courses after them removed.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from magbayes.cohort.tables import Cohort
from magbayes.simulate import (
    dropout,
    events,
    indication,
    population,
    responses,
    schedule,
    trajectories,
    treatments,
)
from magbayes.simulate.parameters import DEFAULT_SURAL_RITUXIMAB_EFFECT, resolve_parameters
from magbayes.simulate.truth import build_truth
from magbayes.simulate.write import FILES, plain, table_csv, truth_json, write_folder

#: Ways of generating confirmed worsening (see :mod:`magbayes.simulate.events`).
WORSENING_MODES: tuple[str, ...] = ("hazard", "scores")

#: Random streams, in spawn order (appending a new one keeps the others unchanged).
STREAMS: tuple[str, ...] = (
    "population",
    "visits",
    "treatments",
    "progression",
    "scores",
    "worsening",
    "response",
    "missing",
    "end_of_follow_up",
)


@dataclass(frozen=True)
class SimulatedCohort:
    """A simulated cohort, its tables as written and its true parameters.

    Attributes
    ----------
    cohort : Cohort
        The cohort built with :meth:`Cohort.from_frames` (times in years since onset).
    truth : dict
        Exactly what ``truth.json`` holds (plain Python types; ``None`` where a value
        does not apply).
    patients, visits, treatments : pandas.DataFrame
        The tables exactly as written to ``patients.csv``, ``visits.csv`` and
        ``treatments.csv`` (missing values as NaN / ``<NA>``).
    """

    cohort: Cohort
    truth: dict[str, Any]
    patients: pd.DataFrame
    visits: pd.DataFrame
    treatments: pd.DataFrame
    _texts: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def files(self) -> dict[str, str]:
        """``{file name: text}`` of the four files of the cohort folder."""
        if not self._texts:
            texts = {
                "patients.csv": table_csv(self.patients),
                "visits.csv": table_csv(self.visits),
                "treatments.csv": table_csv(self.treatments),
                "truth.json": truth_json(self.truth),
            }
            self._texts.update({name: texts[name] for name in FILES})
        return dict(self._texts)

    def write(self, folder: str | os.PathLike, overwrite: bool = False) -> list[Path]:
        """Write ``patients.csv``, ``visits.csv``, ``treatments.csv`` and ``truth.json``.

        The folder is written atomically: the files go to a temporary folder beside it,
        which is then renamed. The same seed and options give byte-identical files.

        Parameters
        ----------
        folder : path
            Target folder (created; an existing empty folder is fine).
        overwrite : bool
            Replace a non-empty folder (otherwise :class:`FileExistsError`).

        Returns
        -------
        list of pathlib.Path
            The files written.
        """
        target = write_folder(folder, self.files(), overwrite=overwrite)
        return [target / name for name in FILES]


def simulate_cohort(
    n_patients: int = 47,
    n_sites: int = 2,
    max_follow_up_years: float = 12.0,
    sural_rituximab_effect: float = DEFAULT_SURAL_RITUXIMAB_EFFECT,
    seed: int | None = None,
    worsening_from: str = "hazard",
    end_of_follow_up: bool = False,
    **overrides: Any,
) -> SimulatedCohort:
    """Simulate an anti-MAG neuropathy cohort calibrated to published figures.

    Parameters
    ----------
    n_patients : int
        Number of patients (47 as in the seed study).
    n_sites : int
        Number of hospitals (``centre_A``, ``centre_B``, ...; unequal sizes).
    max_follow_up_years : float
        Latest possible visit (years since symptom onset).
    sural_rituximab_effect : float
        ``gamma_rituximab_x_sural``: extra change of the latent progression slope
        (latent logit per year) under rituximab in patients with early sural reduction.
        Negative = more benefit in sural-reduced patients; 0 = no interaction. It also
        sets ``beta_rituximab_x_sural`` (= 1.0 x effect, log hazard ratio) and
        ``alpha_rituximab_x_sural`` (= -2.0 x effect, log odds of a better rating).
    seed : int, optional
        Seed of ``numpy.random.default_rng``; drawn from the operating system when
        omitted (and recorded in ``truth["seed"]``).
    worsening_from : {"hazard", "scores"}
        ``hazard``: true worsening times from the proportional-hazards model, INCAT made
        consistent with them (exact worsening truth, INCAT's progression truth
        approximate). ``scores``: worsening is whatever the scores show (exact
        progression truth, no worsening truth).
    end_of_follow_up : bool
        Draw death and loss to follow-up from hazards that depend on the current latent
        disability (:mod:`magbayes.simulate.dropout`, parameters in the ``dropout``
        section: ``death_alpha``, ``death_hazard``, ``lost_hazard``, ...): the visits after
        the end are removed, patients.csv gets ``end_years``, ``end_reason`` and
        ``end_lower_years``, and truth.json an ``end_of_follow_up`` section. Off (the
        default), the files are exactly those of a simulator without this option.
    **overrides
        Parameter overrides, by section (``progression={"slope": 0.8}``) or by a name
        found in one section only (``slope=0.8``); see
        :mod:`magbayes.simulate.parameters` and ``docs/simulator.md``.

    Returns
    -------
    SimulatedCohort

    Raises
    ------
    ValueError
        For impossible sizes, an unknown worsening mode or an invalid override.
    """
    n_patients, n_sites = int(n_patients), int(n_sites)
    max_follow_up_years = float(max_follow_up_years)
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, not {n_patients}")
    if not 1 <= n_sites <= n_patients:
        raise ValueError(f"n_sites must be between 1 and n_patients ({n_patients}), not {n_sites}")
    if not max_follow_up_years > 0:
        raise ValueError(f"max_follow_up_years must be positive, not {max_follow_up_years}")
    if worsening_from not in WORSENING_MODES:
        raise ValueError(f"worsening_from must be 'hazard' or 'scores', not {worsening_from!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**32)
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed}")
    params = resolve_parameters(sural_rituximab_effect, overrides)
    end_of_follow_up = bool(end_of_follow_up)
    if not end_of_follow_up:
        _refuse_unused_dropout(overrides, params)
    rng = dict(
        zip(
            STREAMS,
            (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(STREAMS))),
            strict=True,
        )
    )

    # 1. patients
    true_patients = population.draw_patients(
        rng["population"], n_patients, n_sites, params["population"]
    )
    ids = true_patients["patient_id"].tolist()
    sites = population.site_names(n_sites)
    site_of = true_patients["site"].to_numpy()
    site_by_patient = dict(zip(ids, site_of, strict=True))
    sural = dict(zip(ids, true_patients["true_sural_reduced"].to_numpy(bool), strict=True))
    standardisation = population.covariate_standardisation(params["population"])
    z = population.standardised_covariates(true_patients, standardisation)

    # 2. visits, 3. courses
    visits = schedule.draw_visit_times(
        rng["visits"], true_patients, max_follow_up_years, params["visits"]
    )
    first = visits.groupby("patient_id", sort=False)["years_since_onset"].min()
    last = visits.groupby("patient_id", sort=False)["years_since_onset"].max()
    courses = treatments.draw_courses(
        rng["treatments"],
        ids,
        first.reindex(ids).to_numpy(float),
        last.reindex(ids).to_numpy(float),
        params["treatments"],
    )

    # 4. latent disability and scores
    prog = params["progression"]
    site_level, site_slope = trajectories.draw_site_effects(rng["progression"], sites, prog)
    level, rate = trajectories.draw_patient_trajectories(
        rng["progression"],
        site_of,
        true_patients["true_sural_reduced"].to_numpy(bool),
        site_level,
        site_slope,
        prog,
    )
    covariate_effect = trajectories.covariate_effect(z, prog["beta_covariate"])

    def disability(courses: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict]:
        # the same random numbers every time (a copy of the stream), so that redrawing
        # with another treatment history changes only the visits after its changes
        gamma, eta = trajectories.latent_with_courses(
            visits, ids, level, rate, covariate_effect, courses, sural, prog
        )
        return gamma, eta, trajectories.draw_scores(copy.deepcopy(rng["scores"]), eta, prog)

    if indication.on_worsening(params["treatments"]):
        if worsening_from != "scores":
            raise ValueError(
                "treatments.rituximab_trigger_incat_rise needs worsening_from='scores' "
                "(the decision must see the INCAT scores that are written)"
            )
        courses = indication.without_rituximab(courses)
        _, _, untreated = disability(courses)
        courses = indication.start_on_worsening(
            courses,
            visits,
            untreated["incat"],
            dict(zip(ids, last.reindex(ids).to_numpy(float), strict=True)),
            params["treatments"],
        )
    gamma, eta, scores = disability(courses)

    # 5. worsening (drawn in both modes so that the other draws do not depend on the mode)
    wors = params["worsening"]
    frailty = events.draw_site_frailty(rng["worsening"], sites, wors)
    log_hr = events.course_log_hazard_ratios(courses, sural, wors)
    worsening_time = events.draw_worsening_times(
        rng["worsening"],
        ids,
        first.reindex(ids).to_numpy(float),
        events.fixed_log_hazard(z, site_of, frailty, wors),
        courses,
        log_hr,
        wors,
    )
    if worsening_from == "hazard":
        scores["incat"] = events.impose_worsening(
            visits, scores["incat"], dict(zip(ids, worsening_time, strict=True))
        )
    for name, values in scores.items():
        visits[name] = values
    visits["eta"] = eta
    courses["gamma"] = gamma
    courses["beta"] = log_hr

    # death (mRS 6) ends follow-up: later visits and courses starting after it are dropped
    visits, courses = _end_at_death(visits, courses)

    # 6. clinician ratings
    resp = params["response"]
    patient_effect, site_effect = responses.draw_response_effects(rng["response"], ids, sites, resp)
    courses["response_linear_predictor"] = responses.response_linear_predictor(
        courses,
        {pid: z[i] for i, pid in enumerate(ids)},
        site_by_patient,
        sural,
        patient_effect,
        site_effect,
        resp,
    )
    courses["true_response"] = responses.draw_ratings(
        rng["response"], courses["response_linear_predictor"].to_numpy(float), resp["cutpoints"]
    )

    # 7. missing values, tables as written
    missing = params["missing"]
    courses["response"] = responses.hide_ratings(
        rng["missing"], courses["true_response"].to_numpy(str), missing["response_unknown"]
    )
    patients_out = population.hide_patient_values(rng["missing"], true_patients, missing)
    recorded = trajectories.hide_scores(
        rng["missing"], visits[["visit", "incat", "onls", "mrs", "irods"]], missing
    )

    # 8. end of follow-up: death and loss to follow-up, later visits and courses removed
    ends = None
    if end_of_follow_up:
        ends = dropout.end_of_follow_up(
            rng["end_of_follow_up"],
            visits,
            ids,
            level,
            rate,
            covariate_effect,
            courses,
            params["dropout"],
        )
        keep_visits, keep_courses, stops = dropout.truncate(visits, courses, ends)
        visits = visits[keep_visits].reset_index(drop=True)
        recorded = recorded[keep_visits].reset_index(drop=True)
        courses = courses.assign(stop_years=stops)[keep_courses].reset_index(drop=True)
        patients_out = patients_out.assign(
            end_years=patients_out["patient_id"].map(ends["end_years"]).to_numpy(float),
            end_reason=patients_out["patient_id"].map(ends["end_reason"]).to_numpy(object),
            end_lower_years=patients_out["patient_id"].map(ends["end_lower_years"]).to_numpy(float),
        )

    visits_out = pd.DataFrame(
        {
            "patient_id": visits["patient_id"].to_numpy(),
            "years_since_onset": visits["years_since_onset"].to_numpy(float),
        }
    )
    for name in ("incat", "onls", "mrs", "irods"):
        visits_out[name] = recorded[name].to_numpy()
        visits_out[name] = visits_out[name].astype("Float64" if name == "irods" else "Int64")
    treatments_out = courses[
        ["patient_id", "treatment", "line", "start_years", "stop_years", "response"]
    ].reset_index(drop=True)

    first_worsening = events.first_confirmed_worsening(visits_out)
    options = {
        "n_patients": n_patients,
        "n_sites": n_sites,
        "max_follow_up_years": max_follow_up_years,
        "sural_rituximab_effect": float(sural_rituximab_effect),
        "seed": seed,
        "worsening_from": worsening_from,
        "overrides": overrides,
    }
    if end_of_follow_up:
        options["end_of_follow_up"] = True
    truth = plain(
        build_truth(
            seed=seed,
            options=options,
            params=params,
            standardisation=standardisation,
            sites=sites,
            patient_ids=ids,
            site_by_patient=site_by_patient,
            z=z,
            sural_reduced=sural,
            progression_effects={
                "site_level": site_level,
                "site_slope": site_slope,
                "level": level,
                "rate": rate,
            },
            worsening_effects=(
                {"site_log_frailty": frailty, "worsening_time": worsening_time}
                if worsening_from == "hazard"
                else None
            ),
            response_effects={"site_effect": site_effect, "patient_effect": patient_effect},
            first_worsening=first_worsening,
            courses=courses.reset_index(drop=True),
        )
    )
    if ends is not None:
        truth["end_of_follow_up"] = plain(dropout.truth_section(ends, params["dropout"]))
    cohort = Cohort.from_frames(
        patients_out.copy(), visits_out.copy(), treatments_out.copy(), source="simulated"
    )
    return SimulatedCohort(
        cohort=cohort,
        truth=truth,
        patients=patients_out,
        visits=visits_out,
        treatments=treatments_out,
    )


def _refuse_unused_dropout(overrides: dict[str, Any], params: dict) -> None:
    """Refuse ``dropout`` settings given without ``end_of_follow_up=True`` (never ignored)."""
    names = set(params["dropout"])
    given = [key for key in overrides if key == "dropout" or key in names]
    if given:
        raise ValueError(
            f"{', '.join(given)} set the end of follow-up (death and loss to follow-up), "
            "which is simulated only with end_of_follow_up=True"
        )


def _end_at_death(visits: pd.DataFrame, courses: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop visits after a visit with mRS 6 and courses that start after the last visit.

    A course still running at the (new) last visit becomes ongoing (no stop time).
    """
    dead = visits["mrs"].to_numpy() == 6
    if not dead.any():
        return visits.reset_index(drop=True), courses.reset_index(drop=True)
    died_at = visits.loc[dead].groupby("patient_id")["years_since_onset"].min()
    limit = visits["patient_id"].map(died_at)
    visits = visits[~(visits["years_since_onset"] > limit)].reset_index(drop=True)
    last = visits.groupby("patient_id")["years_since_onset"].max()
    course_last = courses["patient_id"].map(last)
    courses = courses[courses["start_years"] <= course_last].copy()
    ongoing = courses["stop_years"] > courses["patient_id"].map(last)
    courses.loc[ongoing, "stop_years"] = np.nan
    return visits, courses.reset_index(drop=True)
