"""Does the headline rest on one arbitrary choice? Refit over a grid of choices, on Dask.

Three choices are varied (the spec's ``[sensitivity]`` table lists their values):

``threshold_uv``
    The sural SNAP amplitude (µV) below which the first nerve conduction study counts as
    early sural reduction (default grid 3, 5, 7 µV).
``window_years``
    How soon after onset (years) that study must be for the status to be defined (2, 3, 5).
``prior_scale``
    A factor multiplying the prior standard deviations of the rituximab effect and of its
    early-sural interaction (``rituximab_sd`` and ``interaction_sd`` in ``[priors]``, or
    the keys listed in ``[sensitivity] prior_keys``) (0.5, 1, 2).

The default grid is *one at a time*: the spec's own choice (its ``[early_sural]`` values and
scale 1), then each alternative value of one factor with the other two at their defaults
(7 fits for three values each). ``full=True`` refits the whole product (27 fits).

Every grid point is an independent Dask task (:func:`fit_point`): apply the point to the
spec, rebuild the design (the early-sural status changes with threshold and window) and the
model (its priors change with the scale), sample with nutpie, and return the headline and
the convergence checks. The early-sural status enters the model's data and the scale its
priors, so each point is a different graph and is compiled once, on its worker.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import textwrap
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from magbayes.atomic import write_json, write_text
from magbayes.cohort.tables import Cohort
from magbayes.errors import SpecError
from magbayes.provenance import cohort_digest
from magbayes.spec import Spec

#: The factors varied, in the order of the table's columns.
FACTORS: tuple[str, ...] = ("threshold_uv", "window_years", "prior_scale")

#: Values used when the spec's ``[sensitivity]`` table does not list a factor.
DEFAULT_GRID: dict[str, list[float]] = {
    "threshold_uv": [3.0, 5.0, 7.0],
    "window_years": [2.0, 3.0, 5.0],
    "prior_scale": [0.5, 1.0, 2.0],
}

#: Priors multiplied by ``prior_scale`` (the headline's effects), unless the spec's
#: ``[sensitivity] prior_keys`` names others.
PRIOR_SCALE_KEYS: tuple[str, ...] = ("rituximab_sd", "interaction_sd")

TABLE_FILE = "sensitivity.csv"
FIGURE_FILE = "sensitivity.png"
RUN_FILE = "sensitivity.json"

COLUMNS = [
    "varied",
    "threshold_uv",
    "window_years",
    "prior_scale",
    "p",
    "mcse",
    "contrast_mean",
    "contrast_hdi_low",
    "contrast_hdi_high",
    "hdi_prob",
    "p_benefit_sural_reduced",
    "p_benefit_sural_preserved",
    "n_sural_reduced",
    "n_sural_preserved",
    "n_sural_unknown",
    "diagnostics_passed",
    "r_hat_max",
    "ess_bulk_min",
    "divergences",
    "seconds",
    "status",
    "error",
]

_UNITS = {"threshold_uv": "µV", "window_years": "y", "prior_scale": "×"}


@dataclass(frozen=True)
class GridPoint:
    """One combination of choices.

    Attributes
    ----------
    threshold_uv : float
        Early-sural threshold (µV).
    window_years : float
        Window after onset for the first nerve conduction study (years).
    prior_scale : float
        Factor on the headline priors' standard deviations.
    varied : str
        ``"default"``, the factor changed from the default (one-at-a-time grid), or
        ``"grid"`` (a point of the full product other than the default).
    """

    threshold_uv: float
    window_years: float
    prior_scale: float
    varied: str = "default"

    @property
    def label(self) -> str:
        """Short text for figures: what differs from the default."""
        if self.varied == "default":
            return (
                f"default ({self.threshold_uv:g} µV, {self.window_years:g} y, "
                f"prior ×{self.prior_scale:g})"
            )
        if self.varied == "threshold_uv":
            return f"threshold {self.threshold_uv:g} µV"
        if self.varied == "window_years":
            return f"window {self.window_years:g} y"
        if self.varied == "prior_scale":
            return f"prior scale ×{self.prior_scale:g}"
        return f"{self.threshold_uv:g} µV, {self.window_years:g} y, prior ×{self.prior_scale:g}"


def default_point(spec: Spec) -> GridPoint:
    """The spec's own choices: its ``[early_sural]`` threshold and window, prior scale 1."""
    sural = spec.section("early_sural")
    return GridPoint(
        threshold_uv=float(sural.get("threshold_uv", 5.0)),
        window_years=float(sural.get("window_years", 3.0)),
        prior_scale=1.0,
    )


