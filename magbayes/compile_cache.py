"""Compile a PyMC model for nutpie once, and reuse the compiled model in later processes.

nutpie samples from two C callbacks made from a PyMC model: the log density with its
gradient, and the "expand" function that turns a draw into the values of the trace
(constrained parameters, deterministics). ``nutpie.compile_pymc_model`` makes both with numba
at every call, and numba cannot keep them on disk because they refer to functions created at
run time. For the 47-patient progression model that is about 15 of the 35 seconds of a fit
(docs/performance.md).

Here the same two callbacks are made from source text registered with PyTensor's numba cache
(:mod:`pytensor.link.numba.cache`) under a **fingerprint of the model**: the graph of its log
density and of the traced values, node by node, with the bytes of every constant (so the
cohort's data), the names, types and order of the sampled parameters, and the versions of
the libraries that compile it. A later fit of the same model (same cohort, same spec, any
seed) in any process loads both callbacks from disk and skips PyTensor's graph rewriting as
well; only the initial-point function is rebuilt.

Anything that cannot be fingerprinted with certainty (an operation without ``__props__``, a
value without a stable text form), and a model whose compiled functions read shared data at
run time (nutpie's ``with_data``, as SBC uses), is compiled by ``nutpie.compile_pymc_model``
as before. The callbacks call the very functions nutpie's would, so a fit draws the same
numbers either way.

**Reproducibility.** A model loaded from the cache runs the very machine code that was stored,
so every fit that loads it draws the same numbers for a given seed. The fit that compiles it
can differ from them in the last bits: in that process the callbacks may call the functions
numba has just compiled rather than their stored copies, and a few thousand leapfrog steps
amplify a last-bit difference into different (equally valid) draws. This was already so
before the cache, between a fit that compiled PyTensor's pieces and one that loaded them.

The cache lives in PyTensor's compile directory (``pytensor.config.base_compiledir``):
numba's files in ``numba/``, the index of compiled models in ``magbayes/``. Deleting that
directory clears both. ``MAGBAYES_COMPILE_CACHE=0`` compiles every time.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

#: Bump when the callback source below changes.
CALLBACK_VERSION = "2"

_LOGP_SOURCE = """
def magbayes_logp(dim, x_, out_, logp_, user_data_):
    if dim != N_DIM:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_DIM,))
        logp = numba.carray(logp_, ())
        logp_value, gradient = logp_and_gradient(x)
        logp[()] = logp_value
        for i in range(N_DIM):
            out[i] = gradient[i]
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_value):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SOURCE = """
def magbayes_expand(dim, expanded, x_, out_, user_data_):
    if dim != N_DIM:
        return -1
    if expanded != N_EXPANDED:
        return -1
    try:
        x = numba.carray(x_, (N_DIM,))
        out = numba.carray(out_, (N_EXPANDED,))
        (values,) = expand(x)
        for i in range(N_EXPANDED):
            out[i] = values[i]
    except Exception:
        return -2
    return 0
"""


#: What an index entry holds (besides numba's files): nutpie's layout of the parameters.
_INDEX_KEYS = {"n_dim", "n_expanded", "names", "slices", "shapes", "reparameterized"}


