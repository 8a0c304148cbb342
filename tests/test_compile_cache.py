"""The compile cache: a model compiled once is loaded in later processes, and samples the same.

The fingerprint must change with anything that changes the compiled functions (constants,
priors, traced variables) and stay the same across processes; a cached model must give nutpie the
same log density, gradient and draws as ``nutpie.compile_pymc_model``.
"""

import ctypes
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import nutpie
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from magbayes import compile_cache
from magbayes.compile_cache import compile_for_nutpie, model_fingerprint, sample_compiled
from magbayes.sampler import nutpie_seed, sample_options, sample_posterior

MODEL_SOURCE = textwrap.dedent(
    """
    import numpy as np
    import pymc as pm

    def small_model(outcome_shift=0.0, sd_scale=1.0):
        rng = np.random.default_rng(11)
        site = np.repeat([0, 1, 2], 8)
        outcome = rng.normal(size=24) + site + outcome_shift
        coords = {"site": ["Paris", "Lyon", "Lille"], "visit": np.arange(24)}
        with pm.Model(coords=coords) as model:
            spread = pm.HalfNormal("site_spread", sd_scale)
            offset = pm.Normal("site_offset", 0.0, 1.0, dims="site")
            mean = pm.Deterministic("site_mean", spread * offset, dims="site")
            noise = pm.Exponential("noise_sd", 1.0)
            pm.Normal("outcome", mean[site], noise, observed=outcome, dims="visit")
        return model

    def data_model(n_sites=3, per_site=8, seed=11):
        # the same model with its data as pm.Data: another cohort of the same structure
        rng = np.random.default_rng(seed)
        site = np.repeat(np.arange(n_sites), per_site)
        outcome = rng.normal(size=site.size) + site
        coords = {"site": [f"site {k}" for k in range(n_sites)], "visit": np.arange(site.size)}
        with pm.Model(coords=coords) as model:
            site_of_visit = pm.Data("site_of_visit", site)
            spread = pm.HalfNormal("site_spread", 1.0)
            offset = pm.Normal("site_offset", 0.0, 1.0, dims="site")
            mean = pm.Deterministic("site_mean", spread * offset, dims="site")
            noise = pm.Exponential("noise_sd", 1.0)
            pm.Normal(
                "outcome",
                mean[site_of_visit],
                noise,
                observed=pm.Data("outcome_observed", outcome),
                dims="visit",
            )
        return model
    """
)
namespace: dict = {}
exec(MODEL_SOURCE, namespace)  # the same builder runs in the child process below
small_model = namespace["small_model"]
data_model = namespace["data_model"]


def _draws(compiled):
    tree = sample_compiled(
        compiled, draws=100, tune=100, chains=2, cores=1, seed=nutpie_seed(5, 2), progress_bar=False
    )
    return tree["posterior"].to_dataset()


def test_fingerprint_is_stable_and_follows_data_priors_and_traced_variables():
    key = model_fingerprint(small_model())
    assert key is not None and len(key) == 64
    assert model_fingerprint(small_model()) == key
    assert model_fingerprint(small_model(outcome_shift=0.5)) != key  # cohort data
    assert model_fingerprint(small_model(sd_scale=2.0)) != key  # a prior
    assert model_fingerprint(small_model(), var_names=["site_mean"]) != key


