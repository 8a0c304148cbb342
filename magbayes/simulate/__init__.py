"""Calibrated simulator of anti-MAG neuropathy cohorts with known true parameters.

``simulate_cohort(...)`` returns a :class:`SimulatedCohort`: the :class:`~magbayes.cohort.Cohort`,
the tables as written, and ``truth`` (the content of ``truth.json``). See
``docs/simulator.md`` for every default, its source and the generative equations.
"""

from magbayes.simulate.parameters import DEFAULT_SURAL_RITUXIMAB_EFFECT
from magbayes.simulate.simulator import SimulatedCohort, simulate_cohort

__all__ = ["DEFAULT_SURAL_RITUXIMAB_EFFECT", "SimulatedCohort", "simulate_cohort"]
