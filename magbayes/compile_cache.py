"""Compile a PyMC model for nutpie once, and reuse the compiled model in later processes.

nutpie samples from two C callbacks made from a PyMC model: the log density with its
gradient, and the "expand" function that turns a draw into the values of the trace
(constrained parameters, deterministics). ``nutpie.compile_pymc_model`` makes both with numba
at every call, and numba cannot keep them on disk because they refer to functions created at
run time. For the 47-patient progression model that was about 15 of the 35 seconds of a fit,
and nutpie's handling of data inputs (``pm.Data``) makes it longer still (docs/performance.md).

Here the log-density callback is made from source text registered with PyTensor's numba
cache (:mod:`pytensor.link.numba.cache`), and it does not depend on the cohort. The expand
callback only copies the draw, and is the same for every model: the constrained parameters
and deterministics are computed after sampling, from all draws at once and with nothing
compiled (:func:`sample_compiled`, :mod:`magbayes.traced`). Compiling them into a second
callback took about a fifth of the first fit of the progression model on a machine.

- **the cohort's data are inputs, not constants.** The models hold their cohort arrays as
  ``pm.Data``, PyMC makes the length of every dimension a shared variable, and each observed
  variable's data is made a shared variable before compiling
  (:func:`magbayes.observed_inputs.observed_as_shared`). The compiled
  function takes all of these as inputs, and the flat parameter vector is cut into
  parameters by an int64 ``layout`` input (their sizes and shapes), so nothing in
  the machine code depends on the cohort's values or sizes. The callbacks read the arrays
  from a table of addresses and shapes that nutpie passes them (its ``user_data``).
- **the fingerprint of the model** keys them on disk: the graph of its log density and of
  the traced values, node by node, with the bytes of every constant (the priors, except
  where a model holds them as inputs), the name and type (not the value) of every data input, the
  names, types and order of the sampled parameters, and the versions of the libraries that
  compile it.

So a later fit of any cohort with the same structure (same spec, same kinds of data: which
covariates have missing values, whether some early-sural statuses are unknown...), with
any seed and in any process, loads the callback from disk and skips PyTensor's graph
rewriting as well; only the initial-point function and the parameter layout are rebuilt.
The compiled model's ``with_data`` swaps data without compiling (SBC's refits).

A model that cannot be fingerprinted with certainty (an operation without ``__props__``, a
value without a stable text form) is compiled the same way but not stored. The callbacks
compute what ``nutpie.compile_pymc_model``'s do (a test compares log density and gradient).

**Reproducibility.** A model loaded from the cache runs the very machine code that was stored,
so every fit that loads it draws the same numbers for a given seed. The fit that compiles it
can differ from them in the last bits: in that process the callback may call the functions
numba has just compiled rather than their stored copies, and a few thousand leapfrog steps
amplify a last-bit difference into different (equally valid) draws. This was already so
before the cache, between a fit that compiled PyTensor's pieces and one that loaded them.

The cache lives in PyTensor's compile directory (``pytensor.config.base_compiledir``, set
with ``PYTENSOR_FLAGS=base_compiledir=...``): numba's files in ``numba/``, the index of
compiled models in ``magbayes/``. Deleting that directory clears both.
``MAGBAYES_COMPILE_CACHE=0`` compiles every time.

**Fits at once.** Two processes fitting the same structure (two terminals, a Dask grid)
share one entry through a lock file per entry (``magbayes/<key>.lock``, ``fcntl.flock``): a
process reads the entry under a shared lock, and compiles and stores it under an exclusive
one, after looking once more whether another process stored it while it waited. So one
process compiles and the others wait for it, then load what it stored; nobody reads a
half-written entry. Each file is also written to a temporary name and renamed
(``os.replace``; numba does the same for its files). Without ``fcntl`` (Windows), or on a
compile directory where no lock file can be made, the processes compile side by side and
the last rename wins.

**Damaged entries.** The index entry records the SHA-256 of numba's files of the
log-density callback. An entry that cannot be read, that lacks a key, whose inputs differ, or whose
numba files no longer have those digests (truncated, overwritten) is compiled again with a
:class:`CompilePathWarning`, never loaded.

**When nutpie or PyTensor change.** The cached path builds nutpie's compiled-model object
from private pieces of ``nutpie.compile_pymc`` and uses PyTensor's numba cache. When one is
missing or its signature changed (an install outside pyproject.toml's bounds), the model is
compiled by the public ``nutpie.compile_pymc_model`` instead, with one
:class:`CompilePathWarning`: fits are right, only slower to start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

#: Bump when the callback source below or the index entry's content changes.
CALLBACK_VERSION = "7"

# The log-density callback reads the model's data inputs from nutpie's ``user_data``: a table
# of int64 holding the number of parameters, the number of traced values, then for each input
# its address and its shape. ``{read}`` unpacks the table (generated per model structure) and
# packs the parameter vector and the inputs into the tuple ``arguments`` of the call.
_LOGP_SOURCE = """
def magbayes_logp(dim, x_, out_, logp_, user_data_):
    table = numba.carray(user_data_, (TABLE_SIZE,), np.int64)
    if dim != table[0]:
        return -1
    try:
        x = numba.carray(x_, (dim,))
        out = numba.carray(out_, (dim,))
        logp = numba.carray(logp_, ())
{read}
        logp_value, gradient = logp_and_gradient(*arguments)
        logp[()] = logp_value
        for i in range(dim):
            out[i] = gradient[i]
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_value):
            return 4
    except Exception:
        return 1
    return 0
