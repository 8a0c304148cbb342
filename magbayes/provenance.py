"""What ties a results folder to its data and to the magbayes that wrote it.

A results folder's ``manifest.json`` records ``data_sha256``, the digest of the cohort it was
fitted to, and ``layout_version``, the version of the results layout it was written in.
:func:`magbayes.load_fit` checks both: a folder of another layout is refused (never misread),
and so is a cohort other than the one fitted.

The digest of a cohort read from files is that of its files, as the reader computes it
(:func:`magbayes.cohort.read.cohort_sha256`). A cohort made in memory (``simulate_cohort``,
``Cohort.from_frames``) has no files: its digest is that of its tables written canonically
(see :func:`tables_sha256`). The two kinds of digest differ for the same data, so a fit of
an in-memory cohort is tied to that cohort in memory, not to files written from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magbayes.errors import CohortMismatchError, ResultsLayoutError

if TYPE_CHECKING:
    from magbayes.cohort.tables import Cohort

#: Version of the results folder's layout (files, groups, manifest keys) this magbayes writes
#: and reads. Folders written before layouts were numbered have none: layout 1.
RESULTS_LAYOUT = 2

#: Columns the cohort derives from its tables (they follow the early-sural definition), and
#: the row numbers of the files: not part of a cohort's data.
_NOT_DATA = {"sural_reduced", "n_treatment_lines", "n_visits", "follow_up_years", "source_row"}


def tables_sha256(cohort: Cohort) -> str:
    """SHA-256 of a cohort's tables, independent of how they were made.

    Each table (patients, visits, treatments) as CSV: its columns sorted by name, without
    the derived columns and the files' row numbers, numbers written with 17 significant
    digits, missing values empty; the three hashed as named files (as
    :func:`magbayes.cohort.read.sha256_of` does).
    """
    from magbayes.cohort.read import sha256_of

    contents = []
    for name in ("patients", "visits", "treatments"):
        table = getattr(cohort, name)
        columns = sorted(c for c in table.columns if c not in _NOT_DATA)
        text = table[columns].to_csv(
            index=name == "patients", lineterminator="\n", float_format="%.17g"
        )
        contents.append((name, text.encode("utf-8")))
    return sha256_of(contents)


def cohort_digest(cohort: Cohort | str | Path) -> str:
    """The digest a results folder records for its cohort.

    Parameters
    ----------
    cohort : Cohort or path
        A cohort (its files' SHA-256 when it was read from files, else :func:`tables_sha256`),
        or the path of a cohort folder or workbook (its files' SHA-256).

    Returns
    -------
    str
        Hex digest (64 characters).
    """
    from magbayes.cohort.tables import Cohort

    if not isinstance(cohort, Cohort):
        from magbayes.cohort.read import cohort_sha256

        return cohort_sha256(cohort)
    return cohort.sha256 or tables_sha256(cohort)


def check_layout(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Refuse a results folder written in another results layout.

    Raises
    ------
    ResultsLayoutError
        When the manifest's ``layout_version`` is missing (layout 1) or not
        :data:`RESULTS_LAYOUT`.
    """
    found = manifest.get("layout_version", 1)
    if found == RESULTS_LAYOUT and type(found) is int:
        return
    written_by = manifest.get("magbayes_version") or "an unknown version"
    raise ResultsLayoutError(
        f"results folder {folder} was written with results layout {found} by magbayes "
        f"{written_by}; this magbayes reads layout {RESULTS_LAYOUT}; refit"
    )


def check_cohort(folder: str | Path, manifest: dict[str, Any], cohort: Cohort | str | Path) -> None:
    """Refuse a cohort other than the one a results folder was fitted to.

    Raises
    ------
    CohortMismatchError
        When the cohort's digest (:func:`cohort_digest`) differs from the manifest's
        ``data_sha256``; the message names both.
    """
    recorded = manifest.get("data_sha256") or "(none recorded)"
    given = cohort_digest(cohort)
    if given == recorded:
        return
    source = cohort.source if not isinstance(cohort, str | Path) else str(cohort)
    raise CohortMismatchError(
        f"results folder {folder} was fitted to the cohort with SHA-256 {recorded}, "
        f"not to {source} (SHA-256 {given}); give the cohort it was fitted to, or refit"
    )
