"""Write ``posterior_reference.json``: the posterior summary of each default model's shared fit.

The fits are the session fixtures' (``tests/shared_fits.py``): the same cohorts, specs,
sampler settings and seeds. For each model the file keeps, for every element of its
population-level parameters, the posterior mean and sd with their Monte Carlo standard
errors, and the headline probability with its MCSE. ``tests/test_posterior_reference.py``
compares the fixtures' fits with it.

Run from the repository root, on the code whose posteriors are the reference::

    .venv/bin/python tests/data/make_posterior_reference.py

Write it again only when a change of the models is meant to change their posteriors.
"""

from __future__ import annotations

import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for shared_fits

from shared_fits import (  # noqa: E402
    HEADLINE,
    PROGRESSION_RUN,
    RESPONSE_RUN,
    WORSENING_RUN,
    fit_worsening,
    posterior_summary,
    response_cohort,
    shared_progression_fit,
    shared_response_fit,
    worsening_cohort,
    write_progression_cohort,
)

REFERENCE = HERE / "posterior_reference.json"


def reference_entry(result, settings: dict) -> dict:
    """What the reference keeps of one fit."""
    names = result.summary_vars()
    table = posterior_summary(result.posterior, names)
    headline = result.headline()
    return {
        "sampler": settings,
        "variables": names,
        "parameters": {
            label: {key: (None if value != value else float(value)) for key, value in row.items()}
            for label, row in table.to_dict(orient="index").items()
        },
        "headline": {"probability": float(headline[HEADLINE]), "mcse": float(headline["mcse"])},
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        progression = shared_progression_fit(write_progression_cohort(Path(folder) / "cohort"))
        entries = {"progression": reference_entry(progression, PROGRESSION_RUN)}
    entries["worsening"] = reference_entry(fit_worsening(worsening_cohort().cohort), WORSENING_RUN)
    entries["response"] = reference_entry(
        shared_response_fit(response_cohort().cohort), RESPONSE_RUN
    )
    payload = {
        "made_by": "tests/data/make_posterior_reference.py",
        "versions": {name: version(name) for name in ("pymc", "pytensor", "nutpie", "arviz")},
        "models": entries,
    }
    REFERENCE.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    main()