"""

# nutpie's "expand" callback turns a draw into the values of the trace. It only copies the
# draw (the unconstrained parameters): constrained parameters and deterministics are computed
# after sampling, over all draws at once (``magbayes.traced``), so no model-specific code is
# compiled for them. The same callback serves every model.
_COPY_SOURCE = """
def magbayes_copy(dim, expanded, x_, out_, user_data_):
    if expanded != dim:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    for i in range(dim):
        out[i] = x[i]
    return 0
"""

#: The copying callback's key in numba's cache (one entry for every model).
_COPY_KEY = f"v{CALLBACK_VERSION}"


#: What an index entry holds: the inputs' dtypes and dimensions, and the SHA-256 of each of
#: numba's files of the two callbacks (by file name).
_INDEX_KEYS = {"inputs", "files"}

#: The fields of nutpie's compiled-model object that :func:`_compiled_model` fills.
_MODEL_FIELDS = {
    "_n_dim",
    "dims",
    "_coords",
    "_shapes",
    "compiled_logp_func",
    "compiled_expand_func",
    "initial_point_func",
    "shared_data",
    "shared_var_keys",
    "user_data",
    "n_expanded",
    "shape_info",
    "logp_func",
    "expand_func",
    "reparameterized_names",
}

#: What a missing or changed private piece of nutpie or PyTensor raises where it is used.
_PRIVATE_PIECE_CHANGED = (ImportError, AttributeError, TypeError)


class UnfingerprintableError(Exception):
    """A model graph holds something without a stable text form."""


class CompilePathWarning(UserWarning):
    """A model was compiled another way than expected.

    Its cache entry was damaged, or nutpie's private pieces are missing (then without the
    cache).
    """


def cache_enabled() -> bool:
    """Whether compiled models are reused.

    Not when ``MAGBAYES_COMPILE_CACHE`` is ``0`` (or ``false``, ``no``), nor when PyTensor's
    numba cache is off (``pytensor.config.numba__cache``): the callbacks are stored there.
    """
    import pytensor

    if not pytensor.config.numba__cache:
        return False
    return os.environ.get("MAGBAYES_COMPILE_CACHE", "1").strip().lower() not in {"0", "false", "no"}


def cache_dir() -> Path:
    """Folder of the index of compiled models, inside PyTensor's compile directory."""
    import pytensor

    return Path(pytensor.config.base_compiledir) / "magbayes"


def numba_dir() -> Path:
    """Folder of numba's cached files (PyTensor's, inside its compile directory)."""
    from pytensor.link.numba import cache

    return Path(cache.NUMBA_CACHE_PATH)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_text(value: np.ndarray) -> str:
    value = np.ascontiguousarray(value)
    if value.dtype == object:
        raise UnfingerprintableError("an array of Python objects")
    return f"array[{value.dtype.str} {value.shape} {_digest(value.tobytes())}]"