def grid_values(spec: Spec) -> dict[str, list[float]]:
    """Values of each factor, sorted, always including the default.

    From the spec's ``[sensitivity]`` lists, or :data:`DEFAULT_GRID` for a factor it omits.

    Raises
    ------
    SpecError
        When a list is empty or holds anything but positive numbers.
    """
    table = spec.section("sensitivity")
    default = asdict(default_point(spec))
    values = {}
    for factor in FACTORS:
        raw = table.get(factor, DEFAULT_GRID[factor])
        if not isinstance(raw, list) or not raw:
            raise SpecError(f"[sensitivity] {factor} must be a non-empty list of numbers")
        numbers = []
        for value in raw:
            try:
                number = float(value)
            except (TypeError, ValueError) as err:
                raise SpecError(f"[sensitivity] {factor}: {value!r} is not a number") from err
            if not number > 0:
                raise SpecError(f"[sensitivity] {factor}: {number:g} must be positive")
            numbers.append(number)
        values[factor] = sorted(set(numbers) | {float(default[factor])})
    return values


def sensitivity_grid(spec: Spec, *, full: bool = False) -> list[GridPoint]:
    """The grid points to fit.

    Parameters
    ----------
    spec : Spec
        A resolved spec.
    full : bool
        ``False`` (default): one at a time around the default. ``True``: every combination.

    Returns
    -------
    list of GridPoint
        The default first.
    """
    centre = default_point(spec)
    values = grid_values(spec)
    points = [centre]
    if full:
        for combo in itertools.product(*(values[f] for f in FACTORS)):
            point = GridPoint(*combo, varied="grid")
            if (point.threshold_uv, point.window_years, point.prior_scale) != (
                centre.threshold_uv,
                centre.window_years,
                centre.prior_scale,
            ):
                points.append(point)
        return points
    for factor in FACTORS:
        for value in values[factor]:
            if value == getattr(centre, factor):
                continue
            fields = asdict(centre) | {factor: value, "varied": factor}
            points.append(GridPoint(**fields))
    return points


def prior_scale_keys(spec: Spec) -> list[str]:
    """Priors that ``prior_scale`` multiplies (checked against the spec's ``[priors]``)."""
    keys = list(spec.section("sensitivity").get("prior_keys", PRIOR_SCALE_KEYS))
    priors = spec.section("priors")
    missing = [k for k in keys if k not in priors]
    if missing:
        raise SpecError(
            f"model {spec.model!r}: prior_scale multiplies [priors] {', '.join(missing)}, "
            "which the spec does not have; list the headline priors in "
            "[sensitivity] prior_keys"
        )
    return keys


def spec_for_point(spec: Spec, point: GridPoint) -> Spec:
    """The spec with a grid point's threshold, window and prior scale applied."""
    priors = spec.section("priors")
    scaled = {k: float(priors[k]) * point.prior_scale for k in prior_scale_keys(spec)}
    return spec.with_overrides(
        {
            "early_sural": {
                "threshold_uv": point.threshold_uv,
                "window_years": point.window_years,
            },
            "priors": scaled,
        }
    )


def sural_counts(cohort: Cohort, point: GridPoint) -> dict[str, int]:
    """Patients with early sural reduction, preserved, and unknown under a point's definition."""
    status = cohort.with_sural_definition(point.threshold_uv, point.window_years).patients[
        "sural_reduced"
    ]
    known = status.dropna().astype(bool)
    return {
        "n_sural_reduced": int(known.sum()),
        "n_sural_preserved": int((~known).sum()),
        "n_sural_unknown": int(status.isna().sum()),
    }


