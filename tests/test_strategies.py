"""Treatment strategies: the kinds on hand-made tables, the TOML loader, the cohort.

No model is fitted.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from test_docs import read_blocks

from magbayes.errors import SpecError
from magbayes.predict import (
    DEFAULT_STRATEGIES,
    Strategy,
    apply_strategy,
    apply_to_cohort,
    first_rise_years,
    load_strategies,
)
from magbayes.simulate import simulate_cohort


def courses(*rows):
    """One patient's courses from (treatment, line, start) triples."""
    return pd.DataFrame(
        {
            "patient_id": "P1",
            "treatment": [r[0] for r in rows],
            "line": [r[1] for r in rows],
            "start_years": [float(r[2]) for r in rows],
            "stop_years": [float(r[2]) + 0.5 for r in rows],
            "response": pd.array(["good"] * len(rows), dtype="string"),
            "source_row": np.arange(2, len(rows) + 2),
        }
    )


def visits(years, incat):
    return pd.DataFrame(
        {
            "patient_id": "P1",
            "years_since_onset": [float(y) for y in years],
            "incat": pd.array(incat, dtype="Int64"),
        }
    )


HISTORY = courses(("ivig", 1, 1.0), ("rituximab", 2, 3.0), ("chlorambucil", 3, 5.0))
VISITS = visits([0.5, 1.5, 2.5, 4.0, 6.0], [2, 2, 3, 4, None])


def course_list(frame):
    return list(zip(frame["treatment"], frame["line"], frame["start_years"], strict=True))


# ----------------------------------------------------------------------------- kinds


def test_as_observed_returns_the_courses_unchanged():
    out = apply_strategy(Strategy("seen", "as_observed"), HISTORY, VISITS, now=6.0)
    pd.testing.assert_frame_equal(out, HISTORY)


def test_never_removes_rituximab_and_later_lines_move_up():
    out = apply_strategy(Strategy("no", "never"), HISTORY, VISITS, now=6.0)
    assert course_list(out) == [("ivig", 1, 1.0), ("chlorambucil", 2, 5.0)]
    assert out["response"].tolist() == ["good", "good"]  # other courses as observed
    assert out["source_row"].tolist() == [2, 4]


def test_at_year_replaces_rituximab_and_pushes_ivig_to_line_two():
    out = apply_strategy(
        Strategy("early", "at_year", years_since_onset=0.5), HISTORY, VISITS, now=6
    )
    assert course_list(out) == [
        ("rituximab", 1, 0.5),
        ("ivig", 2, 1.0),
        ("chlorambucil", 3, 5.0),
    ]


def test_an_added_course_has_the_columns_the_table_needs():
    out = apply_strategy(Strategy("late", "at_year", years_since_onset=8), HISTORY, VISITS, now=6)
    added = out[out["treatment"] == "rituximab"].iloc[0]
    assert added["patient_id"] == "P1"
    assert added["start_years"] == 8.0 and added["line"] == 3
    assert added["response"] == "unknown"
    assert np.isnan(added["stop_years"])
    assert pd.isna(added["source_row"])  # the course is in no file
    assert list(out.columns) == list(HISTORY.columns)


def test_a_patient_without_courses_gets_one_with_the_columns_added():
    bare = HISTORY[["patient_id", "treatment", "line", "start_years"]].iloc[:0]
    out = apply_strategy(Strategy("p", "at_year", years_since_onset=1), bare, VISITS, now=6)
    assert course_list(out) == [("rituximab", 1, 1.0)]
    assert out["patient_id"].tolist() == ["P1"]
    assert out["response"].tolist() == ["unknown"]


def test_courses_sharing_a_line_still_share_it_and_an_emptied_line_disappears():
    combined = courses(
        ("ivig", 1, 1.0),
        ("rituximab", 2, 2.0),
        ("cyclophosphamide", 2, 2.0),
        ("rituximab", 3, 4.0),
        ("plasma_exchange", 4, 6.0),
    )
    out = apply_strategy(Strategy("no", "never"), combined, VISITS, now=6.0)
    assert course_list(out) == [
        ("ivig", 1, 1.0),
        ("cyclophosphamide", 2, 2.0),
        ("plasma_exchange", 3, 6.0),
    ]


