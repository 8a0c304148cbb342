"""Evaluate a PyTensor graph at every posterior draw at once, with NumPy and no compiler.

What a fit computes from its draws after sampling (the traced values the sampler leaves out,
the pointwise log-likelihood, the parameters of the predictive draws) is one graph evaluated
at thousands of draws. PyMC evaluates such graphs one draw at a time through a compiled
function, and compiling it (PyTensor's C back end) took 8-11 s per function on the first fit
of a model on a machine. Here the graph is vectorised over the draws
(:func:`pytensor.graph.replace.vectorize_graph`: the draws become a leading axis) and run by
PyTensor's Python linker without rewrites, so each operation is one NumPy call over a
block of draws: nothing is compiled, and a block of draws costs about what
one draw does through PyTensor's per-call machinery. Operations without a vectorised form
(magbayes's visit loop, for one) are looped over the draws by PyTensor's ``Blockwise``.

Draws are evaluated in blocks (:data:`BLOCK_ELEMENTS`), so that a 5,000-patient cohort does
not hold every draw's per-visit arrays at once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

#: Largest number of array elements per draw times draws in one block: the block of draws
#: evaluated at once holds about this many elements in its largest array (8 bytes each).
BLOCK_ELEMENTS: int = 4_000_000


#: The tag under which :func:`inline_graph_ops`'s rewrite is registered in PyTensor's
#: rewrite database (only queries naming it run it).
INLINE_TAG = "magbayes_inline"


@functools.cache
def _register_inline() -> None:
    """Register the rewrite that replaces every ``OpFromGraph`` by its graph (once)."""
    from pytensor.compile import optdb
    from pytensor.compile.builders import OpFromGraph
    from pytensor.compile.rewriting import inline_ofg_node
    from pytensor.graph.rewriting.basic import dfs_rewriter, node_rewriter

    @node_rewriter([OpFromGraph])
    def inline_graph_op(fgraph: Any, node: Any) -> list[Any]:
        return inline_ofg_node(node)

    optdb.register(
        "magbayes_inline_graph_ops", dfs_rewriter(inline_graph_op), INLINE_TAG, position=-0.5
    )


@functools.cache
def vectorised_mode() -> Any:
    """PyTensor's Python linker with one rewrite: every ``OpFromGraph`` replaced by its graph.

    Each operation runs its NumPy ``perform``: nothing is compiled. An ``OpFromGraph``
    (PyTensor's ``logaddexp``, PyMC's zero-sum normal...) would run its inner graph
    through a function linked with C thunks, which compiles C on a machine that has not
    compiled those operations before; inlined, its operations run in NumPy too. No other
    rewrite: they cost more than they save for a graph evaluated once (the ``fast_compile``
    ones took 1 of the 2.6 s of the 47-patient progression model's log-likelihood over
    4,000 draws). A query rather than a rewriter, so that PyMC can add the rewrites its own
    functions need (``pymc.compile``).
    """
    from pytensor.compile.mode import Mode
    from pytensor.graph.rewriting.db import RewriteDatabaseQuery

    _register_inline()
    return Mode(linker="py", optimizer=RewriteDatabaseQuery(include=[INLINE_TAG]))


def inline_graph_ops(outputs: Sequence[Any]) -> list[Any]:
    """``outputs`` with every ``OpFromGraph`` replaced by its own graph (a copy).

    Before vectorising over draws: an ``OpFromGraph`` would be looped one draw at a time
    (``Blockwise``), and run through C thunks (see :func:`vectorised_mode`).
    """
    from pytensor.graph.rewriting.utils import rewrite_graph

    _register_inline()
    return list(rewrite_graph(list(outputs), include=[INLINE_TAG], clone=True))


class OverDraws:
    """A graph compiled once to be evaluated over blocks of draws.

    Parameters
    ----------
    outputs : sequence of pytensor variables
        What to compute at each draw.
    per_draw : sequence of pytensor variables
        Root variables that take one value per draw (a parameter's value variable); each is
        replaced by a version with a leading draw axis.
    inputs : sequence of pytensor variables, optional
        Other root variables given at each call, the same for every draw (data that a
        compiled model holds in place of the model's own ``pm.Data`` values).
    """

    def __init__(
        self,
        outputs: Sequence[Any],
        per_draw: Sequence[Any],
        inputs: Sequence[Any] = (),
    ) -> None:
        import pytensor
        import pytensor.tensor as pt
        from pytensor.graph.basic import Constant
        from pytensor.graph.replace import vectorize_graph

        batched = [
            pt.tensor(dtype=var.type.dtype, shape=(None, *var.type.shape), name=var.name)
            for var in per_draw
        ]
        outputs = inline_graph_ops(
            [pt.as_tensor(out, allow_xtensor_conversion=True) for out in outputs]
        )
        vectorised = vectorize_graph(outputs, replace=dict(zip(per_draw, batched, strict=True)))
        self._core_ndim = [out.type.ndim for out in outputs]
        self._dtypes = [var.type.dtype for var in per_draw]
        self._function = pytensor.function(
            [*batched, *inputs],
            vectorised,
            mode=vectorised_mode(),
            on_unused_input="ignore",
            accept_inplace=True,
        )
        self._per_draw_elements: int | None = None
        # the data the graph holds (a model's cohort arrays): a draw's intermediate values are
        # about their size (5,000 patients: 46,525 visits x 5 treatments), often larger
        # than its outputs (one log-likelihood per patient)
        self._largest_data = max(
            [1]
            + [
                np.size(v.data)
                for v in self._function.maker.fgraph.variables
                if isinstance(v, Constant)
            ]
            + [np.size(v.get_value(borrow=True)) for v in self._function.get_shared()]
        )

    def __call__(
        self,
        draws: Sequence[np.ndarray],
        inputs: Sequence[np.ndarray] = (),
        *,
        n_draws: int | None = None,
        block: int | None = None,
    ) -> list[np.ndarray]:
        """The outputs at every draw.

        Parameters
        ----------
        draws : sequence of numpy.ndarray
            One array per ``per_draw`` variable, draws on the first axis (the same number
            in each).
        inputs : sequence of numpy.ndarray
            Values of the other inputs, in their order.
        n_draws : int, optional
            Number of draws when ``draws`` is empty (outputs that depend on no draw are
            repeated that many times); default 1.
        block : int, optional
            Draws evaluated at once; default from :data:`BLOCK_ELEMENTS` and the size of
            one draw of the inputs and outputs.

        Returns
        -------
        list of numpy.ndarray
            One per output, draws on the first axis.
        """
        pieces = self.blocks(draws, inputs, n_draws=n_draws, block=block)
        if not draws:  # one block: the values repeated, not copied
            return next(pieces)[2]
        outputs: list[np.ndarray] = []
        for start, stop, values in pieces:
            if not outputs:  # filled block by block: no second copy of a large output
                outputs = [np.empty((len(draws[0]), *v.shape[1:]), v.dtype) for v in values]
            for out, value in zip(outputs, values, strict=True):
                out[start:stop] = value
        return outputs

    def blocks(
        self,
        draws: Sequence[np.ndarray],
        inputs: Sequence[np.ndarray] = (),
        *,
        n_draws: int | None = None,
        block: int | None = None,
    ) -> Iterator[tuple[int, int, list[np.ndarray]]]:
        """The outputs block of draws by block, so that only one block is held at a time.

        Parameters
        ----------
        draws, inputs, n_draws, block
            As for calling the object.

        Yields
        ------
        start, stop : int
            The block's draws (``start:stop`` of ``draws``).
        values : list of numpy.ndarray
            One per output, the block's draws on the first axis.
        """
        draws = [np.asarray(d, dtype=dtype) for d, dtype in zip(draws, self._dtypes, strict=True)]
        if not draws:  # nothing varies between draws: computed once, repeated
            n = n_draws or 1
            yield 0, n, [np.broadcast_to(v, (n, *np.shape(v))) for v in self._function(*inputs)]
            return
        n_draws = len(draws[0])
        start = 0
        while True:  # once with no draws: empty outputs
            size = block or (self._block(draws, inputs, n_draws) if n_draws else 0)
            stop = min(n_draws, start + size)
            values = self._function(*(d[start:stop] for d in draws), *inputs)
            yield (
                start,
                stop,
                [
                    np.broadcast_to(v, (stop - start, *np.shape(v)))
                    if np.ndim(v) == ndim
                    else np.asarray(v)
                    for v, ndim in zip(values, self._core_ndim, strict=True)
                ],
            )
            start = stop
            if start >= n_draws:
                return

    def _block(self, draws: Sequence[np.ndarray], inputs: Sequence[Any], n_draws: int) -> int:
        """Draws per block, so that a draw's largest array times the block stays near the limit.

        A draw's largest array: of its outputs, of the inputs, or of the graph's data.
        """
        if self._per_draw_elements is None:
            one = self._function(*(d[:1] for d in draws), *inputs)
            sizes = [np.size(v) for v in one]
            sizes += [np.size(v) for v in inputs] + [np.size(d[:1]) for d in draws]
            self._per_draw_elements = max([self._largest_data, *sizes])
        return max(1, min(n_draws, BLOCK_ELEMENTS // self._per_draw_elements))


def over_posterior(
    outputs: Sequence[Any],
    per_draw: Mapping[Any, np.ndarray],
    sample_shape: tuple[int, ...],
    inputs: Mapping[Any, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Evaluate ``outputs`` at every draw, with the draws' (chain, draw) axes in front.

    Parameters
    ----------
    outputs : sequence of pytensor variables
        What to compute.
    per_draw : mapping
        Root variable -> its draws, shape ``sample_shape + variable shape``.
    sample_shape : tuple of int
        The draws' leading axes (chains, draws per chain).
    inputs : mapping, optional
        Other root variables -> their value (the same at every draw).

    Returns
    -------
    list of numpy.ndarray
        Shape ``sample_shape + output shape`` each.
    """
    inputs = dict(inputs or {})
    function = OverDraws(outputs, list(per_draw), list(inputs))
    n = int(np.prod(sample_shape, dtype=np.int64))
    flat = [
        np.reshape(value, (n, *np.shape(value)[len(sample_shape) :])) for value in per_draw.values()
    ]
    values = function(flat, list(inputs.values()))
    return [np.reshape(v, (*sample_shape, *v.shape[1:])) for v in values]
