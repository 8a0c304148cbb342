"""Patients: sites, demographics, anti-MAG titre and electrophysiology at the first study.

All values are drawn complete ("true"); :func:`hide_patient_values` then removes some
completely at random, as a chart review would find them.
"""

from __future__ import annotations

from string import ascii_uppercase
from typing import Any

import numpy as np
import pandas as pd

from magbayes.cohort.tables import DEFAULT_SURAL_THRESHOLD_UV, DEFAULT_SURAL_WINDOW_YEARS
from magbayes.simulate.parameters import COVARIATES

#: Terminal distances (mm) used to compute the terminal latency index from the distal
#: motor latency and the conduction velocity: TLI = distance / (velocity x latency).
TERMINAL_DISTANCE_MM: dict[str, float] = {"median": 70.0, "ulnar": 60.0}

#: Typical values (median of a log-normal) by pattern: distal motor latency (ms),
#: motor conduction velocity (m/s), distal CMAP amplitude (mV). Approximations of the
#: ranges in CLINICAL.md "Electrophysiology" (assumption).
NERVE_MEDIANS: dict[str, dict[str, dict[str, float]]] = {
    "distal_demyelinating": {
        "dml_ms": {"median": 9.5, "ulnar": 6.8, "peroneal": 12.0},
        "mcv_ms": {"median": 32.0, "ulnar": 34.0, "peroneal": 27.0},
        "cmap_mv": {"median": 4.5, "ulnar": 5.0, "peroneal": 1.5},
    },
    "cidp_like": {
        "dml_ms": {"median": 7.0, "ulnar": 5.5, "peroneal": 9.0},
        "mcv_ms": {"median": 27.0, "ulnar": 28.0, "peroneal": 23.0},
        "cmap_mv": {"median": 3.5, "ulnar": 4.0, "peroneal": 1.2},
    },
    "axonal": {
        "dml_ms": {"median": 4.6, "ulnar": 3.6, "peroneal": 6.0},
        "mcv_ms": {"median": 45.0, "ulnar": 46.0, "peroneal": 39.0},
        "cmap_mv": {"median": 2.0, "ulnar": 2.5, "peroneal": 0.6},
    },
}

#: Log-scale sd of each measure (patient-specific part) and the loading of the shared
#: "demyelination severity" factor that correlates them (assumption).
NERVE_LOG_SD: dict[str, float] = {"dml_ms": 0.18, "mcv_ms": 0.12, "cmap_mv": 0.5}
NERVE_SEVERITY_LOADING: dict[str, float] = {"dml_ms": 0.15, "mcv_ms": -0.10, "cmap_mv": -0.2}

NERVES: tuple[str, ...] = ("median", "ulnar", "peroneal")

#: Electrophysiology columns of patients.csv (CONTRACT.md section 1), in file order.
ELECTROPHYSIOLOGY: tuple[str, ...] = tuple(
    f"{nerve}_{measure}" for measure in ("dml_ms", "mcv_ms", "cmap_mv") for nerve in NERVES
) + ("tli_median", "tli_ulnar")


def site_names(n_sites: int) -> list[str]:
    """Site labels ``centre_A``, ``centre_B``, ... (``centre_AA`` after ``centre_Z``)."""
    names = []
    for i in range(n_sites):
        label, k = "", i
        while True:
            label = ascii_uppercase[k % 26] + label
            k = k // 26 - 1
            if k < 0:
                break
        names.append(f"centre_{label}")
    return names


def site_sizes(n_patients: int, n_sites: int, ratio: float) -> list[int]:
    """Patients per site: shares proportional to ``ratio ** j``, each site at least one.

    Parameters
    ----------
    n_patients, n_sites : int
        Cohort size and number of sites (``n_sites <= n_patients``).
    ratio : float
        Size of each site relative to the previous one (0.75: 57% / 43% for two sites).
    """
    weights = np.asarray([ratio**j for j in range(n_sites)], float)
    spare = n_patients - n_sites
    exact = spare * weights / weights.sum()
    sizes = np.floor(exact).astype(int)
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: spare - sizes.sum()]] += 1
    return [int(s) + 1 for s in sizes]