def test_next_visit_starts_at_the_first_visit_after_now_and_keeps_the_past():
    out = apply_strategy(Strategy("next", "next_visit"), HISTORY, VISITS, now=3.5)
    # the course at 3.0 is before now: kept; the new one at the visit of year 4.0
    assert course_list(out) == [
        ("ivig", 1, 1.0),
        ("rituximab", 2, 3.0),
        ("rituximab", 3, 4.0),
        ("chlorambucil", 4, 5.0),
    ]


def test_next_visit_removes_rituximab_started_after_now():
    out = apply_strategy(Strategy("next", "next_visit"), HISTORY, VISITS, now=2.0)
    assert course_list(out) == [("ivig", 1, 1.0), ("rituximab", 2, 2.5), ("chlorambucil", 3, 5.0)]


def test_next_visit_without_a_later_visit_starts_at_now():
    out = apply_strategy(Strategy("next", "next_visit"), HISTORY, VISITS, now=6.0)
    assert ("rituximab", 4, 6.0) in course_list(out)
    out = apply_strategy(Strategy("next", "next_visit"), HISTORY, VISITS, now=7.25)
    assert course_list(out)[-1] == ("rituximab", 4, 7.25)


def test_on_rise_starts_at_the_first_visit_risen_enough():
    out = apply_strategy(Strategy("rise", "on_rise", incat_rise=2), HISTORY, VISITS, now=6)
    assert course_list(out) == [("ivig", 1, 1.0), ("rituximab", 2, 4.0), ("chlorambucil", 3, 5.0)]


def test_on_rise_is_measured_from_the_first_visit_with_a_score():
    unscored_first = visits([0.5, 1.5, 2.5, 4.0], [None, 4, 5, 6])
    out = apply_strategy(Strategy("rise", "on_rise", incat_rise=2), HISTORY, unscored_first, now=6)
    assert ("rituximab", 2, 4.0) in course_list(out)


def test_on_rise_without_a_rise_means_no_rituximab():
    flat = visits([0.5, 1.5, 2.5, 4.0], [3, 4, None, 2])
    out = apply_strategy(Strategy("rise", "on_rise", incat_rise=2), HISTORY, flat, now=6)
    assert course_list(out) == [("ivig", 1, 1.0), ("chlorambucil", 2, 5.0)]


def test_first_rise_years_reads_simulated_draws():
    years = np.array([0.0, 1.0, 2.0, 3.0])
    draws = np.array([[1, 2, 3, 4], [2, 2, 2, 2], [np.nan, 0, 1, 2]], float)
    when = first_rise_years(years, draws, 2)
    np.testing.assert_array_equal(when, [2.0, np.nan, 3.0])


def test_apply_strategy_refuses_two_patients_and_a_bad_now():
    two = pd.concat([HISTORY, HISTORY.assign(patient_id="P2")], ignore_index=True)
    with pytest.raises(ValueError, match="one patient"):
        apply_strategy(Strategy("no", "never"), two, VISITS, now=1.0)
    with pytest.raises(ValueError, match="now must be a time since onset"):
        apply_strategy(Strategy("no", "never"), HISTORY, VISITS, now=-1.0)
    with pytest.raises(ValueError, match="no column start_years"):
        apply_strategy(Strategy("no", "never"), HISTORY.drop(columns="start_years"), VISITS, now=1)


# ----------------------------------------------------------------------------- Strategy


def test_at_year_before_onset_is_refused():
    with pytest.raises(ValueError, match="cannot start before onset"):
        Strategy("too early", "at_year", years_since_onset=-0.5)


def test_a_strategy_names_the_parameter_its_kind_needs_or_does_not_take():
    with pytest.raises(ValueError, match="kind 'on_rise' needs `incat_rise`"):
        Strategy("rise", "on_rise")
    with pytest.raises(ValueError, match="`years_since_onset` is not a parameter of kind 'never'"):
        Strategy("no", "never", years_since_onset=2.0)
    with pytest.raises(ValueError, match="did you mean 'at_year'"):
        Strategy("x", "at_yaer", years_since_onset=2.0)