def fit_point(
    cohort: Cohort,
    spec: Spec,
    point: GridPoint,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    target_accept: float = 0.9,
    sampler: str = "nutpie",
) -> dict[str, Any]:
    """Fit one grid point and return its table row (a Dask task; never raises).

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    spec : Spec
        The resolved spec (before the point is applied).
    point : GridPoint
        Threshold, window and prior scale.
    draws, tune, chains, seed : int
        Sampler settings (the same for every point).
    target_accept : float
        NUTS target acceptance rate.
    sampler : str
        NUTS implementation (PyMC's ``nuts_sampler``).

    Returns
    -------
    dict
        A row of ``sensitivity.csv`` (see :data:`COLUMNS`).
    """
    from magbayes.fit import FitResult, prepare, sample

    row: dict[str, Any] = {c: np.nan for c in COLUMNS} | asdict(point)
    row.update(status="ok", error="")
    started = time.perf_counter()
    try:
        row.update(sural_counts(cohort, point))
        # one core per grid point: the points themselves run in parallel
        settings = {"draws": draws, "tune": tune, "chains": chains, "cores": 1}
        settings |= {"seed": seed, "target_accept": target_accept}
        point_spec = spec_for_point(spec, point).with_overrides({"sampler": settings})
        point_cohort, design, model = prepare(cohort, point_spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = sample(model, design, point_spec, sampler=sampler, progress=False)
        seconds = time.perf_counter() - started
        result = FitResult(
            posterior=tree,
            spec=point_spec,
            design_counts=design.counts,
            standardisation=design.standardisation,
            cohort_summary=point_cohort.summary(),
            data_sha256=cohort_digest(cohort),
            seed=seed,
            sampler=sampler,
            timing={"sampling_seconds": seconds, "wall_seconds": seconds},
            left_out_covariates=design.left_out_covariates,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            headline = result.headline()
            diagnostics = result.diagnostics()
        contrast = headline["contrast"]
        row.update(
            p=headline["p_sural_predicts_rituximab_benefit"],
            mcse=headline["mcse"],
            contrast_mean=contrast["mean"],
            contrast_hdi_low=contrast["hdi_low"],
            contrast_hdi_high=contrast["hdi_high"],
            hdi_prob=contrast["hdi_prob"],
            p_benefit_sural_reduced=headline["p_rituximab_benefit_sural_reduced"],
            p_benefit_sural_preserved=headline["p_rituximab_benefit_sural_preserved"],
            diagnostics_passed=bool(diagnostics["passed"]),
            r_hat_max=diagnostics["r_hat_max"],
            ess_bulk_min=diagnostics["ess_bulk_min"],
            divergences=diagnostics["divergences"],
        )
        row["contrast_scale"] = contrast["scale"]
    except Exception as err:  # noqa: BLE001 - a failed point is a row, not a lost run
        row.update(status="failed", error=f"{type(err).__name__}: {err}"[:500])
    row["seconds"] = time.perf_counter() - started
    return row


def run_sensitivity(
    cohort: Cohort,
    spec: Spec,
    out: str | Path,
    *,
    full: bool = False,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int | None = None,
    sampler: str = "nutpie",
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    command: str = "",
) -> pd.DataFrame:
    """Refit over the grid on Dask and write the table, the figure and a manifest.

    Files: ``sensitivity.csv``, ``sensitivity.png`` and ``sensitivity.json`` in ``out``.

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    spec : Spec
        A resolved spec (:func:`magbayes.fit.resolve_spec`).
    out : str or pathlib.Path
        Output folder (created; the three files are replaced).
    full : bool
        Full product grid instead of one at a time.
    draws, tune, chains, seed : int, optional
        Sampler settings for every point (default: the spec's ``[sampler]``).
    sampler : str
        NUTS implementation.
    client : distributed.Client, optional
        An existing client; otherwise one is opened (``scheduler`` or a local cluster).
    scheduler : str, optional
        Address of an existing Dask scheduler.
    workers : int, optional
        Workers of the local cluster (default: one per core).
    progress : bool, optional
        Print a line per finished point (default: only on a terminal).
    command : str
        Command line, recorded in ``sensitivity.json``.

    Returns
    -------
    pandas.DataFrame
        The table, one row per grid point, the default first.
    """
    from distributed import as_completed

    from magbayes.cluster import dask_client
    from magbayes.fit import package_versions

    started = time.perf_counter()
    settings = spec.section("sampler")
    sampling = {
        "draws": int(draws if draws is not None else settings.get("draws", 1000)),
        "tune": int(tune if tune is not None else settings.get("tune", 1000)),
        "chains": int(chains if chains is not None else settings.get("chains", 4)),
        "seed": int(seed if seed is not None else settings.get("seed", 2020)),
        "target_accept": float(settings.get("target_accept", 0.9)),
        "sampler": sampler,
    }
    points = sensitivity_grid(spec, full=full)
    for point in points:  # a spec without the headline priors fails here, before any fit
        spec_for_point(spec, point)
    if progress is None:
        progress = sys.stderr.isatty()

    rows: dict[int, dict[str, Any]] = {}
    opened = (
        contextlib.nullcontext(client) if client is not None else dask_client(scheduler, workers)
    )
    with opened as active:
        shared_cohort = active.scatter(cohort, broadcast=True)
        futures = [
            active.submit(fit_point, shared_cohort, spec, point, pure=False, **sampling)
            for point in points
        ]
        position = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            i = position[future.key]
            try:
                rows[i] = future.result()
            except Exception as err:  # noqa: BLE001 - a lost worker is a failed point
                rows[i] = {c: np.nan for c in COLUMNS} | asdict(points[i])
                rows[i].update(status="failed", error=f"{type(err).__name__}: {err}"[:500])
            if progress:
                r = rows[i]
                print(
                    f"sensitivity: {points[i].label}: {r['status']}"
                    + (f", P = {r['p']:.3f}" if r["status"] == "ok" else f" ({r['error']})")
                    + f"  [{len(rows)}/{len(points)}]",
                    file=sys.stderr,
                )
    table = pd.DataFrame([rows[i] for i in range(len(points))])
    scale = next((s for s in table.get("contrast_scale", []) if isinstance(s, str)), "")
    table = table.reindex(columns=COLUMNS)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / TABLE_FILE, table.to_csv(index=False))
    plot_sensitivity(table, out / FIGURE_FILE, spec=spec, contrast_scale=scale)
    from magbayes.models import get_model

    manifest = {
        "command": command,
        "model": spec.model,
        "question": get_model(spec.model).headline.question,
        "grid": "full" if full else "one at a time",
        "grid_values": grid_values(spec),
        "prior_scale_keys": prior_scale_keys(spec),
        "sampling": sampling,
        "contrast_scale": scale,
        "data_sha256": cohort_digest(cohort),
        "spec": spec.data,
        "wall_seconds": time.perf_counter() - started,
        "versions": package_versions(),
    }
    write_json(out / RUN_FILE, manifest)
    return table


def plot_sensitivity(
    table: pd.DataFrame, path: str | Path, *, spec: Spec | None = None, contrast_scale: str = ""
) -> Path:
    """The headline probability and contrast across the grid, one row per point.

    Left: the posterior probability that early sural reduction predicts rituximab benefit,
    with ±2 MCSE. Right: the contrast's posterior mean and HDI. The default point is drawn
    first and in black; points whose convergence checks failed are drawn hollow; failed
    fits are listed but not drawn. The counts of sural-reduced / preserved / unknown
    patients under each definition are printed at the right.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`run_sensitivity`'s table.
    path : str or pathlib.Path
        PNG to write.
    spec : Spec, optional
        For the title (model and question).
    contrast_scale : str
        What the contrast measures, for the axis label.

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.figure import Figure

    n = len(table)
    fig = Figure(figsize=(11, 1.2 + 0.42 * max(n, 2)))
    ax_p, ax_c = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 1.15]})
    y = np.arange(n)[::-1]
    labels = [
        GridPoint(*(r[f] for f in FACTORS), varied=r["varied"]).label for _, r in table.iterrows()
    ]
    colours = {
        "default": "black",
        "threshold_uv": "C0",
        "window_years": "C2",
        "prior_scale": "C1",
        "grid": "C4",
    }
    for yi, (_, r) in zip(y, table.iterrows(), strict=True):
        colour = colours.get(r["varied"], "C4")
        if r["status"] != "ok":
            ax_p.text(0.5, yi, "fit failed", ha="center", va="center", color="C3", fontsize=8)
            continue
        face = colour if bool(r["diagnostics_passed"]) else "white"
        ax_p.errorbar(
            r["p"], yi, xerr=2 * r["mcse"], fmt="o", color=colour, mfc=face, ms=6, capsize=3
        )
        ax_c.errorbar(
            r["contrast_mean"],
            yi,
            xerr=[
                [r["contrast_mean"] - r["contrast_hdi_low"]],
                [r["contrast_hdi_high"] - r["contrast_mean"]],
            ],
            fmt="o",
            color=colour,
            mfc=face,
            ms=6,
            capsize=3,
        )
        ax_c.annotate(
            f"{int(r['n_sural_reduced'])}/{int(r['n_sural_preserved'])}/"
            f"{int(r['n_sural_unknown'])}",
            xy=(1.01, yi),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
        )
    ax_p.axvline(0.5, color="0.5", ls="--", lw=0.8)
    ax_p.set_xlim(0, 1)
    ax_p.set_yticks(y, labels, fontsize=8)
    ax_p.set_xlabel("P(early sural reduction predicts rituximab benefit) ± 2 MCSE", fontsize=8)
    ax_c.axvline(0, color="0.5", ls="--", lw=0.8)
    hdi = table["hdi_prob"].dropna()
    hdi_text = f"{100 * hdi.iloc[0]:.0f}% HDI" if len(hdi) else "HDI"
    scale_text = f"\n{textwrap.fill(contrast_scale, 80)}" if contrast_scale else ""
    ax_c.set_xlabel(f"contrast: posterior mean and {hdi_text}{scale_text}", fontsize=8)
    ax_c.annotate(
        "reduced/preserved/unknown",
        xy=(1.01, 1.0),
        xycoords="axes fraction",
        va="bottom",
        fontsize=7,
        color="0.3",
    )
    for ax in (ax_p, ax_c):
        ax.grid(axis="x", color="0.9")
        for yi in y:
            ax.axhline(yi, color="0.95", lw=0.5, zorder=0)
    title = "Sensitivity of the headline to the early-sural definition and the priors"
    if spec is not None:
        from magbayes.models import get_model

        question = get_model(spec.model).headline.question
        title = f"{spec.model}: {question}\n{title}"
    fig.suptitle(title + "  (hollow: convergence checks failed)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