class UnfingerprintableError(Exception):
    """A model graph holds something without a stable text form."""


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

    Constants and shared variables (e.g. a dimension's length) are written with a digest of
    their bytes, other roots
    with their name and type (``inputs``, when given, first and in their order), operations
    with their class and properties.

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
        if isinstance(var, Constant):
            text = f"constant {var.type} {_array_text(np.asarray(var.data))}"
        elif isinstance(var, SharedVariable):
            value = var.get_value(borrow=True)
            if not isinstance(value, np.ndarray | np.generic | int | float):
                raise UnfingerprintableError(f"shared variable {var.name} holds a {type(value)}")
            text = f"shared {var.name} {var.type} {_array_text(np.asarray(value))}"
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


def model_fingerprint(model: Any, var_names: Iterable[str] | None = None) -> str | None:
    """Fingerprint of what nutpie compiles from a PyMC model, or None when there is none.

    Parameters
    ----------
    model : pymc.Model
        The model.
    var_names : iterable of str, optional
        Variables kept in the trace (all when None).

    Returns
    -------
    str or None
        A SHA-256 hex digest; None when part of the graph has no stable text form.
    """
    import pytensor

    free = [model.rvs_to_values[rv] for rv in model.free_RVs]
    outputs = [model.logp(), *model.unobserved_value_vars]
    try:
        lines = graph_text(outputs)
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


def _callback(source: str, name: str, key: str, env: dict[str, Any], signature: Any) -> Any:
    """A numba C callback from ``source``, cached on disk under ``key``."""
    import numba
    from pytensor.link.numba.cache import compile_numba_function_src

    # "__name__": numba rebuilds the callback's environment from an importable module
    globals_ = {"np": np, "numba": numba, "__name__": __name__, **env}
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


def _callbacks(key: str, meta: dict[str, Any], logp_inner: Any, expand_inner: Any) -> tuple:
    """The log-density and expand callbacks of a model, compiled or loaded under ``key``.

    ``logp_inner(x) -> (logp, gradient)`` and ``expand_inner(x) -> (values,)`` are the
    numba functions PyTensor compiled; on a cache hit numba does not call them.
    """
    logp_signature, expand_signature = _signatures()
    sizes = {"N_DIM": meta["n_dim"], "N_EXPANDED": meta["n_expanded"]}
    logp = _callback(
        _LOGP_SOURCE,
        "magbayes_logp",
        key,
        {**sizes, "logp_and_gradient": logp_inner},
        logp_signature,
    )
    expand = _callback(
        _EXPAND_SOURCE, "magbayes_expand", key, {**sizes, "expand": expand_inner}, expand_signature
    )
    return logp, expand


def _not_compiled(*args: Any) -> Any:
    raise RuntimeError("a cached callback was not found")


def _compiled_model(
    model: Any,
    *,
    logp_callback: Any,
    expand_callback: Any,
    meta: dict[str, Any],
    logp_function: Any = None,
    expand_function: Any = None,
) -> Any:
    """Wrap the two callbacks in nutpie's compiled-model object."""
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _prepare_dims_and_coords,
        _rv_dict_to_flat_array_wrapper,
        _wrap_with_lock,
        make_user_data,
    )
    from pymc.initial_point import make_initial_point_fn

    names = meta["names"]
    shapes = [tuple(shape) for shape in meta["shapes"]]
    slices = [slice(start, stop) for start, stop in meta["slices"]]
    shape_info = (names, slices, shapes)
    n_free = len(model.free_RVs)
    # the same initial points as nutpie.compile_pymc_model's defaults
    point = make_initial_point_fn(
        model=model,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    initial_point = _rv_dict_to_flat_array_wrapper(
        _wrap_with_lock(point), names=names[:n_free], shapes=shapes[:n_free]
    )
    dims, coords = _prepare_dims_and_coords(model, shape_info, meta["reparameterized"])
    return CompiledPyMCModel(
        _n_dim=meta["n_dim"],
        dims=dims,
        _coords=coords,
        _shapes={name: shape for name, shape in zip(names, shapes, strict=True)},
        compiled_logp_func=logp_callback,
        compiled_expand_func=expand_callback,
        initial_point_func=initial_point,
        shared_data={},
        shared_var_keys={},
        user_data=make_user_data({}, {}),
        n_expanded=meta["n_expanded"],
        shape_info=shape_info,
        logp_func=logp_function,
        expand_func=expand_function,
        reparameterized_names=meta["reparameterized"],
    )


def _load(model: Any, key: str) -> Any | None:
    """The compiled model from the cache, or None when any part of it is missing."""
    import numba

    path = cache_dir() / f"{key}.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not _INDEX_KEYS <= meta.keys():
        return None
    if len(meta["names"]) < len(model.free_RVs):
        return None
    try:
        # on a cache hit numba never looks at the body, so the inner functions are stand-ins
        logp, expand = _callbacks(key, meta, _not_compiled, _not_compiled)
    except numba.core.errors.NumbaError:
        return None  # numba's files were removed: compile afresh
    return _compiled_model(model, logp_callback=logp, expand_callback=expand, meta=meta)


def _graph_function(function: Any) -> Any:
    """The numba function of a compiled PyTensor graph, without PyTensor's caching wrapper.

    PyTensor hands out ``def f(*args): return jitable_func(*args)`` around the graph's
    function so that numba can cache it; numba links and optimises the whole graph once for
    that wrapper and once more for a callback that calls it. Calling the graph's function
    directly saves one of the two: 3-4 s of the first fit of a 47-patient cohort.
    """
    from numba.core.dispatcher import Dispatcher

    wrapper = function.vm.jit_fn
    inner = getattr(getattr(wrapper, "py_func", None), "__globals__", {}).get("jitable_func")
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


def _compile(model: Any, key: str, var_names: Iterable[str] | None) -> Any | None:
    """Compile the model's callbacks into the cache; None when the model has shared data."""
    from nutpie.compile_pymc import _make_functions

    (n_dim, n_expanded, logp_fn, expand_fn, _, shape_info, reparameterized) = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=_not_compiled,  # not called here; rebuilt in _compiled_model
        var_names=var_names,
    )
    if logp_fn.get_shared() or expand_fn.get_shared():
        return None
    names, slices, shapes = shape_info
    meta = {
        "n_dim": int(n_dim),
        "n_expanded": int(n_expanded),
        "names": list(names),
        "slices": [[int(s.start), int(s.stop)] for s in slices],
        "shapes": [[int(n) for n in shape] for shape in shapes],
        "reparameterized": list(reparameterized),
    }
    logp, expand = _callbacks(key, meta, _graph_function(logp_fn), _graph_function(expand_fn))
    _store(key, meta)
    return _compiled_model(
        model,
        logp_callback=logp,
        expand_callback=expand,
        meta=meta,
        logp_function=logp_fn,
        expand_function=expand_fn,
    )


def compile_for_nutpie(model: Any, var_names: Iterable[str] | None = None) -> tuple[Any, str]:
    """A model compiled for ``nutpie.sample``, from the cache when it has been compiled before.

    Parameters
    ----------
    model : pymc.Model
        The model.
    var_names : iterable of str, optional
        Variables kept in the trace (all when None).

    Returns
    -------
    compiled : nutpie.compile_pymc.CompiledPyMCModel
        What ``nutpie.compile_pymc_model(model, var_names=var_names)`` returns.
    source : {"cache", "compiled", "nutpie"}
        Loaded from the cache; compiled now (and stored); or compiled by nutpie without the
        cache (cache turned off, model not fingerprintable, shared data).
    """
    import nutpie

    key = model_fingerprint(model, var_names) if cache_enabled() else None
    if key is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=Warning)
            compiled = _load(model, key)
            if compiled is not None:
                return compiled, "cache"
            compiled = _compile(model, key, var_names)
        if compiled is not None:
            return compiled, "compiled"
    return nutpie.compile_pymc_model(model, var_names=var_names), "nutpie"