def test_defaults_are_prompt_delayed_and_never():
    by_name = {s.name: s for s in DEFAULT_STRATEGIES}
    assert list(by_name) == ["prompt", "delayed", "never"]
    assert (by_name["prompt"].kind, by_name["prompt"].years_since_onset) == ("at_year", 1.0)
    assert (by_name["delayed"].kind, by_name["delayed"].years_since_onset) == ("at_year", 4.6)
    assert by_name["never"].kind == "never"


# ----------------------------------------------------------------------------- file


def toml_example() -> str:
    return next(b.text for b in read_blocks("predictions.md") if b.language == "toml")


def write(tmp_path, text):
    path = tmp_path / "strategies.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path):
    with pytest.raises(SpecError) as caught:
        load_strategies(path)
    assert str(path) in str(caught.value)
    return caught.value.problems


def test_the_documented_file_loads(tmp_path):
    loaded = load_strategies(write(tmp_path, toml_example()))
    assert loaded == [
        Strategy("prompt", "at_year", years_since_onset=1.0),
        Strategy("next visit", "next_visit"),
        Strategy("on a rise of 2", "on_rise", incat_rise=2),
        Strategy("never", "never"),
    ]


def test_a_strategy_round_trips_through_its_table(tmp_path):
    lines = []
    for strategy in DEFAULT_STRATEGIES:
        lines.append("[[strategy]]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in strategy.as_dict().items()]
    assert load_strategies(write(tmp_path, "\n".join(lines))) == list(DEFAULT_STRATEGIES)


def test_a_typo_names_the_table_and_the_closest_key(tmp_path):
    path = write(
        tmp_path,
        '[[strategy]]\nname = "never"\nkind = "never"\n\n'
        '[[strategy]]\nname = "prompt"\nkind = "at_year"\nyears_since_onst = 1.0\n',
    )
    problems = problems_of(path)
    assert (
        "[[strategy]] 2 ('prompt'): `years_since_onst` is not a key of a strategy; "
        "did you mean `years_since_onset`?"
    ) in problems


def test_a_wrong_type_is_refused(tmp_path):
    path = write(tmp_path, '[[strategy]]\nname = "rise"\nkind = "on_rise"\nincat_rise = "two"\n')
    (problem,) = problems_of(path)
    assert problem.startswith("[[strategy]] 1 ('rise'): `incat_rise` must be a whole number")
    assert problem.endswith("not 'two'")


def test_a_duplicate_name_is_refused(tmp_path):
    path = write(
        tmp_path,
        '[[strategy]]\nname = "a"\nkind = "never"\n'
        '[[strategy]]\nname = "a"\nkind = "as_observed"\n',
    )
    (problem,) = problems_of(path)
    assert "[[strategy]] 2 ('a'): the name 'a' is already used by [[strategy]] 1" in problem


def test_an_unknown_kind_names_the_closest(tmp_path):
    path = write(tmp_path, '[[strategy]]\nname = "n"\nkind = "nevr"\n')
    (problem,) = problems_of(path)
    assert "`kind` must be one of 'as_observed'" in problem
    assert problem.endswith("did you mean 'never'?")


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        "strategies = 1\n"
        '[[strategy]]\nname = "prompt"\nkind = "at_year"\nyears_since_onset = -1\n'
        '[[strategy]]\nkind = "on_rise"\n'
        '[[strategy]]\nname = "prompt"\nkind = "never"\nincat_rise = 2\n',
    )
    with pytest.raises(SpecError) as caught:
        load_strategies(path)
    problems = caught.value.problems
    assert len(problems) == 6, problems
    assert str(caught.value).startswith(f"{path}: 6 problems in the strategy file:")
    joined = "\n".join(problems)
    for expected in (
        "`strategies` is not part of a strategy file",
        "[[strategy]] 1 ('prompt'): `years_since_onset` must be a number of years since onset",
        "[[strategy]] 2: `name` is missing",
        "[[strategy]] 2: kind 'on_rise' needs `incat_rise`",
        "[[strategy]] 3 ('prompt'): `incat_rise` is not a parameter of kind 'never'",
        "[[strategy]] 3 ('prompt'): the name 'prompt' is already used by [[strategy]] 1",
    ):
        assert expected in joined


