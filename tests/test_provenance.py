"""What ties a results folder to its cohort and to its layout (magbayes.provenance).

Fast checks on simulated cohorts and hand-written manifests; the end-to-end checks on a
saved fit are in test_report.py (they share its fit).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

import magbayes as mb
from magbayes.cli import main
from magbayes.cohort.read import cohort_sha256
from magbayes.cohort.tables import Cohort
from magbayes.provenance import (
    RESULTS_LAYOUT,
    check_cohort,
    check_layout,
    cohort_digest,
    tables_sha256,
)


def _with_one_score_changed(cohort: Cohort) -> Cohort:
    visits = cohort.visits.copy()
    visits.loc[0, "incat"] = (int(visits.loc[0, "incat"]) + 1) % 10
    return Cohort.from_frames(cohort.patients.reset_index(), visits, cohort.treatments)


def test_an_in_memory_cohort_is_digested_from_its_tables():
    cohort = mb.simulate_cohort(n_patients=6, seed=3).cohort
    assert cohort.sha256 == ""
    digest = cohort_digest(cohort)
    assert len(digest) == 64
    assert cohort_digest(mb.simulate_cohort(n_patients=6, seed=3).cohort) == digest
    # the early-sural definition derives columns; it does not change the data
    assert cohort_digest(cohort.with_sural_definition(5.0, 3.0)) == digest
    assert cohort_digest(_with_one_score_changed(cohort)) != digest


def test_a_cohort_read_from_files_is_digested_from_its_files(tmp_path):
    mb.simulate_cohort(n_patients=6, seed=3).write(tmp_path / "cohort", overwrite=True)
    cohort = mb.load_cohort(tmp_path / "cohort")
    assert cohort_digest(cohort) == cohort.sha256 == cohort_sha256(tmp_path / "cohort")
    assert cohort_digest(tmp_path / "cohort") == cohort.sha256
    assert tables_sha256(cohort) != cohort.sha256  # another kind of digest


def test_a_cohort_other_than_the_fitted_one_is_refused_naming_both_digests():
    cohort = mb.simulate_cohort(n_patients=6, seed=3).cohort
    manifest = {"data_sha256": cohort_digest(cohort)}
    check_cohort("results", manifest, cohort)
    changed = _with_one_score_changed(cohort)
    with pytest.raises(mb.CohortMismatchError) as refused:
        check_cohort("results", manifest, changed)
    assert manifest["data_sha256"] in str(refused.value)
    assert cohort_digest(changed) in str(refused.value)


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        ({"magbayes_version": "0.1.0"}, "written with results layout 1 by magbayes 0.1.0"),
        ({"layout_version": RESULTS_LAYOUT + 1}, f"results layout {RESULTS_LAYOUT + 1}"),
        ({"layout_version": str(RESULTS_LAYOUT)}, f"results layout {RESULTS_LAYOUT}"),
    ],
)
def test_a_manifest_of_another_layout_is_refused(manifest, said):
    check_layout("results", {"layout_version": RESULTS_LAYOUT})
    with pytest.raises(mb.ResultsLayoutError, match=said) as refused:
        check_layout("results", manifest)
    assert f"this magbayes reads layout {RESULTS_LAYOUT}; refit" in str(refused.value)


def test_report_refuses_a_folder_of_another_layout_with_exit_2(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "posterior.nc").write_bytes(b"written by an older magbayes")
    (folder / "manifest.json").write_text(json.dumps({"magbayes_version": "0.1.0"}))
    assert main(["report", str(folder)]) == 2
    assert "written with results layout 1 by magbayes 0.1.0" in capsys.readouterr().err
    assert main(["compare", str(folder), str(folder)]) == 2


def test_tables_digest_ignores_column_order_and_the_files_row_numbers():
    cohort = mb.simulate_cohort(n_patients=6, seed=3).cohort
    visits = cohort.visits[list(reversed(cohort.visits.columns))].copy()
    visits["source_row"] = range(100, 100 + len(visits))
    shuffled = Cohort.from_frames(
        cohort.patients.reset_index(), pd.DataFrame(visits), cohort.treatments
    )
    assert tables_sha256(shuffled) == tables_sha256(cohort)
