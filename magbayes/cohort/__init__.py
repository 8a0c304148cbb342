"""Cohort tables: reading, validating and deriving per-patient fields."""

from magbayes.cohort.tables import (
    PATTERNS,
    RESPONSES,
    SCORES,
    TREATMENTS,
    Cohort,
)

__all__ = ["Cohort", "PATTERNS", "RESPONSES", "SCORES", "TREATMENTS", "load_cohort"]


def __getattr__(name: str):
    if name == "load_cohort":
        from magbayes.cohort.read import load_cohort

        return load_cohort
    raise AttributeError(name)
