"""Likelihoods of a disability score given the latent disability, and their sampling.

Two families, chosen by the spec's ``[outcome] likelihood``:

``ordered_logistic``
    Integer scales (INCAT 0-10, ONLS 0-12, mRS 0-6): P(score <= k) = logistic(c_k - eta)
    with ordered cutpoints ``c``.
``beta``
    The I-RODS centile (0-100, higher = *less* disability): centile/100 ~ Beta with mean
    logistic(-eta) and a precision; centiles of exactly 0 or 100 are moved half a centile
    inwards.

Both work on one value per visit (the long layout); the progression model sums them per
patient.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit

from magbayes.cohort.tables import SCORES
from magbayes.errors import SpecError
from magbayes.models.ordinal_visits import ordered_logistic_visits

LIKELIHOODS = ("ordered_logistic", "beta")

#: Likelihoods in the words of a methods paragraph.
LIKELIHOOD_WORDS: dict[str, str] = {
    "ordered_logistic": "ordinal (ordered-logistic)",
    "beta": "Beta",
    "logistic": "logistic",
}


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


def visit_logp(
    family: str, value: pt.TensorVariable, eta: pt.TensorVariable, param: pt.TensorVariable
) -> pt.TensorVariable:
    """Log-probability of each observed score (one per visit, same shape as ``eta``).

    Parameters
    ----------
    family : {"ordered_logistic", "beta"}
        The likelihood.
    value : pytensor.tensor.TensorVariable
        Observed scores, one per visit (integers; or centiles / 100 for ``beta``).
    eta : pytensor.tensor.TensorVariable
        Latent disability at each visit (logit units).
    param : pytensor.tensor.TensorVariable
        The ordered cutpoints, shape (category - 1,), or the Beta precision (scalar).

    Notes
    -----
    For the ordered logistic, with ``c`` the cutpoints extended by -inf and +inf,
    ``P(y) = sigmoid(c[y] - eta) - sigmoid(c[y - 1] - eta)``, which is
    ``sigmoid(c[y] - eta) * sigmoid(eta - c[y - 1]) * (1 - exp(c[y - 1] - c[y]))``. The
    last factor does not depend on ``eta``: it is computed once per category and looked
    up, and the cutpoints around the score are gathered (a scatter-add into the cutpoints
    in the gradient), never a full matrix of category probabilities.

    With ``E = exp(eta - c[y])`` and ``K = exp(c[y - 1] - c[y])`` (per category), the two
    sigmoids are ``1 / (1 + E)`` and ``E / (E + K)``, so each visit costs one ``exp`` and
    one ``log`` (two ``softplus`` and their two sigmoids cost six). The value and its
    slopes come from one pass over the visits (:mod:`magbayes.models.ordinal_visits`),
    so the gradient costs no further ``exp``. Exact (to float64 rounding) for ``|eta|``
    below the outer cutpoints' 500; transcendental functions dominate a gradient on large
    cohorts.
    """
    if family == "ordered_logistic":
        # The end categories' outer cutpoints: far enough that the probability beyond them
        # is 0 in float64 (exp(-500)), near enough that no exp below overflows for any
        # realistic eta, because jax.grad of an overflowed value is NaN (numpyro and
        # blackjax then diverge at every step).
        edge = pt.constant(np.array([500.0]))
        extended = pt.concatenate([-edge, param, edge])
        # one pass over the visits computes each visit's log-probability and its slopes
        # (ordinal_visits): one exp and one log per visit, in the value and the gradient
        return ordered_logistic_visits(eta, pt.cast(value, "int64"), extended)[0]
    mean = pm.math.sigmoid(-eta)
    dist = pm.Beta.dist(alpha=mean * param, beta=(1.0 - mean) * param)
    return pm.logp(dist, value)


def draw_visits(
    family: str, eta: np.ndarray, param: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw a score at each visit given its latent disability (numpy, for prediction).

    Parameters
    ----------
    family : {"ordered_logistic", "beta"}
        The likelihood.
    eta : numpy.ndarray
        Latent disability, one per visit.
    param : numpy.ndarray
        Cutpoints (ordered logistic) or precision (Beta).
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        Integer scores, or centiles / 100 for ``beta``.
    """
    if family == "ordered_logistic":
        # The latent disability plus standard logistic noise falls below cutpoint k with
        # probability sigmoid(c_k - eta) = P(score <= k); the score is the number of
        # cutpoints below it. One draw and a binary search per visit, instead of a
        # (visit, cutpoint) matrix of probabilities.
        latent = eta + rng.logistic(size=np.shape(eta))
        return np.searchsorted(np.asarray(param), latent, side="left")
    mean = expit(-eta)
    return rng.beta(mean * param, (1.0 - mean) * param)
