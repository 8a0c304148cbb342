"""Predictions for a patient under treatment strategies.

:func:`predict` (``mb.predict``): a fit's predictions for a cohort's patients, fitted or
new, at given times under each strategy; :func:`write_predictions` writes them
(``magbayes predict``).

:mod:`magbayes.predict.strategies`: treatment strategies as data (:class:`Strategy`,
:data:`DEFAULT_STRATEGIES`, :func:`load_strategies`), applied to one patient's own
treatment history (:func:`apply_strategy`) or to every patient of a cohort
(:func:`apply_to_cohort`).
"""

from magbayes.predict.run import DEFAULT_TIMES, parse_times, predict, write_predictions
from magbayes.predict.strategies import (
    DEFAULT_STRATEGIES,
    KINDS,
    Strategy,
    apply_strategy,
    apply_to_cohort,
    first_rise_years,
    load_strategies,
    rituximab_start_years,
)

__all__ = [
    "DEFAULT_STRATEGIES",
    "DEFAULT_TIMES",
    "KINDS",
    "Strategy",
    "apply_strategy",
    "apply_to_cohort",
    "first_rise_years",
    "load_strategies",
    "parse_times",
    "predict",
    "rituximab_start_years",
    "write_predictions",
]
