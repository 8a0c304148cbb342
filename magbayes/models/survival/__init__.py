"""A generic Bayesian proportional-hazards core: one likelihood for survival outcomes.

Nothing here knows about magbayes cohorts.

:mod:`~magbayes.models.survival.baselines`
    Baseline hazards (:class:`PiecewiseBaseline`, :class:`WeibullBaseline`,
    :func:`baseline_from_priors`) and piecewise grids.
:mod:`~magbayes.models.survival.data`
    Follow-up as plain arrays: a counting-process table with exact, right- or
    interval-censored times (:func:`counting_process_arrays`), and follow-up checked at
    visits whose outcome is the index of the visit interval holding the event
    (:func:`visit_interval_arrays`); :func:`visit_intervals_of` writes the first as the
    second.
:mod:`~magbayes.models.survival.likelihood`
    The likelihood of a visit-interval outcome (:func:`interval_hazards`,
    :func:`visit_log_hazard`, :func:`visit_interval_log_likelihood`,
    :func:`draw_visit_interval`), which the worsening model runs, and
    :func:`subject_log_likelihood`, the same for a counting-process table.
:mod:`~magbayes.models.survival.model`
    A proportional-hazards model of a counting-process table with an optional cluster
    frailty (:func:`build_counting_process_model`, :func:`fit_counting_process`), checked
    against lifelines on real data in ``tests/test_survival_core.py``.
"""

from magbayes.models.survival.baselines import (
    PiecewiseBaseline,
    WeibullBaseline,
    baseline_from_priors,
    make_grid,
    piece_labels,
    quantile_grid,
)
from magbayes.models.survival.data import (
    EVENT_TYPES,
    INTERVAL,
    OBSERVED,
    RIGHT,
    CountingProcessData,
    CountingProcessError,
    SubjectSegments,
    VisitIntervalData,
    counting_process_arrays,
    split_at,
    visit_interval_arrays,
    visit_intervals_of,
)
from magbayes.models.survival.likelihood import (
    draw_visit_interval,
    exact_event_mask,
    interval_hazards,
    subject_log_likelihood,
    visit_interval_log_likelihood,
    visit_log_hazard,
)
from magbayes.models.survival.model import build_counting_process_model, fit_counting_process

__all__ = [
    "EVENT_TYPES",
    "INTERVAL",
    "OBSERVED",
    "RIGHT",
    "CountingProcessData",
    "CountingProcessError",
    "PiecewiseBaseline",
    "SubjectSegments",
    "VisitIntervalData",
    "WeibullBaseline",
    "baseline_from_priors",
    "build_counting_process_model",
    "counting_process_arrays",
    "draw_visit_interval",
    "exact_event_mask",
    "fit_counting_process",
    "interval_hazards",
    "make_grid",
    "piece_labels",
    "quantile_grid",
    "split_at",
    "subject_log_likelihood",
    "visit_interval_arrays",
    "visit_interval_log_likelihood",
    "visit_intervals_of",
    "visit_log_hazard",
]