def test_a_file_that_is_not_toml_or_names_no_strategy_is_refused(tmp_path):
    with pytest.raises(SpecError, match="not valid UTF-8 TOML"):
        load_strategies(write(tmp_path, "[[strategy]\nname = 1"))
    assert problems_of(write(tmp_path, "")) == ["no [[strategy]] table: the file names no strategy"]
    with pytest.raises(SpecError, match="no such file"):
        load_strategies(tmp_path / "absent.toml")


# ----------------------------------------------------------------------------- cohort


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(n_patients=20, seed=1).cohort


def test_as_observed_leaves_the_cohort_treatments_identical(cohort):
    seen = apply_to_cohort(Strategy("seen", "as_observed"), cohort)
    pd.testing.assert_frame_equal(seen.treatments, cohort.treatments)
    pd.testing.assert_frame_equal(seen.visits, cohort.visits)
    pd.testing.assert_frame_equal(seen.patients, cohort.patients)
    assert (seen.source, seen.sha256, seen.file_format) == (
        cohort.source,
        cohort.sha256,
        cohort.file_format,
    )


def test_never_leaves_no_rituximab_and_keeps_the_rest(cohort):
    assert cohort.treatments["treatment"].eq("rituximab").any()  # else the test shows nothing
    never = apply_to_cohort(Strategy("no", "never"), cohort)
    assert not never.treatments["treatment"].eq("rituximab").any()
    others = cohort.treatments[cohort.treatments["treatment"] != "rituximab"]
    assert len(never.treatments) == len(others)
    pd.testing.assert_frame_equal(never.visits, cohort.visits)


def test_at_year_gives_every_patient_one_course_at_that_time(cohort):
    prompt = apply_to_cohort(DEFAULT_STRATEGIES[0], cohort)
    rituximab = prompt.treatments[prompt.treatments["treatment"] == "rituximab"]
    assert sorted(rituximab["patient_id"]) == sorted(cohort.patient_ids)
    assert (rituximab["start_years"] == 1.0).all()
    lines = prompt.treatments.groupby("patient_id")["line"]
    assert lines.apply(lambda s: sorted(s) == list(range(1, len(s) + 1))).all()


def test_now_is_each_patients_last_visit_unless_given(cohort):
    last = cohort.visits.groupby("patient_id")["years_since_onset"].max()
    nxt = apply_to_cohort(Strategy("next", "next_visit"), cohort)
    added = nxt.treatments[nxt.treatments["source_row"].isna()].set_index("patient_id")
    added = added["start_years"]
    pd.testing.assert_series_equal(added.sort_index(), last.sort_index(), check_names=False)
    given = {pid: 0.0 for pid in cohort.patient_ids}
    first = cohort.visits.groupby("patient_id")["years_since_onset"].min()
    nxt = apply_to_cohort(Strategy("next", "next_visit"), cohort, now=given)
    added = nxt.treatments[nxt.treatments["source_row"].isna()].set_index("patient_id")
    pd.testing.assert_series_equal(
        added["start_years"].sort_index(), first.sort_index(), check_names=False
    )
    with pytest.raises(ValueError, match="now gives no time for patient"):
        apply_to_cohort(Strategy("next", "next_visit"), cohort, now={"P001": 1.0})


def test_the_documented_example_runs(tmp_path, monkeypatch):
    write(tmp_path, toml_example())
    monkeypatch.chdir(tmp_path)
    code = next(b.text for b in read_blocks("predictions.md") if b.language == "python")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "predictions.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "prompt: rituximab at year 1 since onset; 20 of 20 patients start rituximab"
    assert lines[-1] == "never: never rituximab; 0 of 20 patients start rituximab"
