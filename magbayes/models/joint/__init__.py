"""A generic Bayesian joint model: a longitudinal outcome and a time to event.

The hazard follows the current value of each subject's latent trajectory (random
intercept and slope). Nothing here knows about magbayes cohorts.

:mod:`~magbayes.models.joint.data`
    The longitudinal and event tables, checked, as plain arrays (:func:`joint_arrays`,
    :class:`JointData`, :class:`JointDataError`).
:mod:`~magbayes.models.joint.quadrature`
    Gauss-Legendre nodes mapped to each subject's follow-up (:func:`quadrature_nodes`).
:mod:`~magbayes.models.joint.likelihood`
    The event part: log hazard with the current value, cumulative hazard by quadrature,
    right-, exactly- and interval-censored contributions (:func:`event_log_likelihood`).
:mod:`~magbayes.models.joint.model`
    :func:`build_joint_model`, :func:`fit_joint_model`, :func:`subject_log_likelihood`
    and :func:`convergence_summary`; checked against JMbayes2 on pbcseq in
    ``tests/test_joint_core.py`` (docs/models/joint-core.md).

The joint model of a magbayes cohort (``magbayes fit joint``, docs/models/joint.md) is built
on the progression model's trajectory instead: :mod:`~magbayes.models.joint.events` (each
patient's time at risk and outcome, its quadrature nodes),
:mod:`~magbayes.models.joint.cohort_model` (design, model) and
:mod:`~magbayes.models.joint.definition` (its ``DEFINITION``).
"""

from magbayes.models.joint.data import (
    INTERVAL,
    OBSERVED,
    OUTCOMES,
    RIGHT,
    JointData,
    JointDataError,
    joint_arrays,
)
from magbayes.models.joint.likelihood import (
    EventQuadrature,
    baseline_log_hazard,
    cumulative_hazard,
    event_hazard_terms,
    event_log_likelihood,
    event_quadrature,
    log_hazard,
)
from magbayes.models.joint.model import (
    PARAMETRIZATIONS,
    build_joint_model,
    convergence_summary,
    default_grid,
    fit_joint_model,
    subject_log_likelihood,
)
from magbayes.models.joint.quadrature import (
    DEFAULT_NODES,
    QuadratureNodes,
    gauss_legendre,
    quadrature_nodes,
)

__all__ = [
    "DEFAULT_NODES",
    "INTERVAL",
    "OBSERVED",
    "OUTCOMES",
    "PARAMETRIZATIONS",
    "RIGHT",
    "EventQuadrature",
    "JointData",
    "JointDataError",
    "QuadratureNodes",
    "baseline_log_hazard",
    "build_joint_model",
    "convergence_summary",
    "cumulative_hazard",
    "default_grid",
    "event_hazard_terms",
    "event_log_likelihood",
    "event_quadrature",
    "fit_joint_model",
    "gauss_legendre",
    "joint_arrays",
    "log_hazard",
    "quadrature_nodes",
    "subject_log_likelihood",
]
