"""Fits shared by the whole test session (bambi's pattern: fit once, read many times).

Each default model is fitted once, on one small simulated cohort (``shared_fits.py`` says
which and with what settings); the tests that read a fit without testing its model's
structure take these fixtures instead of fitting their own, so the session compiles fewer
models. A test that takes one of them fits a model and must be marked ``slow``
(``make test-fast`` leaves those out); collection stops when one is not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_fits import (
    fit_joint,
    fit_worsening,
    joint_sim,
    response_cohort,
    shared_progression_fit,
    shared_response_fit,
    worsening_cohort,
    write_joint_cohort,
    write_progression_cohort,
)

from magbayes import FitResult
from magbayes.cohort.tables import Cohort
from magbayes.simulate import SimulatedCohort

#: The fixtures that fit a model (directly or through another fixture).
FITTED = {"progression_fit", "response_fit", "worsening_fit", "joint_fit"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that reads a shared fit but is not marked ``slow``."""
    unmarked = [
        item.nodeid
        for item in items
        if FITTED & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests read a shared fit and must be marked @pytest.mark.slow: "
            + ", ".join(unmarked)
        )


@pytest.fixture(scope="session")
def progression_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """25 simulated patients written to disk and read back (so the cohort has a SHA-256)."""
    return write_progression_cohort(tmp_path_factory.mktemp("progression_cohort"))


@pytest.fixture(scope="session")
def progression_fit(
    progression_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FitResult, Path]:
    """(result, folder): the default progression spec fitted to ``progression_cohort`` (2 x
    100 draws, seed 5), saved with its report. Tests copy the folder before changing it."""
    result = shared_progression_fit(progression_cohort)
    folder = tmp_path_factory.mktemp("progression_fit") / "results"
    result.save(folder, report=True)
    return result, folder


@pytest.fixture(scope="session")
def response_sim() -> SimulatedCohort:
    """47 simulated patients at two sites (the seed study's size), default effects."""
    return response_cohort()


@pytest.fixture(scope="session")
def response_fit(response_sim: SimulatedCohort) -> FitResult:
    """The default response spec fitted to ``response_sim`` (2 x 200 draws, seed 4)."""
    return shared_response_fit(response_sim.cohort)


@pytest.fixture(scope="session")
def worsening_sim() -> SimulatedCohort:
    """47 simulated patients at two sites, worsening from the hazard model (seed 4)."""
    return worsening_cohort()


@pytest.fixture(scope="session")
def worsening_fit(worsening_sim: SimulatedCohort) -> FitResult:
    """The default (piecewise) worsening spec fitted to ``worsening_sim`` (2 x 300 draws)."""
    return fit_worsening(worsening_sim.cohort)


@pytest.fixture(scope="session")
def joint_simulated() -> SimulatedCohort:
    """90 simulated patients with death depending on disability (``shared_fits.joint_sim``)."""
    return joint_sim()


@pytest.fixture(scope="session")
def joint_cohort(
    joint_simulated: SimulatedCohort, tmp_path_factory: pytest.TempPathFactory
) -> Cohort:
    """``joint_simulated`` written to disk and read back (so the cohort has a SHA-256)."""
    return write_joint_cohort(joint_simulated, tmp_path_factory.mktemp("joint_cohort"))


@pytest.fixture(scope="session")
def joint_fit(
    joint_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FitResult, Path]:
    """(result, folder): the default joint spec fitted to ``joint_cohort`` (2 x 300 draws,
    seed 3), saved without its report. Tests copy the folder before changing it."""
    result = fit_joint(joint_cohort)
    folder = tmp_path_factory.mktemp("joint_fit") / "results"
    result.save(folder, report=False)
    return result, folder
