"""magbayes: Bayesian models of disability in anti-MAG neuropathy.

``import magbayes as mb``; then ``mb.load_cohort(path)``, ``mb.simulate_cohort(...)``,
``mb.fit(cohort, "progression", ...)`` and ``mb.load_fit(path)``.
"""

from __future__ import annotations

from magbayes.errors import CohortError, Problem, SpecError

__version__ = "0.1.0"

__all__ = [
    "CohortError",
    "Problem",
    "SpecError",
    "__version__",
    "fit",
    "load_cohort",
    "load_fit",
    "load_spec",
    "simulate_cohort",
]

_LAZY = {
    "load_cohort": ("magbayes.cohort.read", "load_cohort"),
    "simulate_cohort": ("magbayes.simulate", "simulate_cohort"),
    "fit": ("magbayes.fit", "fit"),
    "load_fit": ("magbayes.fit", "load_fit"),
    "load_spec": ("magbayes.spec", "load_spec"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'magbayes' has no attribute {name!r}")
