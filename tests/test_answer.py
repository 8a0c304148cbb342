"""magbayes answer: three models on one cohort, reported side by side, never averaged."""

from __future__ import annotations

import json

import pytest

import magbayes as mb
from magbayes.analyses.answer import agreement, verdict
from magbayes.cli import main


def entry(p):
    return {"verdict": verdict(p), "headline": {"p_sural_predicts_rituximab_benefit": p}}


def test_verdicts_follow_the_probability():
    assert verdict(0.95) == "supports"
    assert verdict(0.05) == "against"
    assert verdict(0.6) == "inconclusive"


def test_disagreement_is_stated_not_averaged():
    said = agreement({"progression": entry(0.95), "worsening": entry(0.5), "response": entry(0.2)})
    assert said["agree"] is False
    assert "disagree" in said["text"]
    assert "progression supports (P = 0.95)" in said["text"]
    assert "not averaged" in said["text"]
    # no number in the text is the mean of the three
    assert "0.55" not in said["text"]


def test_agreement_when_all_point_the_same_way():
    said = agreement({"progression": entry(0.97), "worsening": entry(0.93)})
    assert said["agree"] is True
    assert said["text"] == "All models support the hypothesis."


@pytest.mark.slow
def test_answer_command_writes_three_fits_and_one_page(tmp_path):
    cohort_dir = tmp_path / "cohort"
    mb.simulate_cohort(n_patients=30, seed=8).write(cohort_dir)
    out = tmp_path / "answer"
    status = main(
        [
            "answer",
            "--data",
            str(cohort_dir),
            "--out",
            str(out),
            "--seed",
            "3",
            "--draws",
            "60",
            "--tune",
            "60",
            "--chains",
            "1",
        ]
    )
    # 60 draws cannot pass the ESS gate: exit 3, and everything is still written
    assert status == 3
    payload = json.loads((out / "answer.json").read_text())
    assert set(payload["models"]) == {"progression", "worsening", "response"}
    page = (out / "answer.md").read_text()
    for name, model in payload["models"].items():
        assert (out / name / "posterior.nc").is_file()
        assert (out / name / "report.html").is_file()
        p = model["headline"]["p_sural_predicts_rituximab_benefit"]
        assert 0.0 <= p <= 1.0
        assert model["sentence"].startswith(f"Given this cohort and the {name} model")
        assert f"{p:.2f}" in model["sentence"]
        assert f"| {name} | {p:.3f} |" in page
    assert payload["all_converged"] is False
    assert "failed its convergence checks" in page
    assert payload["models"]["response"]["prior_sensitivity"]
    assert (out / "response" / "prior_sensitivity.csv").is_file()
    assert payload["agreement"]["text"] in page
