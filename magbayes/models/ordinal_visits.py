"""The ordered-logistic log-probability of every visit, with its slopes, as one operation.

PyTensor's graph of the same formula (written with PyTensor operations, as
``scores.visit_logp`` did up to session 8) evaluated the exponential of each visit again in
the gradient, gathered three per-category tables per visit, and scattered into each of them
in the gradient. This operation loops over the visits once: per visit one ``exp`` and one
``log`` give the log-probability and its slopes with respect to the latent disability and
the lower cutpoint of the observed category. The gradient is then a product per visit and
two scatter-adds into the cutpoints (the slope with respect to the upper cutpoint follows,
because the probability depends only on cutpoints minus latent disability).

Same values as that graph (tests compare them, and their gradients, in
every category far into the tails, under PyTensor's C, numba and JAX back ends). 46,525
visits, value and gradient: about 1.0 ms against 1.4-1.7 ms for the graph (numba, one
core, docs/performance.md).
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

#: log(2): below this gap between two cutpoints, log(1 - exp(-gap)) is computed as
#: log(-expm1(-gap)), above it as log1p(-exp(-gap)) (both accurate in their range).
_LOG_2 = 0.6931471805599453

#: Increase when the compiled loop below changes (see ``OrderedLogisticVisits``).
KERNEL_VERSION: int = 1


def _visits_loop(eta, category, extended):
    """Log-probability of each visit's category and its two slopes (compiled by numba).

    Parameters
    ----------
    eta : numpy.ndarray
        Latent disability at each visit (logit units).
    category : numpy.ndarray of int64
        Observed category at each visit (0 = lowest score).
    extended : numpy.ndarray
        The cutpoints with an outer cutpoint on each side (length: categories + 1).

    Returns
    -------
    logp, slope_eta, slope_lower : numpy.ndarray
        Per visit: log P(category), and its derivatives with respect to ``eta`` and to
        the category's lower cutpoint ``extended[category]``.
    """
    n_categories = extended.shape[0] - 1
    # per category: exp(-gap), log(1 - exp(-gap)) and exp(-gap) / (1 - exp(-gap))
    ratio = np.empty(n_categories)
    width = np.empty(n_categories)
    inverse = np.empty(n_categories)
    for k in range(n_categories):
        gap = extended[k + 1] - extended[k]
        ratio[k] = np.exp(-gap)
        if gap < _LOG_2:
            width[k] = np.log(-np.expm1(-gap))
        else:
            width[k] = np.log1p(-ratio[k])
        inverse[k] = 1.0 / np.expm1(gap)
    n = eta.shape[0]
    if category.shape[0] != n:
        raise ValueError("eta and category must have the same length")
    logp = np.empty(n)
    slope_eta = np.empty(n)
    slope_lower = np.empty(n)
    for i in range(n):
        y = category[i]
        if y < 0 or y >= n_categories:
            raise ValueError("a category is outside the scale")
        above = eta[i] - extended[y + 1]
        e = np.exp(above)
        a = 1.0 + e
        b = e + ratio[y]
        logp[i] = above - np.log(a * b) + width[y]
        slope_eta[i] = ratio[y] / b - e / a
        slope_lower[i] = -ratio[y] / b - inverse[y]
    return logp, slope_eta, slope_lower


#: The loop for PyTensor's Python and C back ends (the log-likelihood of every draw),
#: compiled on first use and kept in numba's cache.
_visits_loop_compiled = numba.njit(cache=True)(_visits_loop)


class OrderedLogisticVisits(Op):
    """Per-visit ordered-logistic log-probability and its slopes (see the module).

    Inputs: ``eta`` (float64 vector), ``category`` (int64 vector), ``extended`` (float64
    vector of cutpoints with one outer cutpoint on each side). Outputs: ``logp``,
    ``slope_eta``, ``slope_lower``, one value per visit. Only ``logp`` is differentiable.

    ``version`` names the compiled loop's code: it is part of the operation's identity, so
    a change of the loop changes PyTensor's numba cache key and magbayes's model
    fingerprint (magbayes.compile_cache), and nothing compiled from the old loop is reused.
    """

    __props__ = ("version",)

    def __init__(self, version: int = KERNEL_VERSION):
        self.version = version

    def make_node(self, eta, category, extended) -> Apply:
        """The operation applied to a visit's latent disability, category and cutpoints."""
        eta = pt.as_tensor_variable(eta).astype("float64")
        category = pt.as_tensor_variable(category).astype("int64")
        extended = pt.as_tensor_variable(extended).astype("float64")
        if eta.ndim != 1 or category.ndim != 1 or extended.ndim != 1:
            raise TypeError("eta, category and extended cutpoints must be vectors")
        return Apply(self, [eta, category, extended], [pt.dvector() for _ in range(3)])

    def perform(self, node, inputs, outputs) -> None:
        """Evaluate with the compiled loop (PyTensor's Python and C back ends)."""
        for storage, value in zip(outputs, _visits_loop_compiled(*inputs), strict=True):
            storage[0] = value

    def infer_shape(self, node, shapes):
        """One value per visit in each output."""
        return [shapes[0]] * 3

    def pullback(self, inputs, outputs, cotangents):
        """Gradient of the log-probabilities: the slopes times the upstream gradient."""
        _, category, extended = inputs
        _, slope_eta, slope_lower = outputs
        upstream = cotangents[0]
        if any(not isinstance(grad.type, DisconnectedType) for grad in cotangents[1:]):
            raise NotImplementedError("the slopes of OrderedLogisticVisits are not differentiable")
        d_eta = upstream * slope_eta
        d_lower = upstream * slope_lower
        # the probability depends on (cutpoint - eta) only: the three slopes sum to zero
        d_upper = -(d_eta + d_lower)
        d_extended = pt.zeros_like(extended)
        d_extended = pt.inc_subtensor(d_extended[category], d_lower)
        d_extended = pt.inc_subtensor(d_extended[category + 1], d_upper)
        return [d_eta, grad_undefined(self, 1, category), d_extended]


ordered_logistic_visits = OrderedLogisticVisits()


@register_funcify_default_op_cache_key(OrderedLogisticVisits)
def _numba_ordered_logistic_visits(op, node=None, **kwargs):
    # the version salts PyTensor's cache key for this operation
    return numba_basic.numba_njit(_visits_loop), op.version


def _register_jax() -> None:
    """The same operation for PyTensor's JAX back end (numpyro, blackjax), when JAX is here."""
    try:
        import jax.numpy as jnp
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:
        return

    @jax_funcify.register(OrderedLogisticVisits)
    def _jax_ordered_logistic_visits(op, **kwargs):
        def ordered_logistic_visits(eta, category, extended):
            gap = extended[1:] - extended[:-1]
            ratio = jnp.exp(-gap)
            # each branch evaluated at an argument where it is finite (jax.grad of a
            # where propagates NaN from the branch that is not taken)
            small = gap < _LOG_2
            width = jnp.where(
                small,
                jnp.log(-jnp.expm1(-jnp.where(small, gap, 1.0))),
                jnp.log1p(-jnp.exp(-jnp.where(small, 1.0, gap))),
            )
            inverse = 1.0 / jnp.expm1(gap)
            above = eta - extended[category + 1]
            e = jnp.exp(above)
            a = 1.0 + e
            b = e + ratio[category]
            logp = above - jnp.log(a * b) + width[category]
            slope_eta = ratio[category] / b - e / a
            slope_lower = -ratio[category] / b - inverse[category]
            return logp, slope_eta, slope_lower

        return ordered_logistic_visits


_register_jax()
