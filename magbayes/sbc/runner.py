"""Run simulation-based calibration on a Dask cluster, resumably.

Each fit ``i`` is independent: its seed is derived from the run's seed and ``i``
(:func:`fit_seed`), it draws parameters and data from the prior, refits, and ranks the truth.
Fits run as Dask tasks (:func:`run_one_fit`); each worker builds and compiles the model once
and keeps it for every later fit of the same structure.

Files in the output folder (appended per fit, as fits finish):

``ranks.csv``
    One row per fit and parameter: ``fit``, ``seed``, ``parameter``, ``rank``, ``n_draws``,
    ``status`` (``ok`` / ``failed``), ``truth``, ``posterior_mean``, ``posterior_sd``,
    ``error``.
``fits.csv``
    One row per fit: ``fit``, ``seed``, ``status``, ``error``, ``warning`` (e.g. a prior
    draw outside the support the fitted model imposes), ``sampling_seconds``,
    ``setup_seconds`` (model build and compilation on that worker, 0 when reused),
    ``divergences``, ``r_hat_max``, ``ess_bulk_min``, ``worker``. A fit counts as done
    once its row is here (it is written after the fit's ranks), so a rerun skips it.
``sbc.json``
    The structure (spec, cohort design) and settings; a rerun into the same folder must use
    the same ones.

After the fits: ``uniformity.csv`` (:mod:`magbayes.sbc.uniformity`) and ``figures/``
(:mod:`magbayes.sbc.figures`).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from magbayes.atomic import write_csv, write_json
from magbayes.sbc.prior_draws import ModelStructure, SBCProblem
from magbayes.sbc.ranks import fit_ranks

RANKS_FILE = "ranks.csv"
FITS_FILE = "fits.csv"
RUN_FILE = "sbc.json"
UNIFORMITY_FILE = "uniformity.csv"

RANK_COLUMNS = [
    "fit",
    "seed",
    "parameter",
    "rank",
    "n_draws",
    "status",
    "truth",
    "posterior_mean",
    "posterior_sd",
    "error",
]
FIT_COLUMNS = [
    "fit",
    "seed",
    "status",
    "error",
    "warning",
    "sampling_seconds",
    "setup_seconds",
    "divergences",
    "r_hat_max",
    "ess_bulk_min",
    "worker",
]


class SBCSetupError(ValueError):
    """The output folder holds a run with other settings, or the settings are invalid."""


@dataclass(frozen=True)
class SBCSettings:
    """Settings of an SBC run.

    Attributes
    ----------
    fits : int
        Number of fits (prior draws).
    seed : int
        Run seed; fit ``i`` uses :func:`fit_seed` (seed, i).
    draws, tune, chains : int
        Posterior draws and tuning steps per chain, number of chains, per fit.
    thin : int
        Keep every ``thin``-th posterior draw of each chain for the ranks, so that ranks
        are computed on roughly independent draws; ``L = chains * ceil(draws / thin)``.
    target_accept : float
        NUTS target acceptance rate.
    """

    fits: int = 100
    seed: int = 2020
    draws: int = 300
    tune: int = 300
    chains: int = 2
    thin: int = 6
    target_accept: float = 0.9

    def __post_init__(self) -> None:
        for name in ("fits", "draws", "chains", "thin"):
            if getattr(self, name) < 1:
                raise SBCSetupError(f"{name} must be at least 1")
        if self.tune < 0:
            raise SBCSetupError("tune must be 0 or more")

    @property
    def n_draws(self) -> int:
        """``L``: thinned posterior draws per fit (ranks run from 0 to L)."""
        return self.chains * len(range(0, self.draws, self.thin))

    def sampling(self) -> dict[str, Any]:
        """The settings that must match when a run is resumed (all but ``fits``)."""
        data = asdict(self)
        data.pop("fits")
        return data


def fit_seed(seed: int, fit: int) -> int:
    """Seed of fit ``fit`` of a run seeded ``seed`` (independent streams per fit)."""
    return int(np.random.SeedSequence([int(seed), int(fit)]).generate_state(1, np.uint32)[0])


# --------------------------------------------------------------------------- one fit

#: Problems built on this process, by structure key (one compile per worker).
_PROBLEMS: dict[str, SBCProblem] = {}


def _problem(structure: Any) -> tuple[SBCProblem, float]:
    key = structure.key()
    if key in _PROBLEMS:
        return _PROBLEMS[key], 0.0
    started = time.perf_counter()
    problem = structure.build()
    problem.compiled()
    _PROBLEMS[key] = problem
    return problem, time.perf_counter() - started


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"pid{os.getpid()}"


def run_one_fit(
    fit: int, seed: int, *, structure: ModelStructure, settings: SBCSettings
) -> dict[str, Any]:
    """Draw from the prior, refit, rank the truth: one SBC fit (a Dask task).

    Never raises: a failure is returned as a record with status ``failed`` and the error.

    Parameters
    ----------
    fit : int
        Fit index.
    seed : int
        Fit seed (prior draw; the sampler uses ``seed + 1``).
    structure : ModelStructure
        Anything with ``key()`` and ``build() -> SBCProblem``.
    settings : SBCSettings
        Sampler and thinning settings.

    Returns
    -------
    dict
        ``{"fit": {...one fits.csv row...}, "ranks": [...ranks.csv rows...]}``.
    """
    import warnings

    import arviz as az

    record: dict[str, Any] = {
        "fit": fit,
        "seed": seed,
        "status": "ok",
        "error": "",
        "warning": "",
        "sampling_seconds": np.nan,
        "setup_seconds": 0.0,
        "divergences": np.nan,
        "r_hat_max": np.nan,
        "ess_bulk_min": np.nan,
        "worker": _worker_name(),
    }
    labels: list[str] = []
    try:
        problem, record["setup_seconds"] = _problem(structure)
        labels = problem.labels
        draw = problem.draw(seed)
        record["warning"] = "; ".join(draw.warnings)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = problem.posterior(
                draw.data,
                seed=seed + 1,
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                target_accept=settings.target_accept,
            )
        record["sampling_seconds"] = time.perf_counter() - started
        posterior = tree["posterior"].to_dataset()
        ranks = fit_ranks(
            posterior,
            draw.truth,
            problem.elements,
            thin=settings.thin,
            rng=np.random.default_rng(seed),
        )
        stats = tree["sample_stats"]
        record["divergences"] = int(stats["diverging"].sum()) if "diverging" in stats else 0
        ranked = posterior[problem.parameters]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if settings.chains > 1:
                record["r_hat_max"] = float(az.rhat(ranked).to_array().max())
            record["ess_bulk_min"] = float(az.ess(ranked, method="bulk").to_array().min())
        rows = []
        for element in problem.elements:
            values = posterior[element.variable].transpose("chain", "draw", ...).values
            values = values[(slice(None), slice(None), *element.index)]
            rank, n_draws = ranks[element.label]
            rows.append(
                {
                    "fit": fit,
                    "seed": seed,
                    "parameter": element.label,
                    "rank": rank,
                    "n_draws": n_draws,
                    "status": "ok",
                    "truth": draw.truth[element.label],
                    "posterior_mean": float(np.mean(values)),
                    "posterior_sd": float(np.std(values)),
                    "error": "",
                }
            )
    except Exception as err:  # noqa: BLE001 - every failure is recorded, not raised
        record["status"] = "failed"
        record["error"] = _error_text(err)
        rows = _failed_rows(fit, seed, labels, record["error"])
    return {"fit": record, "ranks": rows}


def _error_text(err: BaseException) -> str:
    last = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(err).__name__}: {err}{where}".replace("\n", " ")[:500]


def _failed_rows(fit: int, seed: int, labels: list[str], error: str) -> list[dict[str, Any]]:
    return [
        {
            "fit": fit,
            "seed": seed,
            "parameter": label,
            "rank": np.nan,
            "n_draws": np.nan,
            "status": "failed",
            "truth": np.nan,
            "posterior_mean": np.nan,
            "posterior_sd": np.nan,
            "error": error,
        }
        for label in (labels or [""])
    ]


# --------------------------------------------------------------------------- files


def _append(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Append rows to a CSV in one write (header when the file is new), then fsync."""
    if not rows:
        return
    buffer = io.StringIO()
    pd.DataFrame(rows, columns=columns).to_csv(
        buffer, header=not path.exists() or path.stat().st_size == 0, index=False
    )
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _drop_partial_line(path: Path) -> None:
    """Cut an incomplete last line left by an interrupted write."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_fits(out: str | Path) -> pd.DataFrame:
    """``fits.csv`` of a run (last record per fit), empty when none."""
    path = Path(out) / FITS_FILE
    _drop_partial_line(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=FIT_COLUMNS)
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return table.drop_duplicates("fit", keep="last").sort_values("fit").reset_index(drop=True)


def read_ranks(out: str | Path) -> pd.DataFrame:
    """``ranks.csv`` of a run, limited to fits recorded as done in ``fits.csv``."""
    path = Path(out) / RANKS_FILE
    _drop_partial_line(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=RANK_COLUMNS)
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    table["parameter"] = table["parameter"].fillna("").astype(str)
    done = set(read_fits(out)["fit"])
    table = table[table["fit"].isin(done)]
    return table.drop_duplicates(["fit", "parameter"], keep="last").reset_index(drop=True)


def _clean_orphans(out: Path) -> None:
    """Drop rank rows of fits that never got their ``fits.csv`` record (interrupted)."""
    path = out / RANKS_FILE
    if not path.exists():
        return
    _drop_partial_line(path)
    if path.stat().st_size == 0:
        return
    raw = pd.read_csv(path, keep_default_na=False, na_values=[""])
    kept = read_ranks(out)
    if len(kept) != len(raw):
        write_csv(path, kept.reindex(columns=RANK_COLUMNS), index=False)


def completed_fits(out: str | Path) -> set[int]:
    """Indices of the fits already recorded in ``out`` (ok or failed)."""
    return {int(f) for f in read_fits(out)["fit"]}


def _check_run_file(out: Path, structure: Any, settings: SBCSettings, counts: dict) -> None:
    description = {
        "structure": structure.describe(),
        "structure_key": structure.key(),
        "settings": settings.sampling(),
        "n_draws": settings.n_draws,
        "design_counts": {str(k): _plain(v) for k, v in counts.items()},
    }
    path = out / RUN_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("structure_key") != description["structure_key"]:
            raise SBCSetupError(
                f"{out} holds an SBC run of another model, spec or cohort design; "
                "use a new --out folder"
            )
        if previous.get("settings") != description["settings"]:
            diff = {
                k: (previous["settings"].get(k), v)
                for k, v in description["settings"].items()
                if previous["settings"].get(k) != v
            }
            raise SBCSetupError(
                f"{out} holds an SBC run with other settings "
                + ", ".join(f"{k}: {a} there, {b} now" for k, (a, b) in diff.items())
                + "; use the same settings to resume, or a new --out folder"
            )
        return
    from magbayes import __version__

    description["magbayes_version"] = __version__
    write_json(path, description)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- a run


@dataclass
class SBCResult:
    """What an SBC run produced.

    Attributes
    ----------
    out : pathlib.Path
        Output folder.
    ranks : pandas.DataFrame
        ``ranks.csv`` (fits below ``settings.fits``).
    fits : pandas.DataFrame
        ``fits.csv`` (same fits).
    uniformity : pandas.DataFrame
        ``uniformity.csv``.
    ran : list of int
        Fits run by this call (the others were done before).
    wall_seconds : float
        Wall time of this call (s).
    """

    out: Path
    ranks: pd.DataFrame
    fits: pd.DataFrame
    uniformity: pd.DataFrame
    ran: list[int]
    wall_seconds: float

    @property
    def n_failed(self) -> int:
        """Fits that failed."""
        return int((self.fits["status"] != "ok").sum())


def run_sbc(
    structure: Any,
    out: str | Path,
    settings: SBCSettings,
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    figures: bool = True,
) -> SBCResult:
    """Run (or resume) simulation-based calibration.

    Parameters
    ----------
    structure : ModelStructure
        Model spec and cohort design (or any picklable object with ``key()``,
        ``describe()`` and ``build() -> SBCProblem``).
    out : str or pathlib.Path
        Output folder; created, or resumed when it holds the same run.
    settings : SBCSettings
        Number of fits, seed, sampler settings, thinning.
    client : distributed.Client, optional
        An existing Dask client; otherwise one is opened (``scheduler`` or a local
        cluster of ``workers`` processes) and closed at the end.
    scheduler : str, optional
        Address of an existing Dask scheduler.
    workers : int, optional
        Workers of the local cluster (default: one per core).
    progress : bool, optional
        Print a line per finished fit (default: only on a terminal).
    figures : bool
        Draw the figures.

    Returns
    -------
    SBCResult

    Raises
    ------
    SBCSetupError
        When ``out`` holds a run with another structure or settings.
    """
    from distributed import as_completed

    from magbayes.cluster import dask_client

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = sys.stderr.isatty()

    # built here too (no compilation): a bad spec fails at once, and failed fits get labels
    problem = structure.build()
    _check_run_file(out, structure, settings, getattr(problem, "counts", {}))
    _clean_orphans(out)
    done = completed_fits(out)
    todo = [i for i in range(settings.fits) if i not in done]
    seeds = [fit_seed(settings.seed, i) for i in todo]
    if progress and done:
        print(f"SBC: {len(done)} fit(s) already in {out}, {len(todo)} to run", file=sys.stderr)

    if todo:
        import contextlib

        opened = (
            contextlib.nullcontext(client)
            if client is not None
            else dask_client(scheduler, workers)
        )
        with opened as active:
            futures = active.map(
                run_one_fit, todo, seeds, structure=structure, settings=settings, pure=False
            )
            index_of = {f.key: (i, s) for f, i, s in zip(futures, todo, seeds, strict=True)}
            n_done = n_failed = 0
            for future in as_completed(futures):
                fit, seed = index_of[future.key]
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - a lost worker is a failed fit
                    error = _error_text(err)
                    result = {
                        "fit": {
                            **dict.fromkeys(FIT_COLUMNS, np.nan),
                            "fit": fit,
                            "seed": seed,
                            "status": "failed",
                            "error": error,
                            "worker": "",
                        },
                        "ranks": _failed_rows(fit, seed, problem.labels, error),
                    }
                _append(out / RANKS_FILE, result["ranks"], RANK_COLUMNS)
                _append(out / FITS_FILE, [result["fit"]], FIT_COLUMNS)
                n_done += 1
                n_failed += result["fit"]["status"] != "ok"
                future.release()
                if progress:
                    print(
                        f"SBC fit {fit}: {result['fit']['status']}  "
                        f"[{n_done}/{len(todo)} done, {n_failed} failed]",
                        file=sys.stderr,
                    )
    return summarise(out, settings, started=started, ran=todo, figures=figures)


def summarise(
    out: str | Path,
    settings: SBCSettings,
    *,
    started: float | None = None,
    ran: list[int] | None = None,
    figures: bool = True,
) -> SBCResult:
    """Write ``uniformity.csv`` and the figures from the recorded fits."""
    from magbayes.sbc.figures import plot_overview, plot_parameter, safe_name
    from magbayes.sbc.uniformity import uniformity_table

    out = Path(out)
    fits = read_fits(out)
    fits = fits[fits["fit"] < settings.fits].reset_index(drop=True)
    ranks = read_ranks(out)
    ranks = ranks[ranks["fit"] < settings.fits].reset_index(drop=True)
    table = uniformity_table(ranks)
    write_csv(out / UNIFORMITY_FILE, table, index=False)
    if figures and len(table):
        ok = ranks[ranks["status"] == "ok"]
        for _, row in table.iterrows():
            if row["n_fits"] < 2 or row["flag"] == "constant":
                continue
            sub = ok[ok["parameter"] == row["parameter"]]
            plot_parameter(
                row["parameter"],
                sub["rank"].to_numpy(int),
                int(row["n_draws"]),
                out / "figures" / f"sbc_{safe_name(row['parameter'])}.png",
                p_chi_square=row["p_chi_square"],
                p_pit_ecdf=row["p_pit_ecdf"],
            )
        plot_overview(ok, table, out / "figures" / "sbc_overview.png")
    return SBCResult(
        out=out,
        ranks=ranks,
        fits=fits,
        uniformity=table,
        ran=list(ran or []),
        wall_seconds=time.perf_counter() - started if started is not None else float("nan"),
    )