def test_fingerprint_is_the_same_in_another_process():
    script = MODEL_SOURCE + textwrap.dedent(
        """
        from magbayes.compile_cache import model_fingerprint
        print(model_fingerprint(small_model()))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert child.stdout.strip().splitlines()[-1] == model_fingerprint(small_model())


class _NoProps(Op):
    """An operation without __props__: nothing says when two of them are equal."""

    def make_node(self, x):
        x = pt.as_tensor(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(inputs[0])


def test_a_graph_without_a_stable_text_has_no_fingerprint():
    with pm.Model() as model:
        x = pm.Normal("x")
        pm.Potential("opaque", _NoProps()(x))
    assert model_fingerprint(model) is None


def test_fingerprint_ignores_the_values_and_sizes_of_pm_data():
    key = model_fingerprint(data_model())
    assert model_fingerprint(data_model(seed=12)) == key  # other values
    assert model_fingerprint(data_model(n_sites=4, per_site=5)) == key  # other sizes
    assert model_fingerprint(small_model()) != key  # data as constants: another structure


def test_turned_off_cache_compiles_every_time(monkeypatch):
    monkeypatch.setenv("MAGBAYES_COMPILE_CACHE", "0")
    compiled, source = compile_for_nutpie(small_model())
    assert source == "uncached"
    assert compiled.n_dim == 5


def test_without_pytensors_numba_cache_nothing_is_cached(monkeypatch):
    import pytensor

    monkeypatch.setattr(pytensor.config, "numba__cache", False)
    _, source = compile_for_nutpie(small_model())
    assert source == "uncached"


def _density(compiled, point):
    """Log density and gradient from a compiled model's C callback (as nutpie calls it)."""
    double_p = ctypes.POINTER(ctypes.c_double)
    gradient, logp = np.zeros(compiled.n_dim), np.zeros(())
    status = compiled.compiled_logp_func.ctypes(
        compiled.n_dim,
        point.ctypes.data_as(double_p),
        gradient.ctypes.data_as(double_p),
        logp.ctypes.data_as(double_p),
        ctypes.c_void_p(compiled.user_data.ctypes.data),
    )
    assert status == 0
    return float(logp), gradient


def _assert_same_density(compiled, reference, seed=3):
    assert compiled.n_dim == reference.n_dim
    # the same sampled parameters in the same order (nutpie's list then has the traced values)
    sampled = compiled.shape_info[0]
    assert sampled == reference.shape_info[0][: len(sampled)]
    rng = np.random.default_rng(seed)
    for _ in range(5):
        point = rng.normal(size=compiled.n_dim)
        logp, gradient = _density(compiled, point)
        logp_ref, gradient_ref = _density(reference, point)
        np.testing.assert_allclose(logp, logp_ref, rtol=1e-12)
        np.testing.assert_allclose(gradient, gradient_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_cached_model_gives_nutpies_density_and_gradient():
    model = small_model()
    compiled, source = compile_for_nutpie(model)
    assert source in {"compiled", "cache"}
    reference = nutpie.compile_pymc_model(model)
    _assert_same_density(compiled, reference)
    ours = _draws(compiled)
    theirs = _draws(reference)
    # the same variables with the same dimensions, in the same order
    assert list(ours.data_vars) == list(theirs.data_vars)
    for name in ours.data_vars:
        assert ours[name].dims == theirs[name].dims
    assert ours["site_mean"].dims == ("chain", "draw", "site")
    # the deterministic is computed from each draw's parameters
    np.testing.assert_allclose(
        ours["site_mean"].values, ours["site_spread"].values[..., None] * ours["site_offset"]
    )
    # the same model again: loaded, not compiled, and the same code draws the same numbers
    again, source = compile_for_nutpie(small_model())
    assert source == "cache"
    for name in ours.data_vars:
        np.testing.assert_array_equal(_draws(again)[name].values, ours[name].values)


@pytest.mark.slow
def test_another_cohort_of_the_same_structure_loads_the_compiled_model():
    compile_for_nutpie(data_model())  # compiled here (or earlier)
    other = data_model(n_sites=4, per_site=5, seed=21)  # other sizes and values
    compiled, source = compile_for_nutpie(other)
    assert source == "cache"
    assert compiled.n_dim == 1 + 4 + 1  # spread, 4 offsets, noise
    _assert_same_density(compiled, nutpie.compile_pymc_model(other))
    draws = _draws(compiled)
    assert draws["site_mean"].shape == (2, 100, 4)
    # the trace's deterministic is computed from this cohort's parameters
    np.testing.assert_allclose(
        draws["site_mean"].values, draws["site_spread"].values[..., None] * draws["site_offset"]
    )


@pytest.mark.slow
def test_observed_data_are_inputs_so_another_outcome_and_sbc_load_the_compiled_model():
    """``compile_for_nutpie`` makes each observed variable's data an input
    (``magbayes.observed_inputs``): a model whose outcome is a constant loads what another
    outcome of the same design compiled, with the density of its own outcome, and so does
    SBC's copy of the model (whose observed data are already inputs)."""
    from magbayes.sbc import SBCProblem

    compile_for_nutpie(small_model())  # compiled here (or earlier)
    other = small_model(outcome_shift=0.5)  # another outcome, kept as a constant
    compiled, source = compile_for_nutpie(other)
    assert source == "cache"
    _assert_same_density(compiled, nutpie.compile_pymc_model(other))
    problem = SBCProblem(small_model(), parameters=["site_spread"])
    assert problem.shared_names == {"outcome": "observed_outcome"}
    _, source = compile_for_nutpie(problem.fit_model)
    assert source == "cache"


def test_a_model_with_more_than_thirty_data_inputs_compiles():
    """The callbacks pass every data input to the compiled graph: past 30 arguments Python
    builds a call from a list, which numba cannot type (the progression model with hundreds
    of patients, some early-sural statuses unknown, has 32 inputs)."""
    rng = np.random.default_rng(4)
    with pm.Model() as model:
        shifts = [pm.Data(f"shift_{k}", rng.normal(size=3)) for k in range(34)]
        level = pm.Normal("level", 0.0, 1.0)
        pm.Normal("outcome", level + pt.sum(pt.stack(shifts), axis=0), 1.0, observed=np.ones(3))
    assert len(compile_cache.data_inputs(model)) > 30
    compiled, _ = compile_for_nutpie(model)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    for level in (-1.0, 0.5):
        density, gradient = _density(compiled, np.array([level]))
        np.testing.assert_allclose(density, logp({"level": level}), rtol=1e-12)
        np.testing.assert_allclose(gradient, dlogp({"level": level}), rtol=1e-12)


@pytest.mark.slow
def test_with_data_gives_the_density_of_the_new_data():
    compiled, _ = compile_for_nutpie(data_model())
    other = data_model(seed=31)  # same sizes, other outcomes
    new = other["outcome_observed"].get_value()
    swapped = compiled.with_data(outcome_observed=new)
    _assert_same_density(swapped, nutpie.compile_pymc_model(other), seed=4)
    _assert_same_density(compiled, nutpie.compile_pymc_model(data_model()), seed=4)  # unchanged


@pytest.mark.slow
def test_traced_values_follow_the_data_a_compiled_model_is_given():
    """Deterministics are computed after sampling from each draw and the model's current
    data: after ``with_data`` from the new data, and in the warm-up draws too."""
    rng = np.random.default_rng(2)
    with pm.Model(coords={"visit": np.arange(6)}) as model:
        shift = pm.Data("shift", rng.normal(size=6), dims="visit")
        level = pm.Normal("level", 0.0, 1.0)
        spread = pm.HalfNormal("spread", 1.0)
        pm.Deterministic("shifted", level + shift, dims="visit")
        pm.Normal("outcome", level + shift, spread, observed=rng.normal(size=6), dims="visit")
    compiled, _ = compile_for_nutpie(model)
    new_shift = np.linspace(-1.0, 1.0, 6)
    tree = sample_compiled(
        compiled.with_data(shift=new_shift),
        draws=30,
        tune=20,
        chains=1,
        cores=1,
        seed=1,
        progress_bar=False,
    )
    for group in ("posterior", "warmup_posterior"):
        draws = tree[group]
        assert draws["shifted"].dims == ("chain", "draw", "visit")
        np.testing.assert_allclose(draws["shifted"], draws["level"].values[..., None] + new_shift)
        assert "spread_log__" not in draws and draws["spread"].values.min() > 0
    assert tree["posterior"].attrs["deterministics_time"] >= 0


LOAD_AND_DRAW = textwrap.dedent(
    """
    import json
    import nutpie
    from magbayes.compile_cache import compile_for_nutpie, sample_compiled
    from magbayes.sampler import nutpie_seed

    compiled, source = compile_for_nutpie(small_model())
    tree = sample_compiled(compiled, draws=100, tune=100, chains=2, cores=1,
                           seed=nutpie_seed(5, 2), progress_bar=False)
    offsets = tree["posterior"]["site_offset"].values.tolist()
    print(json.dumps({"source": source, "site_offset": offsets}))
    """
)


@pytest.mark.slow
def test_later_processes_load_the_compiled_model_and_draw_the_same():
    compile_for_nutpie(small_model())  # compiled here (or earlier)
    results = []
    for _ in range(2):
        child = subprocess.run(
            [sys.executable, "-c", MODEL_SOURCE + LOAD_AND_DRAW],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    assert [result["source"] for result in results] == ["cache", "cache"]
    # the same code loaded from disk: the same draws in every later process
    np.testing.assert_array_equal(results[0]["site_offset"], results[1]["site_offset"])


def test_a_damaged_index_entry_is_compiled_again():
    model = small_model(sd_scale=1.25)  # an entry of its own (another prior)
    key = compile_cache.compile_key(model)
    compile_for_nutpie(model)
    index = compile_cache.cache_dir() / f"{key}.json"
    for damaged in ['{"inputs": [', '{"n_dim": 5}', "[]", '{"inputs": [["int64", 2]]}']:
        index.write_text(damaged)  # cut short; keys missing; inputs of another structure
        with pytest.warns(compile_cache.CompilePathWarning, match="damaged"):
            _, source = compile_for_nutpie(small_model(sd_scale=1.25))
        assert source == "compiled"
        stored = json.loads(index.read_text())["inputs"]
        # the parameter layout, the lengths of the dimensions site and visit, the outcome
        assert sorted(stored) == sorted([["int64", 1], ["int64", 0], ["int64", 0], ["float64", 1]])


@pytest.mark.slow
def test_sample_posterior_draws_what_pm_sample_draws(monkeypatch):
    model = small_model()
    settings = {"draws": 100, "tune": 100, "chains": 2, "cores": 1, "seed": 7}
    # compiled once beforehand, so that both fits below find PyTensor's pieces in its cache
    # (a graph compiled afresh and one loaded can differ in the last bits)
    nutpie.compile_pymc_model(model)
    theirs = pm.sample(
        model=model, **sample_options(settings), progressbar=False, compute_convergence_checks=False
    )

    # compiled by nutpie in both, so the same code: the same seed and options give the same draws
    def compile_with_nutpie(m, start=None):
        assert start is None  # pm.sample above started at the support points too
        return nutpie.compile_pymc_model(m), "nutpie"

    monkeypatch.setattr(compile_cache, "compile_for_nutpie", compile_with_nutpie)
    ours = sample_posterior(model, settings)
    for name in theirs["posterior"].data_vars:
        np.testing.assert_array_equal(
            ours["posterior"][name].values, theirs["posterior"][name].values
        )
    assert {"posterior", "sample_stats", "observed_data"} <= set(ours.children)
    assert ours["posterior"].attrs["sampling_time"] > 0
    assert ours["posterior"].attrs["compiled_from"] == "nutpie"
    monkeypatch.undo()
    cached = sample_posterior(model, settings)
    assert cached["posterior"].attrs["compiled_from"] in {"compiled", "cache"}
    assert cached["posterior"]["site_mean"].dims == ("chain", "draw", "site")


def test_an_unwritable_cache_folder_only_means_no_cache(monkeypatch, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setattr(compile_cache, "cache_dir", lambda: blocked / "magbayes")
    compiled, source = compile_for_nutpie(small_model(outcome_shift=0.75))
    assert source == "compiled"
    assert compiled.n_dim == 5
    # nothing was stored, so the next fit compiles again
    _, source = compile_for_nutpie(small_model(outcome_shift=0.75))
    assert source == "compiled"


# ------------------------------------------------- nutpie's private pieces missing or changed


def _nutpie_without(monkeypatch, name, replacement=None):
    """Make ``from nutpie.compile_pymc import name`` see a release without (or with another)
    ``name``, as a new nutpie would; nutpie's own functions keep their pieces."""
    original = sys.modules["nutpie.compile_pymc"]
    changed = types.ModuleType("nutpie.compile_pymc")
    changed.__dict__.update({k: v for k, v in vars(original).items() if k != name})
    if replacement is not None:
        setattr(changed, name, replacement)
    monkeypatch.setitem(sys.modules, "nutpie.compile_pymc", changed)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        ("_wrap_with_lock", None),  # removed: ImportError
        ("_rv_dict_to_flat_array_wrapper", lambda function, *, layout: function),  # TypeError
    ],
)
def test_without_nutpies_private_pieces_a_fit_compiles_with_nutpie(monkeypatch, name, replacement):
    _nutpie_without(monkeypatch, name, replacement)
    settings = {"draws": 50, "tune": 50, "chains": 1, "cores": 1, "seed": 7}
    with pytest.warns(compile_cache.CompilePathWarning, match=name) as caught:
        tree = sample_posterior(small_model(), settings)
    ours = [w for w in caught if issubclass(w.category, compile_cache.CompilePathWarning)]
    assert len(ours) == 1
    assert "nutpie.compile_pymc_model" in str(ours[0].message)
    assert tree["posterior"].attrs["compiled_from"] == "nutpie"
    offsets = tree["posterior"]["site_offset"]
    assert offsets.dims == ("chain", "draw", "site") and offsets.shape == (1, 50, 3)
    assert np.isfinite(offsets.values).all()


# ---------------------------------------------- two fits at once, and damaged numba files

TINY_FIT = textwrap.dedent(
    """
    import ctypes, json
    import numpy as np
    import pymc as pm
    from magbayes.compile_cache import compile_for_nutpie, sample_compiled

    with pm.Model() as model:
        level = pm.Normal("level", 0.0, 1.0)
        spread = pm.HalfNormal("spread", 1.0)
        observed = pm.Data("observed", np.array([0.3, -0.2, 1.1, 0.4]))
        pm.Normal("outcome", level, spread, observed=observed)
    compiled, source = compile_for_nutpie(model)
    # the compiled callback's log density and gradient against PyMC's at a few points
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    double_p = ctypes.POINTER(ctypes.c_double)
    error = 0.0
    for point in ([0.1, -0.3], [-1.2, 0.8], [2.0, 0.0]):
        x = np.asarray(point)
        gradient, density = np.zeros(2), np.zeros(())
        status = compiled.compiled_logp_func.ctypes(
            2, x.ctypes.data_as(double_p), gradient.ctypes.data_as(double_p),
            density.ctypes.data_as(double_p), ctypes.c_void_p(compiled.user_data.ctypes.data))
        values = {"level": x[0], "spread_log__": x[1]}
        error = max(error, status, abs(float(density) - logp(values)),
                    float(np.max(np.abs(gradient - dlogp(values)))))
    tree = sample_compiled(compiled, draws=50, tune=50, chains=1, cores=1, seed=3,
                           progress_bar=False)
    level_draws = tree["posterior"]["level"].values
    print(json.dumps({"source": source, "error": error, "shape": list(level_draws.shape),
                      "finite": bool(np.isfinite(level_draws).all())}))
    """
)


def _start_tiny_fit(compile_dir: Path) -> subprocess.Popen:
    """A process that compiles (or loads) and samples a 2-parameter model in ``compile_dir``."""
    root = Path(compile_cache.__file__).resolve().parents[1]  # this checkout's magbayes
    env = {
        **os.environ,
        "PYTENSOR_FLAGS": f"base_compiledir={compile_dir}",
        "PYTHONPATH": str(root),
        "MAGBAYES_COMPILE_CACHE": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-c", TINY_FIT],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[dict, str]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def _entries(compile_dir: Path) -> list[Path]:
    return sorted((compile_dir / "magbayes").glob("*.json"))


def _entry_is_whole(compile_dir: Path, entry: Path) -> bool:
    recorded = json.loads(entry.read_text())["files"]
    numba = compile_dir / "numba"
    return bool(recorded) and all(
        (numba / name).is_file()
        and hashlib.sha256((numba / name).read_bytes()).hexdigest() == digest
        for name, digest in recorded.items()
    )


@pytest.fixture(scope="module")
def two_fits_at_once(tmp_path_factory):
    """Two processes started together on an empty compile directory: their results."""
    compile_dir = tmp_path_factory.mktemp("compiledir")
    started = time.perf_counter()
    processes = [_start_tiny_fit(compile_dir), _start_tiny_fit(compile_dir)]
    results = [_finish(process)[0] for process in processes]
    return compile_dir, results, time.perf_counter() - started


@pytest.mark.slow
def test_two_fits_at_once_compile_once_and_leave_one_whole_entry(two_fits_at_once):
    compile_dir, results, _ = two_fits_at_once
    # one compiled (holding the entry's lock), the other waited and loaded what it stored
    assert sorted(result["source"] for result in results) == ["cache", "compiled"]
    for result in results:
        assert result["error"] < 1e-10  # the log density and gradient of this model
        assert result["shape"] == [1, 50] and result["finite"]
    entries = _entries(compile_dir)
    assert len(entries) == 1
    assert _entry_is_whole(compile_dir, entries[0])
    assert not list((compile_dir / "magbayes").glob("*.tmp"))
    assert not [p for p in (compile_dir / "numba").iterdir() if ".tmp." in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_numba_files_are_compiled_again_with_a_warning(two_fits_at_once, damage):
    compile_dir, _, _ = two_fits_at_once
    (entry,) = _entries(compile_dir)
    recorded = json.loads(entry.read_text())["files"]
    name = next(n for n in sorted(recorded) if "magbayes_logp" in n and n.endswith(".nbc"))
    if damage == "truncated":
        path = compile_dir / "numba" / name
        path.write_bytes(path.read_bytes()[:200])
    else:
        index = name.rsplit(".", 2)[0] + ".nbi"  # numba's index of the same callback
        (compile_dir / "numba" / index).write_bytes(b"not numba's index")
    result, err = _finish(_start_tiny_fit(compile_dir))
    assert result["source"] == "compiled"
    assert "CompilePathWarning" in err and "damaged" in err
    assert result["error"] < 1e-10 and result["finite"]
    assert _entries(compile_dir) == [entry]
    assert _entry_is_whole(compile_dir, entry)