def _value_text(value: Any) -> str:
    """Stable text of an operation's property (recursively); raises when there is none."""
    if value is None or isinstance(value, str | bool | int | float | complex):
        return repr(value)
    if isinstance(value, np.generic):
        return f"{value.dtype.str}:{value!r}"
    if isinstance(value, np.dtype):
        return f"dtype[{value.str}]"
    if isinstance(value, np.ndarray):
        return _array_text(value)
    if isinstance(value, slice):
        parts = (value.start, value.stop, value.step)
        return "slice(" + ", ".join(_value_text(part) for part in parts) + ")"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_value_text(v) for v in value) + ")"
    if isinstance(value, dict):
        items = sorted((_value_text(k), _value_text(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, frozenset | set):
        return "{" + ", ".join(sorted(_value_text(v) for v in value)) + "}"
    from pytensor.graph.fg import FrozenFunctionGraph, FunctionGraph
    from pytensor.graph.type import Type
    from pytensor.scalar.basic import ScalarOp

    if hasattr(type(value), "__props__") or isinstance(value, ScalarOp):
        return _op_text(value)
    if isinstance(value, FunctionGraph | FrozenFunctionGraph):  # an inner graph
        return "graph[" + "; ".join(graph_text(value.outputs, inputs=value.inputs)) + "]"
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
        if getattr(value, "__closure__", None):
            raise UnfingerprintableError(f"a closure {value.__qualname__}")
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, Type):
        return f"type[{value}]"
    state = getattr(value, "__dict__", None)
    if state is not None and type(value).__eq__ is not object.__eq__:
        # a small helper object compared by its state (e.g. a scalar op's output-type rule)
        cls = type(value)
        return f"{cls.__module__}.{cls.__qualname__}{_value_text(state)}"
    raise UnfingerprintableError(f"a {type(value).__qualname__}")


def _op_text(op: Any) -> str:
    from pytensor.compile.builders import OpFromGraph
    from pytensor.scalar.basic import ScalarOp

    cls = type(op)
    props = getattr(cls, "__props__", None)
    if props is None and isinstance(op, ScalarOp):
        # scalar operations compare by class and output-type rule (ScalarOp.__eq__)
        props = ("output_types_preference",)
    if isinstance(op, OpFromGraph):
        # an operation defined by an inner graph (e.g. logaddexp): its class and that graph
        fields = [f"{name}={_value_text(getattr(op, name))}" for name in props or ()]
        fields.append(_value_text(op.fgraph))
        return f"{cls.__module__}.{cls.__qualname__}{{{', '.join(fields)}}}"
    if props is None:
        raise UnfingerprintableError(f"operation {cls.__qualname__} has no __props__")
    fields = ", ".join(f"{name}={_value_text(getattr(op, name))}" for name in props)
    return f"{cls.__module__}.{cls.__qualname__}{{{fields}}}"


def graph_text(outputs: list[Any], inputs: list[Any] | None = None) -> list[str]:
    """One line per root variable and per operation of a PyTensor graph, in order.

    Constants are written with a digest of their bytes; shared variables (``pm.Data``, a
    dimension's length), which the compiled functions take as inputs, with their name and
    type only; other roots with their name and type (``inputs``, when given, first and in
    their order); operations with their class and properties.

    Raises
    ------
    UnfingerprintableError
        When an operation or a value has no stable text form.
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import toposort

    lines: list[str] = []
    names: dict[Any, str] = {}

    def ref(var: Any) -> str:
        if var in names:
            return names[var]
        if isinstance(var, Constant) and var.data is None:  # e.g. an unspecified length
            text = f"constant {var.type} None"
        elif isinstance(var, Constant):
            text = f"constant {var.type} {_array_text(np.asarray(var.data))}"
        elif isinstance(var, SharedVariable):
            # an input of the compiled functions: its value is not part of the fingerprint
            if not isinstance(var.get_value(borrow=True), np.ndarray | np.generic | int | float):
                raise UnfingerprintableError(f"shared variable {var.name} is not an array")
            text = f"shared {var.name} {var.type}"
        elif var.owner is None:
            text = f"input {var.name} {var.type}"
        else:  # an output of a node not reached by toposort cannot happen
            raise UnfingerprintableError(f"variable {var} outside the graph")
        names[var] = f"r{len(lines)}"
        lines.append(f"{names[var]} = {text}")
        return names[var]

    for position, var in enumerate(inputs or ()):
        names[var] = f"r{len(lines)}"
        lines.append(f"{names[var]} = input {position} {var.type}")
    for number, node in enumerate(toposort(outputs)):
        arguments = ", ".join(ref(var) for var in node.inputs)
        for k, out in enumerate(node.outputs):
            names[out] = f"n{number}.{k}"
        types = ", ".join(str(out.type) for out in node.outputs)
        lines.append(f"n{number} = {_op_text(node.op)}({arguments}) -> {types}")
    lines.append("outputs " + ", ".join(ref(var) for var in outputs))
    if any(" at 0x" in line for line in lines):  # a memory address: differs between processes
        raise UnfingerprintableError("a text holds a memory address")
    return lines


def _traced_outputs(model: Any) -> list[Any]:
    """What nutpie compiles from a model: its log density and every traced value."""
    return [model.logp(), *model.unobserved_value_vars]


def data_inputs(model: Any, outputs: list[Any] | None = None) -> list[Any]:
    """The shared variables the compiled functions take as inputs, in a stable order.

    ``pm.Data`` arrays and the lengths of the model's dimensions, in the order the graph
    of ``outputs`` (default: log density and traced values) first uses them, so the same
    model structure gives the same order in every process.
    """
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import toposort

    found: dict[Any, None] = {}
    for node in toposort(outputs if outputs is not None else _traced_outputs(model)):
        for var in node.inputs:
            if isinstance(var, SharedVariable) and isinstance(
                var.get_value(borrow=True), np.ndarray | np.generic | int | float
            ):
                found.setdefault(var, None)
    return list(found)


def model_fingerprint(
    model: Any, var_names: Iterable[str] | None = None, outputs: list[Any] | None = None
) -> str | None:
    """Fingerprint of what nutpie compiles from a PyMC model, or None when there is none.

    Two models with the same structure, priors and constants but other values in their
    ``pm.Data`` (another cohort of the same design) have the same fingerprint: those values
    are inputs of the compiled functions.

    Parameters
    ----------
    model : pymc.Model
        The model.
    var_names : iterable of str, optional
        Variables kept in the trace (all when None).
    outputs : list, optional
        The model's log density and traced values, when already built.

    Returns
    -------
    str or None
        A SHA-256 hex digest; None when part of the graph has no stable text form.
    """
    import pytensor

    free = [model.rvs_to_values[rv] for rv in model.free_RVs]
    try:
        lines = graph_text(outputs if outputs is not None else _traced_outputs(model))
    except UnfingerprintableError:
        return None
    header = {
        "callbacks": CALLBACK_VERSION,
        "versions": {name: version(name) for name in ("pymc", "pytensor", "nutpie", "numba")},
        "fastmath": bool(pytensor.config.numba__fastmath),
        "floatX": pytensor.config.floatX,
        "check_bounds": bool(model.check_bounds),
        "free": [f"{value.name} {value.type}" for value in free],
        "traced": [var.name for var in model.unobserved_value_vars],
        "var_names": None if var_names is None else sorted(var_names),
    }
    text = json.dumps(header, sort_keys=True) + "\n" + "\n".join(lines)
    return _digest(text.encode())


def compile_key(model: Any, var_names: Iterable[str] | None = None) -> str | None:
    """The key :func:`compile_for_nutpie` stores and finds ``model``'s compiled model under.

    The fingerprint (:func:`model_fingerprint`) of the model once its observed data are
    inputs (:func:`magbayes.observed_inputs.observed_as_shared`), as compiled; None when
    the model has no fingerprint.
    """
    from magbayes.observed_inputs import observed_as_shared

    return model_fingerprint(observed_as_shared(model)[0], var_names)


# ------------------------------------------------------------------------ layout and data


def _remaining(model: Any, var_names: Iterable[str] | None) -> list[Any]:
    """Traced values besides the sampled (unconstrained) parameters, as nutpie keeps them."""
    free_names = {model.rvs_to_values[rv].name for rv in model.free_RVs}
    remaining = [var for var in model.unobserved_value_vars if var.name not in free_names]
    if var_names is not None:
        wanted = set(var_names)
        remaining = [var for var in remaining if var.name in wanted]
    return remaining


def _input_specs(inputs: list[Any]) -> list[list[Any]]:
    """The dtype and number of dimensions of each input of the callbacks (the layout first)."""
    return [["int64", 1]] + [[str(var.type.dtype), int(var.type.ndim)] for var in inputs]


def _shapes(
    model: Any, point: dict[str, np.ndarray], remaining: list[Any]
) -> dict[str, tuple[int, ...]]:
    """Shapes of the sampled parameters and of the other traced values.

    The first from an initial ``point``, the others from their graphs at that point.
    """
    import pytensor
    import pytensor.tensor as pt

    shapes = {name: np.shape(value) for name, value in point.items()}
    if remaining:
        values = [model.rvs_to_values[rv] for rv in model.free_RVs]
        shape_function = pytensor.function(
            [],
            [pt.as_tensor(var, allow_xtensor_conversion=True).shape for var in remaining],
            givens=[(value, pt.constant(point[value.name])) for value in values],
            mode="FAST_COMPILE",
            on_unused_input="ignore",
        )
        for var, shape in zip(remaining, shape_function(), strict=True):
            shapes[var.name] = tuple(shape)
    return shapes


def _layout(
    model: Any, var_names: Iterable[str] | None, point: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Where each parameter and traced value lies in nutpie's flat arrays, for this cohort.

    Returns nutpie's ``shape_info`` pieces (``names``, ``slices``, ``shapes``), ``n_dim``,
    ``n_expanded`` and ``layout``, the int64 input the compiled functions cut the flat
    parameter vector with: the size of each sampled parameter, then the shape of each one
    with two or more dimensions.
    """
    shapes = _shapes(model, point, _remaining(model, var_names))
    names: list[str] = []
    slices: list[slice] = []
    shape_list: list[tuple[int, ...]] = []
    sizes: list[int] = []
    extra_shapes: list[int] = []
    count = 0
    free_values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    for var in [*free_values, *_remaining(model, var_names)]:
        shape = tuple(int(n) for n in shapes[var.name])
        length = int(np.prod(shape, dtype=np.int64))
        if len(names) < len(free_values):
            sizes.append(length)
            if len(shape) > 1:
                extra_shapes.extend(shape)
        names.append(var.name)
        slices.append(slice(count, count + length))
        shape_list.append(shape)
        count += length
        if len(names) == len(free_values):
            n_dim = count
    if not free_values:
        n_dim = 0
    return {
        "names": names,
        "slices": slices,
        "shapes": shape_list,
        "n_dim": n_dim,
        "n_expanded": count,
        "layout": np.asarray(sizes + extra_shapes, dtype=np.int64),
    }


def _user_data(
    n_dim: int, n_expanded: int, arrays: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The table of addresses and shapes the callbacks read, and the arrays it points to.

    The arrays must stay alive (and unmoved) as long as the table is used: the compiled
    model holds them.
    """
    # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    kept = [np.require(array, requirements="C") for array in arrays]
    table = [n_dim, n_expanded]
    for array in kept:
        table.extend([array.ctypes.data, *array.shape])
    return np.asarray(table, dtype=np.int64), kept


def _input_values(inputs: list[Any], updates: dict[str, Any] | None = None) -> list[np.ndarray]:
    """Current values of the data inputs (``updates``: new values by shared-variable name)."""
    updates = updates or {}
    values = []
    for var in inputs:
        value = updates[var.name] if var.name in updates else var.get_value(borrow=True)
        value = np.asarray(value, dtype=var.type.dtype)
        if value.ndim != var.type.ndim:
            raise ValueError(f"{var.name} needs {var.type.ndim} dimensions, not {value.ndim}")
        values.append(value)
    return values


# ------------------------------------------------------------------------------ callbacks


def _parts(n_inputs: int) -> list[list[str]]:
    """Names of the callback's arguments to the graph (``x``, ``in0``...), in tuples of 20.

    A call or tuple display of more than 30 items compiles to a list turned into a tuple,
    which numba cannot type: the arguments go in tuples of at most 20, added up.
    """
    names = ["x", *(f"in{number}" for number in range(n_inputs))]
    return [names[start : start + 20] for start in range(0, len(names), 20)]


def _sources(specs: list[list[Any]]) -> tuple[str, dict[str, Any]]:
    """Source of the log-density callback for inputs of these dtypes and dimensions, and globals."""
    reads: list[str] = []
    env: dict[str, Any] = {}
    position = 2  # after the number of parameters and of traced values
    for number, (dtype, ndim) in enumerate(specs):
        dims = ", ".join(f"table[{position + 1 + axis}]" for axis in range(ndim))
        shape = f"({dims},)" if ndim == 1 else f"({dims})"
        env[f"DTYPE_{number}"] = np.dtype(dtype).type
        reads.append(
            f"        in{number} = numba.carray("
            f"address_as_pointer(table[{position}]), {shape}, DTYPE_{number})"
        )
        position += 1 + ndim
    env["TABLE_SIZE"] = position
    parts = _parts(len(specs))
    for number, part in enumerate(parts):
        reads.append(f"        part{number} = ({', '.join(part)},)")
    reads.append("        arguments = " + " + ".join(f"part{n}" for n in range(len(parts))))
    return _LOGP_SOURCE.replace("{read}", "\n".join(reads)), env


def _callback(source: str, name: str, key: str | None, env: dict[str, Any], signature: Any) -> Any:
    """A numba C callback from ``source``; cached on disk under ``key`` unless it is None."""
    import numba
    from pytensor.link.numba.cache import compile_numba_function_src

    from magbayes.compile_pointers import address_as_pointer

    # "__name__": numba rebuilds the callback's environment from an importable module
    globals_ = {
        "np": np,
        "numba": numba,
        "address_as_pointer": address_as_pointer,
        "__name__": __name__,
        **env,
    }
    if key is None:
        namespace: dict[str, Any] = {}
        exec(compile(source, f"<magbayes {name}>", "exec"), globals_, namespace)  # noqa: S102
        function = numba.njit(namespace[name])
        return numba.cfunc(signature)(function)
    function = compile_numba_function_src(
        source, name, globals_, cache_key=f"magbayes-{name}-{key}"
    )
    return numba.cfunc(signature, cache=True)(function)


def _signatures() -> tuple[Any, Any]:
    import numba

    double = numba.types.CPointer(numba.types.double)
    logp = numba.types.int64(numba.types.uint64, double, double, double, numba.types.voidptr)
    expand = numba.types.int64(
        numba.types.uint64, numba.types.uint64, double, double, numba.types.voidptr
    )
    return logp, expand


def _logp_callback(key: str | None, specs: list[list[Any]], graph: Any) -> Any:
    """The log-density callback of a model, compiled or loaded under ``key``.

    ``graph(x, layout, *data) -> (logp, gradient)`` is the numba function PyTensor made of
    the log density and its gradient; on a cache hit numba does not look at it.
    """
    logp_signature, _ = _signatures()
    source, env = _sources(specs)
    return _callback(
        source, "magbayes_logp", key, {**env, "logp_and_gradient": graph}, logp_signature
    )


@functools.cache
def _copy_callback() -> Any:
    """Nutpie's expand callback for every model: it copies the draw (see ``_COPY_SOURCE``).

    Compiled once per machine into numba's cache (under PyTensor's compile directory); when
    its cached files cannot be read, it is compiled again without the cache.
    """
    _, signature = _signatures()
    try:
        return _callback(_COPY_SOURCE, "magbayes_copy", _COPY_KEY, {}, signature)
    except Exception:  # noqa: BLE001 (numba unpickles its files: any error = damaged)
        return _callback(_COPY_SOURCE, "magbayes_copy", None, {}, signature)


def _not_compiled(*args: Any) -> Any:
    raise RuntimeError("a cached callback was not found")


# --------------------------------------------------------------------------- the model


@functools.cache
def _compiled_model_class() -> type:
    """The compiled-model class of nutpie, with ``with_data`` for magbayes's data table."""
    from nutpie.compile_pymc import CompiledPyMCModel

    @dataclasses.dataclass(frozen=True)
    class CachedPyMCModel(CompiledPyMCModel):
        """nutpie's compiled model whose callbacks read the data through magbayes's table.

        ``with_data(**{shared_name: values})`` gives the same compiled model on other data
        (as nutpie's own ``with_data``). Its expand callback copies the draw: sample it
        with :func:`sample_compiled`, which adds the constrained parameters and
        deterministics (``traced``, :class:`magbayes.traced.TracedValues`).
        """

        traced: Any = None

        def with_data(self, **updates: Any) -> Any:
            inputs = self.shared_var_keys["inputs"]
            unknown = set(updates) - {var.name for var in inputs}
            if unknown:
                raise KeyError(f"not data of this model: {sorted(unknown)}")
            arrays = [self.shared_data["layout"], *_input_values(inputs, updates)]
            table, kept = _user_data(self.n_dim, self.n_expanded, arrays)
            return dataclasses.replace(
                self, user_data=table, shared_data={"layout": kept[0], "inputs": kept[1:]}
            )

    return CachedPyMCModel


def sample_compiled(compiled: Any, **options: Any) -> Any:
    """``nutpie.sample(compiled, **options)``, with every traced value in the posterior.

    A model from :func:`compile_for_nutpie` traces the sampled parameters only; their
    constrained values and the deterministics are computed here from all draws at once,
    and the seconds spent are the posterior's ``deterministics_time`` attribute. A model
    compiled by nutpie itself is sampled as it is.

    Parameters
    ----------
    compiled : nutpie.compile_pymc.CompiledPyMCModel
        From :func:`compile_for_nutpie` (or ``nutpie.compile_pymc_model``).
    **options
        ``nutpie.sample``'s keyword arguments.

    Returns
    -------
    xarray.DataTree
        As ``nutpie.sample`` returns it for ``nutpie.compile_pymc_model``'s model.
    """
    import nutpie

    tree = nutpie.sample(compiled, **options)
    seconds = 0.0
    if isinstance(compiled, _compiled_model_class()):
        seconds = compiled.traced.complete(tree, compiled.shared_data["inputs"])
    tree["posterior"].attrs["deterministics_time"] = seconds
    return tree


def _compiled_model(
    model: Any,
    var_names: Iterable[str] | None,
    inputs: list[Any],
    *,
    logp_callback: Any,
    logp_function: Any = None,
    start: Mapping[str, Any] | None = None,
) -> Any:
    """Wrap the callbacks and this cohort's data in nutpie's compiled-model object.

    ``start`` overrides the starting values of some variables (by name, constrained
    scale); the others start at their support point. All are jittered, as nutpie does.
    """
    from nutpie.compile_pymc import (
        _prepare_dims_and_coords,
        _rv_dict_to_flat_array_wrapper,
        _wrap_with_lock,
    )
    from pymc.initial_point import make_initial_point_fn

    from magbayes.traced import TracedValues

    # the same initial points as nutpie.compile_pymc_model's defaults, unless overridden
    point = make_initial_point_fn(
        model=model,
        overrides=dict(start) if start else None,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    layout = _layout(model, var_names, point(0))
    names, slices, shapes = layout["names"], layout["slices"], layout["shapes"]
    n_free = len(model.free_RVs)
    initial_point = _rv_dict_to_flat_array_wrapper(
        _wrap_with_lock(point), names=names[:n_free], shapes=shapes[:n_free]
    )
    reparameterized = [
        model.rvs_to_values[rv].name
        for rv in model.free_RVs
        if model.rvs_to_transforms.get(rv) is not None
    ]
    # dimension names of every traced value, as nutpie's own compiled model has them
    dims, coords = _prepare_dims_and_coords(model, (names, slices, shapes), reparameterized)
    traced = TracedValues(model, _remaining(model, var_names), inputs, dims, coords)
    # nutpie traces the sampled parameters (the expand callback copies the draw)
    sampled = (names[:n_free], slices[:n_free], shapes[:n_free])
    arrays = [layout["layout"], *_input_values(inputs)]
    table, kept = _user_data(layout["n_dim"], layout["n_dim"], arrays)
    return _compiled_model_class()(
        _n_dim=layout["n_dim"],
        dims={name: dims[name] for name in sampled[0] if name in dims},
        _coords=coords,
        _shapes=dict(zip(sampled[0], sampled[2], strict=True)),
        compiled_logp_func=logp_callback,
        compiled_expand_func=_copy_callback(),
        initial_point_func=initial_point,
        # the arrays the table points to (kept alive here) and the inputs' variables
        shared_data={"layout": kept[0], "inputs": kept[1:]},
        shared_var_keys={"inputs": inputs},
        user_data=table,
        n_expanded=layout["n_dim"],
        shape_info=sampled,
        logp_func=logp_function,
        expand_func=None,
        reparameterized_names=[],
        traced=traced,
    )


def _numba_files(key: str) -> list[Path]:
    """The files numba stored for the log-density callback under ``key`` (index and data)."""
    names = [f"magbayes-magbayes_logp-{key}."]
    try:
        listing = sorted(numba_dir().iterdir())
    except OSError:
        return []
    return [
        path
        for path in listing
        if any(name in path.name for name in names) and ".tmp." not in path.name
    ]


def _file_digests(key: str) -> dict[str, str]:
    """SHA-256 of each of numba's files of the callbacks under ``key``, by file name."""
    digests = {}
    for path in _numba_files(key):
        try:
            digests[path.name] = _digest(path.read_bytes())
        except OSError:
            continue
    return digests


def _read_entry(key: str, inputs: list[Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The index entry under ``key`` when it is whole, else None and what is wrong with it.

    The problem is None when there is nothing to load (no entry, or numba's files were
    deleted): compiling then is expected, not a sign of damage.
    """
    path = cache_dir() / f"{key}.json"
    try:
        text = path.read_text()
    except OSError:
        return None, None
    try:
        meta = json.loads(text)
    except ValueError:
        return None, f"{path.name} is not valid JSON"
    if not isinstance(meta, dict) or not _INDEX_KEYS <= meta.keys():
        return None, f"{path.name} lacks {sorted(_INDEX_KEYS)}"
    if meta["inputs"] != _input_specs(inputs):
        return None, f"{path.name} records other inputs than this model's"
    recorded = meta["files"]
    if not isinstance(recorded, dict) or not recorded:
        return None, f"{path.name} records no numba files"
    present = _file_digests(key)
    if not set(recorded) <= set(present):
        return None, None  # numba's files were removed: compile afresh
    changed = sorted(name for name, digest in recorded.items() if present[name] != digest)
    if changed:
        return None, f"numba's file {changed[0]} differs from what was stored (damaged)"
    return meta, None


def _load(
    model: Any,
    key: str,
    var_names: Iterable[str] | None,
    inputs: list[Any],
    start: Mapping[str, Any] | None = None,
) -> tuple[Any | None, str | None]:
    """The compiled model from the cache, or None and what is wrong with the entry.

    The problem is None when there is simply nothing to load (see :func:`_read_entry`).
    """
    import numba

    meta, problem = _read_entry(key, inputs)
    if meta is None:
        return None, problem
    try:
        # on a cache hit numba never looks at the body, so the inner functions are stand-ins
        logp = _logp_callback(key, meta["inputs"], _not_compiled)
    except numba.core.errors.NumbaError:
        return None, None  # not compiled for this machine's processor: compile it
    except Exception as err:  # noqa: BLE001 (numba unpickles its files: any error = damaged)
        return None, f"numba could not load its files ({type(err).__name__}: {err})"
    compiled = _compiled_model(model, var_names, inputs, logp_callback=logp, start=start)
    return compiled, None


def _remove_entry(key: str) -> None:
    """Delete the index entry and numba's files under ``key`` (a damaged entry)."""
    for path in [cache_dir() / f"{key}.json", *_numba_files(key)]:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def _entry_lock(key: str, *, exclusive: bool) -> Iterator[None]:
    """Hold the lock of the entry under ``key``: shared to read it, exclusive to write it.

    Without ``fcntl`` or a writable compile directory, no lock (see the module docstring).
    """
    try:
        import fcntl
    except ImportError:  # Windows has no fcntl
        yield
        return
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / f"{key}.lock", "a")  # closed by the with block below
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _graph_function(function: Any) -> Any:
    """The numba function of a compiled PyTensor graph, without PyTensor's caching wrapper.

    PyTensor hands out ``def f(*args): return jitable_func(*args)`` around the graph's
    function so that numba can cache it; numba links and optimises the whole graph once for
    that wrapper and once more for a callback that calls it. Calling the graph's function
    directly saves one of the two: 3-4 s of the first fit of a 47-patient cohort.
    """
    from numba.core.dispatcher import Dispatcher

    wrapper = function.vm.jit_fn
    python = getattr(wrapper, "py_func", None)
    code = getattr(python, "__code__", None)
    if code is None or code.co_argcount or not code.co_flags & inspect.CO_VARARGS:
        return wrapper  # not the caching wrapper (PyTensor did not make the graph cacheable)
    inner = python.__globals__.get("jitable_func")
    return inner if isinstance(inner, Dispatcher) else wrapper


def _store(key: str, meta: dict[str, Any]) -> None:
    """Write the index entry atomically (parallel fits may compile the same model).

    A compile directory that cannot be written (read-only, full) only means no cache: the
    fit goes on with the model compiled now.
    """
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as handle:
            json.dump(meta, handle)
        os.replace(handle.name, folder / f"{key}.json")
    except OSError:
        return


def _logp_function(model: Any, inputs: list[Any]) -> Any:
    """PyTensor (numba) function of the log density with its gradient.

    As ``nutpie.compile_pymc_model`` builds it, except that nothing depends on the cohort's
    sizes or values: it takes the flat parameter vector, an int64 ``layout`` (size of each
    sampled parameter, shape of those with 2+ dimensions) and the data inputs, and returns
    the same values as nutpie's.
    """
    import pytensor.tensor as pt
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph import clone_replace, rewrite_graph

    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    rewrites = ["canonicalize", "stabilize"]
    if not model.check_bounds:
        rewrites.append("local_remove_check_parameter")
    logp = rewrite_graph(model.logp(), include=rewrites)
    gradients = pt.grad(logp, values)
    gradient = pt.concatenate(
        [pt.as_tensor(g, allow_xtensor_conversion=True).ravel() for g in gradients]
    )

    joined = pt.dvector("_unconstrained_point")
    layout = pt.lvector("_layout")
    # layout: the size of each sampled parameter, then the shape of each one with two or
    # more dimensions. One split (and one join in the gradient) rather than a slice per
    # parameter keeps the graph, and numba's compilation of it, small.
    pieces = pt.split(joined, layout[: len(values)], n_splits=len(values)) if values else []
    if len(values) == 1:
        pieces = [pieces]
    position = len(values)
    shaped = []
    for value, piece in zip(values, pieces, strict=True):
        ndim = value.type.ndim
        if ndim == 0:
            piece = piece[0]
        elif ndim > 1:
            piece = piece.reshape(layout[position : position + ndim], ndim=ndim)
            position += ndim
        if any(length is not None for length in value.type.shape):
            piece = pt.specify_shape(piece, value.type.shape)
        shaped.append(piece.astype(value.dtype))
    symbolic = [var.type(name=var.name) for var in inputs]
    replacements = dict(zip(values, shaped, strict=True))
    replacements.update(zip(inputs, symbolic, strict=True))
    logp, gradient = clone_replace([logp, gradient], replacements)
    arguments = [joined, layout, *symbolic]
    with model:
        return compile_pymc(arguments, [logp, gradient], mode="NUMBA", on_unused_input="ignore")


def _compile(
    model: Any,
    key: str | None,
    var_names: Iterable[str] | None,
    inputs: list[Any],
    start: Mapping[str, Any] | None = None,
) -> Any:
    """Compile the model's log-density callback (into the cache unless ``key`` is None)."""
    logp_fn = _logp_function(model, inputs)
    if logp_fn.get_shared():
        raise RuntimeError("a shared variable was left out of the compiled function's inputs")
    specs = _input_specs(inputs)
    logp = _logp_callback(key, specs, _graph_function(logp_fn))
    if key is not None:
        _store(key, {"inputs": specs, "files": _file_digests(key)})
    return _compiled_model(
        model,
        var_names,
        inputs,
        logp_callback=logp,
        logp_function=logp_fn,
        start=start,
    )


def compile_for_nutpie(
    model: Any,
    var_names: Iterable[str] | None = None,
    start: Mapping[str, Any] | None = None,
) -> tuple[Any, str]:
    """A model compiled for ``nutpie.sample``, from the cache when it has been compiled before.

    The compiled model takes the cohort's ``pm.Data`` arrays, dimension lengths and observed
    data (:func:`magbayes.observed_inputs.observed_as_shared`) as inputs, so it is shared by
    every cohort of the same structure (same spec, same kinds of data) and by SBC's refits
    of it: only the first fit of such a model compiles.

    Parameters
    ----------
    model : pymc.Model
        The model.
    var_names : iterable of str, optional
        Variables kept in the trace (all when None).
    start : mapping of str to array, optional
        Starting values of some free variables, by name, on their constrained scale
        (a model's ``starting_values``); the others start at their support point. Not part
        of the fingerprint: the compiled callbacks do not depend on it.

    Returns
    -------
    compiled : nutpie.compile_pymc.CompiledPyMCModel
        Samples as ``nutpie.compile_pymc_model(model, var_names=var_names)`` would; its
        ``with_data`` takes new values for the model's shared variables, by name.
    source : {"cache", "compiled", "uncached", "nutpie"}
        Loaded from the cache; compiled now and stored; compiled now without the cache
        (cache turned off, or a model without a fingerprint); or compiled by
        ``nutpie.compile_pymc_model`` because nutpie's private pieces changed (with a
        :class:`CompilePathWarning`).
    """
    from magbayes.observed_inputs import observed_as_shared

    model, _ = observed_as_shared(model)
    try:
        _check_private_pieces()
        compiled, source, problem = _compile_through_cache(model, var_names, start)
    except _PRIVATE_PIECE_CHANGED as err:
        warnings.warn(_fallback_message(err), CompilePathWarning, stacklevel=2)
        return _compile_with_nutpie(model, var_names, start), "nutpie"
    if problem is not None:
        warnings.warn(
            f"the compile cache's entry for this model was damaged ({problem}); "
            "it was compiled again",
            CompilePathWarning,
            stacklevel=2,
        )
    return compiled, source


def _compile_through_cache(
    model: Any, var_names: Iterable[str] | None, start: Mapping[str, Any] | None
) -> tuple[Any, str, str | None]:
    """:func:`compile_for_nutpie`'s model and source, and what was wrong with a damaged entry."""
    outputs = _traced_outputs(model)
    inputs = data_inputs(model, outputs)
    key = model_fingerprint(model, var_names, outputs) if cache_enabled() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        if key is None:
            return _compile(model, None, var_names, inputs, start), "uncached", None
        with _entry_lock(key, exclusive=False):
            compiled, problem = _load(model, key, var_names, inputs, start)
        if compiled is not None:
            return compiled, "cache", None
        with _entry_lock(key, exclusive=True):
            # another process may have stored it while this one waited for the lock
            compiled, problem = _load(model, key, var_names, inputs, start)
            if compiled is not None:
                return compiled, "cache", None
            if problem is not None:
                _remove_entry(key)  # numba would try to load its damaged files again
            return _compile(model, key, var_names, inputs, start), "compiled", problem


def _check_private_pieces() -> None:
    """Raise when a private piece of nutpie or PyTensor that the cached path uses has changed.

    Raises
    ------
    ImportError, AttributeError or TypeError
        A piece is missing, or takes other arguments than magbayes passes.
    """
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _prepare_dims_and_coords,
        _rv_dict_to_flat_array_wrapper,
        _wrap_with_lock,
    )
    from pytensor.link.numba.cache import compile_numba_function_src

    numba_dir()  # PyTensor's numba cache folder (NUMBA_CACHE_PATH)
    fields = {field.name for field in dataclasses.fields(CompiledPyMCModel)}
    if not _MODEL_FIELDS <= fields:
        missing = sorted(_MODEL_FIELDS - fields)
        raise TypeError(f"nutpie's CompiledPyMCModel has no field {', '.join(missing)}")
    # the arguments they are given here
    calls = [
        ("nutpie", "_prepare_dims_and_coords", _prepare_dims_and_coords, (None,) * 3, {}),
        (
            "nutpie",
            "_rv_dict_to_flat_array_wrapper",
            _rv_dict_to_flat_array_wrapper,
            (None,),
            {"names": None, "shapes": None},
        ),
        ("nutpie", "_wrap_with_lock", _wrap_with_lock, (None,), {}),
        (
            "PyTensor",
            "compile_numba_function_src",
            compile_numba_function_src,
            ("", "", {}),
            {"cache_key": ""},
        ),
    ]
    for package, name, function, args, kwargs in calls:
        try:
            inspect.signature(function).bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{package}'s {name} takes other arguments ({err})") from err


def _fallback_message(err: BaseException) -> str:
    installed = ", ".join(f"{name} {version(name)}" for name in ("nutpie", "pytensor", "pymc"))
    return (
        f"magbayes's compile cache cannot use this nutpie or PyTensor ({installed}): "
        f"{type(err).__name__}: {err}. The model is compiled by nutpie.compile_pymc_model "
        "instead (the same draws' distribution; every fit compiles afresh). The versions "
        "magbayes was tested with are in its constraints.txt."
    )


def _compile_with_nutpie(
    model: Any, var_names: Iterable[str] | None, start: Mapping[str, Any] | None
) -> Any:
    """The model compiled by nutpie's public function, with the same starting points."""
    import nutpie

    return nutpie.compile_pymc_model(
        model, var_names=var_names, initial_points=dict(start) if start else None
    )