def covariate_standardisation(population: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Population mean and sd used to standardise each covariate in the true models.

    Continuous covariates use the mean and sd of the distribution they are drawn from
    (not of the simulated sample); the pattern dummies are 0/1 and not standardised
    (mean 0, sd 1).
    """
    return {
        "age_at_onset": {"mean": population["age_mean"], "sd": population["age_sd"]},
        "log10_anti_mag_titer": {
            "mean": population["log10_titer_mean"],
            "sd": population["log10_titer_sd"],
        },
        "pattern_cidp_like": {"mean": 0.0, "sd": 1.0},
        "pattern_axonal": {"mean": 0.0, "sd": 1.0},
    }


def standardised_covariates(
    patients: pd.DataFrame, standardisation: dict[str, dict[str, float]]
) -> np.ndarray:
    """Patient x covariate matrix (order :data:`COVARIATES`) from the true values.

    Parameters
    ----------
    patients : pandas.DataFrame
        True patient values from :func:`draw_patients` (no missing values).
    standardisation : dict
        From :func:`covariate_standardisation`.
    """
    raw = {
        "age_at_onset": patients["age_at_onset"].to_numpy(float),
        "log10_anti_mag_titer": np.log10(
            np.clip(patients["anti_mag_titer_btu"].to_numpy(float), 1.0, None)
        ),
        "pattern_cidp_like": (patients["pattern"] == "cidp_like").to_numpy(float),
        "pattern_axonal": (patients["pattern"] == "axonal").to_numpy(float),
    }
    columns = [(raw[c] - standardisation[c]["mean"]) / standardisation[c]["sd"] for c in COVARIATES]
    return np.column_stack(columns)


def draw_patients(
    rng: np.random.Generator, n_patients: int, n_sites: int, population: dict[str, Any]
) -> pd.DataFrame:
    """True characteristics of each patient (nothing missing).

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream for this stage.
    n_patients, n_sites : int
        Cohort size and number of sites.
    population : dict
        The ``population`` section of the parameters.

    Returns
    -------
    pandas.DataFrame
        One row per patient: ``patient_id``, ``site``, ``sex``, ``age_at_onset`` (years,
        0.1), ``pattern``, ``anti_mag_titer_btu`` (BTU, integer), ``first_ncs_years``
        (years since onset, 0.001), ``early_sural_snap_uv`` (µV, the amplitude an early
        study shows), ``sural_snap_uv`` (µV, at the first study), ``true_sural_reduced``
        (bool: early amplitude below 5 µV), and the columns of :data:`ELECTROPHYSIOLOGY`.
    """
    width = max(3, len(str(n_patients)))
    ids = [f"P{i + 1:0{width}d}" for i in range(n_patients)]
    names = site_names(n_sites)
    sizes = site_sizes(n_patients, n_sites, population["site_size_ratio"])
    sites = rng.permutation(np.repeat(np.asarray(names, dtype=object), sizes))

    sex = np.where(rng.random(n_patients) < population["male_fraction"], "M", "F")
    age = rng.normal(population["age_mean"], population["age_sd"], n_patients)
    age = np.round(np.clip(age, population["age_min"], population["age_max"]), 1)

    pattern_names = list(population["pattern_probabilities"])
    pattern_p = np.asarray(list(population["pattern_probabilities"].values()), float)
    pattern = np.asarray(pattern_names, dtype=object)[
        rng.choice(len(pattern_names), size=n_patients, p=pattern_p / pattern_p.sum())
    ]

    log_titre = rng.normal(population["log10_titer_mean"], population["log10_titer_sd"], n_patients)
    titre = np.round(10.0**log_titre).astype(np.int64)

    shape = population["first_ncs_shape"]
    first_ncs = rng.gamma(shape, population["first_ncs_mean_years"] / shape, n_patients)
    first_ncs = np.round(np.maximum(first_ncs, 0.05), 3)

    early_snap = _early_sural(rng, pattern, age, population)
    late = np.maximum(first_ncs - DEFAULT_SURAL_WINDOW_YEARS, 0.0)
    snap = np.round(early_snap * np.exp(-population["sural_log_decline_per_year_late"] * late), 1)
    snap = np.where((early_snap > 0) & (snap == 0), 0.1, snap)

    frame = pd.DataFrame(
        {
            "patient_id": ids,
            "site": sites.astype(str),
            "sex": sex,
            "age_at_onset": age,
            "pattern": pattern.astype(str),
            "anti_mag_titer_btu": titre,
            "first_ncs_years": first_ncs,
            "early_sural_snap_uv": early_snap,
            "sural_snap_uv": snap,
            "true_sural_reduced": early_snap < DEFAULT_SURAL_THRESHOLD_UV,
        }
    )
    for column, values in _electrophysiology(rng, pattern).items():
        frame[column] = values
    return frame


def _early_sural(
    rng: np.random.Generator, pattern: np.ndarray, age: np.ndarray, population: dict[str, Any]
) -> np.ndarray:
    """Sural SNAP amplitude (µV, 0.1) that a study within the early window shows."""
    n = len(pattern)
    p_absent = np.asarray([population["sural_absent_probability"][p] for p in pattern], float)
    absent = rng.random(n) < p_absent
    log_median = np.log(population["sural_present_median_uv"]) + population[
        "sural_log_change_per_year_of_age"
    ] * (age - population["age_mean"])
    present = np.exp(rng.normal(log_median, population["sural_present_log_sd"]))
    present = np.maximum(np.round(present, 1), 0.1)
    return np.where(absent, 0.0, present)


def _electrophysiology(rng: np.random.Generator, pattern: np.ndarray) -> dict[str, np.ndarray]:
    """Distal latencies, velocities, CMAP amplitudes and TLIs, correlated within a patient."""
    n = len(pattern)
    severity = rng.normal(0.0, 1.0, n)
    out: dict[str, np.ndarray] = {}
    for measure, decimals in (("dml_ms", 2), ("mcv_ms", 1), ("cmap_mv", 2)):
        for nerve in NERVES:
            median = np.asarray([NERVE_MEDIANS[p][measure][nerve] for p in pattern], float)
            log_value = (
                np.log(median)
                + NERVE_SEVERITY_LOADING[measure] * severity
                + rng.normal(0.0, NERVE_LOG_SD[measure], n)
            )
            value = np.round(np.exp(log_value), decimals)
            floor = 10.0**-decimals
            out[f"{nerve}_{measure}"] = np.maximum(value, floor)
    for nerve, distance in TERMINAL_DISTANCE_MM.items():
        tli = distance / (out[f"{nerve}_mcv_ms"] * out[f"{nerve}_dml_ms"])
        out[f"tli_{nerve}"] = np.maximum(np.round(tli, 3), 0.001)
    return {column: out[column] for column in ELECTROPHYSIOLOGY}


def hide_patient_values(
    rng: np.random.Generator, patients: pd.DataFrame, missing: dict[str, float]
) -> pd.DataFrame:
    """The patients table as written: some values missing completely at random.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random stream for missingness.
    patients : pandas.DataFrame
        From :func:`draw_patients`.
    missing : dict
        The ``missing`` section: a share per column (``electrophysiology`` applies to each
        conduction value separately; a TLI is missing when its latency or velocity is).

    Returns
    -------
    pandas.DataFrame
        Columns of CONTRACT.md section 1 in file order; numbers are floats (the titre a
        whole number of BTU), missing numbers are NaN, missing text is ``<NA>``.
    """
    n = len(patients)
    out = pd.DataFrame({"patient_id": patients["patient_id"], "site": patients["site"]})
    for column in ("sex", "age_at_onset", "pattern", "anti_mag_titer_btu"):
        hide = rng.random(n) < missing[column]
        if column in ("sex", "pattern"):
            out[column] = patients[column].astype("string").mask(hide)
        else:
            out[column] = patients[column].astype(float).mask(hide)
    for column in ("sural_snap_uv", "first_ncs_years"):
        hide = rng.random(n) < missing[column]
        out[column] = patients[column].astype(float).mask(hide)
    hidden: dict[str, np.ndarray] = {}
    for column in ELECTROPHYSIOLOGY:
        if column.startswith("tli_"):
            nerve = column.removeprefix("tli_")
            hide = hidden[f"{nerve}_dml_ms"] | hidden[f"{nerve}_mcv_ms"]
        else:
            hide = rng.random(n) < missing["electrophysiology"]
        hidden[column] = hide
        out[column] = patients[column].astype(float).mask(hide)
    return out.reset_index(drop=True)
