"""magbayes: Bayesian models of disability in anti-MAG neuropathy.

``import magbayes as mb``; then ``mb.load_cohort(path)``, ``mb.simulate_cohort(...)``,
``mb.fit(cohort, "progression", ...)``, ``mb.load_fit(path, cohort=None)`` and
``mb.predict(result, cohort, times=..., strategies=...)``.
"""

from __future__ import annotations

from magbayes.errors import (
    CohortError,
    CohortMismatchError,
    Problem,
    ResultsFolderError,
    ResultsLayoutError,
    SpecError,
)

__version__ = "0.1.0"

# Imported eagerly: the submodule ``magbayes.fit`` would otherwise shadow the function
# ``mb.fit`` once anything imports it.
from magbayes.fit import FitResult, fit, load_fit  # noqa: E402
from magbayes.predict import predict  # noqa: E402  (the package would shadow the function)

__all__ = [
    "CohortError",
    "CohortMismatchError",
    "FitResult",
    "Problem",
    "ResultsFolderError",
    "ResultsLayoutError",
    "SpecError",
    "__version__",
    "fit",
    "load_cohort",
    "load_fit",
    "load_spec",
    "predict",
    "simulate_cohort",
]

_LAZY = {
    "load_cohort": ("magbayes.cohort.read", "load_cohort"),
    "simulate_cohort": ("magbayes.simulate", "simulate_cohort"),
    "load_spec": ("magbayes.spec", "load_spec"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'magbayes' has no attribute {name!r}")
