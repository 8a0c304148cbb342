"""The validated cohort: three tables on one time axis plus derived per-patient fields.

Every time in a :class:`Cohort` is in **years since symptom onset** (float). The reader
(:mod:`magbayes.cohort.read`) converts ISO dates to that axis; the simulator writes it
directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from magbayes.cohort.fileformat import DEFAULT_FORMAT, CohortFormat

#: Disability scores a visit may carry, with their integer range (``None`` = continuous).
SCORES: dict[str, tuple[float, float, bool]] = {
    # name: (lowest, highest, integer)
    "incat": (0, 10, True),
    "onls": (0, 12, True),
    "mrs": (0, 6, True),
    "irods": (0, 100, False),
}

#: Treatments a course may name (CONTRACT.md section 1).
TREATMENTS: tuple[str, ...] = (
    "ivig",
    "rituximab",
    "corticosteroids",
    "plasma_exchange",
    "cyclophosphamide",
    "chlorambucil",
    "other",
)

#: Electrophysiological patterns.
PATTERNS: tuple[str, ...] = ("distal_demyelinating", "cidp_like", "axonal")

#: Clinician ratings of a treatment course.
RESPONSES: tuple[str, ...] = ("good", "partial", "none", "unknown")
#: The treatments table's column of the clinician's rating of each course.
RESPONSE_COLUMN = "response"

#: Optional numeric patient columns, with their lower bound and whether 0 is allowed.
PATIENT_NUMERIC: dict[str, tuple[float, bool]] = {
    "age_at_onset": (0.0, True),
    "anti_mag_titer_btu": (0.0, True),
    "sural_snap_uv": (0.0, True),
    "first_ncs_years": (0.0, True),
    "median_dml_ms": (0.0, False),
    "ulnar_dml_ms": (0.0, False),
    "peroneal_dml_ms": (0.0, False),
    "median_mcv_ms": (0.0, False),
    "ulnar_mcv_ms": (0.0, False),
    "peroneal_mcv_ms": (0.0, False),
    "median_cmap_mv": (0.0, True),
    "ulnar_cmap_mv": (0.0, True),
    "peroneal_cmap_mv": (0.0, True),
    "tli_median": (0.0, False),
    "tli_ulnar": (0.0, False),
}

#: Default early-sural definition. Threshold: lower limit of normal of the sural SNAP in
#: adults (about 5 µV, CLINICAL.md "Electrophysiology"). Window: an assumption (the first
#: nerve conduction study must be within 3 years of onset to count as "early"); the
#: sensitivity analysis varies both.
DEFAULT_SURAL_THRESHOLD_UV: float = 5.0
DEFAULT_SURAL_WINDOW_YEARS: float = 3.0


@dataclass(frozen=True)
class Cohort:
    """A validated cohort on one time axis (years since symptom onset).

    Attributes
    ----------
    patients : pandas.DataFrame
        One row per patient, indexed by ``patient_id`` (str). Columns: ``site`` (str),
        optional ``sex``, ``age_at_onset`` (years), ``pattern``, ``anti_mag_titer_btu`` (BTU),
        ``sural_snap_uv`` (µV), ``first_ncs_years`` (years since onset), the conduction
        measures of CONTRACT.md (ms, m/s, mV), any extra user columns, and the derived
        fields ``sural_reduced`` (nullable boolean), ``n_treatment_lines`` (int),
        ``n_visits`` (int) and ``follow_up_years`` (years from onset to the last visit).
        When the cohort gives the end of follow-up: ``end_years`` (years since onset),
        ``end_reason`` (str) and ``end_lower_years`` (years since onset); see
        :attr:`follow_up`.
    visits : pandas.DataFrame
        One row per assessment: ``patient_id``, ``years_since_onset`` (float) and the
        scores ``incat``, ``onls``, ``mrs`` (nullable Int64) and ``irods`` (Float64,
        centile), sorted by patient and time. ``source_row`` keeps the row number in the
        file (header = 1) for messages.
    treatments : pandas.DataFrame
        One row per course: ``patient_id``, ``treatment``, ``line`` (int),
        ``start_years``, ``stop_years`` (NaN = ongoing), ``response`` (str or NA),
        ``source_row``.
    source : str
        Where the cohort came from (folder or workbook path, or ``"simulated"``).
    sha256 : str
        SHA-256 of the cohort's files (the reader computes it; see
        :func:`magbayes.cohort.read.cohort_sha256`).
    sural_threshold_uv : float
        Threshold (µV) below which the first sural SNAP counts as reduced.
    sural_window_years : float
        Window (years since onset) within which the first nerve conduction study must
        fall for ``sural_reduced`` to be defined.
    file_format : CohortFormat
        How the files were written (date format, separator, decimal mark).
    """

    patients: pd.DataFrame
    visits: pd.DataFrame
    treatments: pd.DataFrame
    source: str = "in-memory"
    sha256: str = ""
    file_format: CohortFormat = DEFAULT_FORMAT
    sural_threshold_uv: float = DEFAULT_SURAL_THRESHOLD_UV
    sural_window_years: float = DEFAULT_SURAL_WINDOW_YEARS
    extra: dict = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_frames(
        cls,
        patients: pd.DataFrame,
        visits: pd.DataFrame,
        treatments: pd.DataFrame,
        *,
        source: str = "in-memory",
        sha256: str = "",
        file_format: CohortFormat = DEFAULT_FORMAT,
        sural_threshold_uv: float = DEFAULT_SURAL_THRESHOLD_UV,
        sural_window_years: float = DEFAULT_SURAL_WINDOW_YEARS,
    ) -> Cohort:
        """Build a cohort from already-validated tables on the years-since-onset axis.

        Parameters
        ----------
        patients, visits, treatments : pandas.DataFrame
            Tables as described in :class:`Cohort` (``patients`` may have ``patient_id``
            as a column or as the index). No validation is done here: use
            :func:`magbayes.load_cohort` for files.
        source, sha256 : str
            Provenance.
        file_format : CohortFormat
            How the files were written (provenance).
        sural_threshold_uv : float
            Early-sural threshold (µV).
        sural_window_years : float
            Early-sural window (years since onset).

        Returns
        -------
        Cohort
        """
        patients = patients.copy()
        if "patient_id" in patients.columns:
            patients = patients.set_index("patient_id")
        patients.index = patients.index.astype(str)
        patients.index.name = "patient_id"
        patients["site"] = patients["site"].astype(str)
        for column in ("end_years", "end_lower_years"):
            if column in patients.columns:
                patients[column] = pd.to_numeric(patients[column]).astype(float)
        if "end_reason" in patients.columns:
            patients["end_reason"] = patients["end_reason"].astype("string")

        visits = visits.copy()
        visits["patient_id"] = visits["patient_id"].astype(str)
        visits["years_since_onset"] = visits["years_since_onset"].astype(float)
        for score, (_, _, integer) in SCORES.items():
            if score not in visits.columns:
                visits[score] = pd.NA
            visits[score] = visits[score].astype("Int64" if integer else "Float64")
        if "source_row" not in visits.columns:
            visits["source_row"] = np.arange(2, len(visits) + 2)
        visits = visits.sort_values(["patient_id", "years_since_onset"], kind="stable")
        visits = visits.reset_index(drop=True)

        treatments = treatments.copy()
        treatments["patient_id"] = treatments["patient_id"].astype(str)
        treatments["treatment"] = treatments["treatment"].astype(str)
        treatments["line"] = treatments["line"].astype(int)
        treatments["start_years"] = treatments["start_years"].astype(float)
        if "stop_years" not in treatments.columns:
            treatments["stop_years"] = np.nan
        treatments["stop_years"] = treatments["stop_years"].astype(float)
        if "response" not in treatments.columns:
            treatments["response"] = pd.NA
        treatments["response"] = treatments["response"].astype("string")
        if "source_row" not in treatments.columns:
            treatments["source_row"] = np.arange(2, len(treatments) + 2)
        treatments = treatments.sort_values(
            ["patient_id", "start_years", "line"], kind="stable"
        ).reset_index(drop=True)

        cohort = cls(
            patients=patients,
            visits=visits,
            treatments=treatments,
            source=source,
            sha256=sha256,
            file_format=file_format,
            sural_threshold_uv=float(sural_threshold_uv),
            sural_window_years=float(sural_window_years),
        )
        return cohort._with_derived()

    def _with_derived(self) -> Cohort:
        patients = self.patients.copy()
        ids = patients.index
        patients["sural_reduced"] = early_sural_reduction(
            patients, self.sural_threshold_uv, self.sural_window_years
        )
        lines = self.treatments.groupby("patient_id")["line"].max()
        patients["n_treatment_lines"] = lines.reindex(ids).fillna(0).astype(int)
        n_visits = self.visits.groupby("patient_id").size()
        patients["n_visits"] = n_visits.reindex(ids).fillna(0).astype(int)
        last = self.visits.groupby("patient_id")["years_since_onset"].max()
        patients["follow_up_years"] = last.reindex(ids).astype(float)
        object.__setattr__(self, "patients", patients)
        return self

    def with_sural_definition(self, threshold_uv: float, window_years: float) -> Cohort:
        """Return a copy whose ``sural_reduced`` uses another threshold and window.

        Parameters
        ----------
        threshold_uv : float
            Sural SNAP amplitude (µV) below which the response counts as reduced.
        window_years : float
            The first nerve conduction study must be within this many years of onset.
        """
        new = replace(
            self,
            sural_threshold_uv=float(threshold_uv),
            sural_window_years=float(window_years),
        )
        return new._with_derived()

    # ------------------------------------------------------------------ views
    @property
    def patient_ids(self) -> list[str]:
        """Patient identifiers in table order."""
        return list(self.patients.index)

    @property
    def sites(self) -> list[str]:
        """Site names, sorted."""
        return sorted(self.patients["site"].unique())

    @property
    def n_patients(self) -> int:
        """Number of patients."""
        return len(self.patients)

    @property
    def n_visits(self) -> int:
        """Number of visits (assessments)."""
        return len(self.visits)

    @property
    def follow_up(self) -> pd.DataFrame:
        """When and why each patient's follow-up ended (years since onset).

        One row per patient (indexed by ``patient_id``): ``last_visit_years``,
        ``end_years``, ``end_reason``, ``end_lower_years`` (the last contact before a death
        known only to lie between two contacts) and ``died``; see
        :func:`magbayes.cohort.follow_up.follow_up_table`. Without the end-of-follow-up
        columns, every end is missing and no one died.
        """
        from magbayes.cohort.follow_up import follow_up_table

        return follow_up_table(self.patients, self.visits)

    @property
    def has_end_of_follow_up(self) -> bool:
        """Whether any patient has an end of follow-up (``end_years`` and ``end_reason``)."""
        return "end_years" in self.patients.columns and bool(
            self.patients["end_years"].notna().any()
        )

    def summary(self) -> dict:
        """Counts a reader wants before fitting anything.

        Returns
        -------
        dict
            Patients by site and pattern, visits per patient, courses by line and
            treatment, early-sural counts (reduced / preserved / missing) with the
            definition used, follow-up (years), and how the files were written
            (``file_format``: ``date_format``, ``sep``, ``decimal``). When the cohort gives
            the end of follow-up, also ``end_of_follow_up``
            (:func:`magbayes.cohort.follow_up.follow_up_summary`).
        """
        p = self.patients
        pattern = p["pattern"] if "pattern" in p.columns else pd.Series(pd.NA, index=p.index)
        sural = p["sural_reduced"]
        tr = self.treatments
        visits_per = p["n_visits"]
        follow = p["follow_up_years"]
        summary = {
            "source": self.source,
            "file_format": self.file_format.as_dict(),
            "n_patients": int(len(p)),
            "n_sites": int(p["site"].nunique()),
            "patients_by_site": {
                k: int(v) for k, v in p["site"].value_counts().sort_index().items()
            },
            "patients_by_pattern": {
                str(k): int(v) for k, v in pattern.fillna("missing").value_counts().items()
            },
            "n_visits": int(len(self.visits)),
            "visits_per_patient": {
                "min": int(visits_per.min()) if len(p) else 0,
                "median": float(visits_per.median()) if len(p) else 0.0,
                "max": int(visits_per.max()) if len(p) else 0,
            },
            "scores_observed": {
                s: int(self.visits[s].notna().sum()) for s in SCORES if s in self.visits
            },
            "n_courses": int(len(tr)),
            "courses_by_line_and_treatment": {
                f"line {int(line)}": {
                    str(t): int(n) for t, n in g["treatment"].value_counts().items()
                }
                for line, g in tr.groupby("line")
            },
            "responses": {
                str(k): int(v) for k, v in tr["response"].fillna("missing").value_counts().items()
            },
            "early_sural": {
                "threshold_uv": self.sural_threshold_uv,
                "window_years": self.sural_window_years,
                "reduced": int((sural == True).sum()),  # noqa: E712 (nullable boolean)
                "preserved": int((sural == False).sum()),  # noqa: E712
                "missing": int(sural.isna().sum()),
            },
            "follow_up_years": {
                "min": float(follow.min()) if len(p) else 0.0,
                "median": float(follow.median()) if len(p) else 0.0,
                "max": float(follow.max()) if len(p) else 0.0,
            },
        }
        if self.has_end_of_follow_up:
            from magbayes.cohort.follow_up import follow_up_summary

            summary["end_of_follow_up"] = follow_up_summary(self.follow_up)
        return summary


def early_sural_reduction(
    patients: pd.DataFrame, threshold_uv: float, window_years: float
) -> pd.Series:
    """Early sural reduction per patient: first sural SNAP below a threshold, early enough.

    Parameters
    ----------
    patients : pandas.DataFrame
        Must carry ``sural_snap_uv`` (µV) and ``first_ncs_years`` (years since onset);
        either may be missing for a patient.
    threshold_uv : float
        Amplitude (µV) below which the SNAP counts as reduced (0 µV = absent = reduced).
    window_years : float
        The first nerve conduction study must fall within this many years of onset.

    Returns
    -------
    pandas.Series
        Nullable boolean, indexed like ``patients``: ``True`` reduced, ``False`` preserved,
        ``<NA>`` when the amplitude or the study time is missing or the study fell outside
        the window (the early status is then unknown, never assumed).
    """
    if "sural_snap_uv" not in patients.columns or "first_ncs_years" not in patients.columns:
        return pd.Series(pd.NA, index=patients.index, dtype="boolean")
    snap = pd.to_numeric(patients["sural_snap_uv"], errors="coerce")
    when = pd.to_numeric(patients["first_ncs_years"], errors="coerce")
    known = snap.notna() & when.notna() & (when <= window_years)
    out = pd.Series(pd.NA, index=patients.index, dtype="boolean")
    out[known] = snap[known] < threshold_uv
    return out
