"""Likelihoods of a disability score given the latent disability, and their sampling.

Two families, chosen by the spec's ``[outcome] likelihood``:

``ordered_logistic``
    Integer scales (INCAT 0-10, ONLS 0-12, mRS 0-6): P(score <= k) = logistic(c_k - eta)
    with ordered cutpoints ``c``.
``beta``
    The I-RODS centile (0-100, higher = *less* disability): centile/100 ~ Beta with mean
    logistic(-eta) and a precision; centiles of exactly 0 or 100 are moved half a centile
    inwards.

Both work on arrays laid out as (patient, visit slot) with a mask of observed cells, so the
log-likelihood can be summed per patient.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit

from magbayes.cohort.tables import SCORES
from magbayes.errors import SpecError

LIKELIHOODS = ("ordered_logistic", "beta")


def likelihood_for(score: str, requested: str = "auto") -> str:
    """The likelihood family for a score (``auto`` picks by the score's type)."""
    if score not in SCORES:
        raise SpecError(f"[outcome] score must be one of {', '.join(SCORES)}, not {score!r}")
    integer = SCORES[score][2]
    if requested == "auto":
        return "ordered_logistic" if integer else "beta"
    if requested not in LIKELIHOODS:
        raise SpecError(f"[outcome] likelihood must be auto, {' or '.join(LIKELIHOODS)}")
    if requested == "ordered_logistic" and not integer:
        raise SpecError(f"score {score!r} is not an integer scale: use likelihood = 'beta'")
    if requested == "beta" and integer:
        raise SpecError(f"score {score!r} is an integer scale: use 'ordered_logistic'")
    return requested


def n_categories(score: str) -> int:
    """Number of categories of an integer scale (INCAT: 11)."""
    low, high, _ = SCORES[score]
    return int(high - low + 1)


def centile_to_unit(centile: np.ndarray) -> np.ndarray:
    """I-RODS centile (0-100) to the open unit interval, half a centile in from the ends."""
    return np.clip(np.asarray(centile, float), 0.5, 99.5) / 100.0


def cell_logp(
    family: str, value: pt.TensorVariable, eta: pt.TensorVariable, params: list
) -> pt.TensorVariable:
    """Log-probability of each observed score (same shape as ``eta``).

    For the ordered logistic, with ``a = c[y] - eta`` and ``b = c[y - 1] - eta`` (the
    cutpoints above and below category ``y``, infinite beyond the ends),
    ``P(y) = sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a))``, whose
    log is computed without forming the full category-probability matrix.
    """
    if family == "ordered_logistic":
        (cutpoints,) = params
        # With a signature, the cutpoints may arrive broadcast along the batch (patient)
        # dimension; every row is the same vector, so take the first.
        while cutpoints.ndim > 1:
            cutpoints = cutpoints[0]
        edge = pt.constant(np.array([1e4]))
        extended = pt.concatenate([-edge, cutpoints, edge])
        # one-hot selection of the cutpoints around each score (constant-folded, since the
        # scores are data): a dense product, whose gradient is cheap, instead of a gather
        categories = pt.arange(extended.shape[0])
        index = pt.cast(value, "int64")[..., None]
        above = pt.dot(pt.eq(index + 1, categories).astype("float64"), extended) - eta
        below = pt.dot(pt.eq(index, categories).astype("float64"), extended) - eta
        # log sigmoid(x) = -softplus(-x)
        return (
            -pt.softplus(-above)
            - pt.softplus(below)
            + pt.log1mexp(pt.minimum(below - above, -1e-12))
        )
    (precision,) = params
    if precision.ndim == eta.ndim - 1:
        precision = precision[..., None]
    mean = pm.math.sigmoid(-eta)
    dist = pm.Beta.dist(alpha=mean * precision, beta=(1.0 - mean) * precision)
    return pm.logp(dist, value)


def draw_cells(family: str, eta: np.ndarray, params: list, rng: np.random.Generator) -> np.ndarray:
    """Draw a score for each cell given latent disability (numpy, for prediction)."""
    if family == "ordered_logistic":
        (cutpoints,) = params
        cutpoints = np.asarray(cutpoints)
        if cutpoints.ndim == eta.ndim:  # broadcast per patient: (patient, c)
            cutpoints = cutpoints[..., None, :]
        below = expit(cutpoints - eta[..., None])  # P(score <= k)
        u = rng.random(eta.shape)
        return (u[..., None] > below).sum(axis=-1)
    (precision,) = params
    precision = np.asarray(precision)
    if precision.ndim == eta.ndim - 1 and precision.ndim:
        precision = precision[..., None]
    mean = expit(-eta)
    return rng.beta(mean * precision, (1.0 - mean) * precision)
