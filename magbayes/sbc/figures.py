"""SBC figures: rank histogram and PIT-ECDF difference with simultaneous bands.

Per parameter (``figures/sbc_<parameter>.png``) two panels:

* the rank histogram with the expected count under uniformity and its 99% binomial range
  (bars outside it in many bins, or a U / inverted-U / sloped shape, signal miscalibration);
* the ECDF of the fractional ranks minus the uniform CDF, with ArviZ's 95% *simultaneous*
  band (Säilynoja, Bürkner and Vehtari 2022): under calibration the whole curve stays inside
  the band 95% of the time. A curve bulging upwards means ranks are too small (posterior
  above the truth, overestimation); downwards, too large; a ∪ or ∩ shape means the posterior
  is too narrow or too wide.

``figures/sbc_overview.png`` shows every parameter's ECDF difference in one grid.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from arviz_stats.ecdf_utils import ecdf_pit
from matplotlib.figure import Figure
from scipy import stats

from magbayes.sbc.uniformity import binned, fractional_ranks, rank_bins

BAND_PROB = 0.95


def safe_name(label: str) -> str:
    """A file-name-safe parameter label (``gamma_treatment[ivig]`` -> ``gamma_treatment-ivig``)."""
    text = re.sub(r"[\[\],|: ]+", "-", label).strip("-")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


@lru_cache(maxsize=64)
def _band(n_fits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grid = np.linspace(0, 1, n_fits)
    x, _, lower, upper = ecdf_pit(
        grid, BAND_PROB, n_simulations=1000, rng=np.random.default_rng(214)
    )
    return x, lower - x, upper - x


def _ecdf_difference(ax, pit: np.ndarray, colour: str = "C0") -> None:
    n = len(pit)
    x, lower, upper = _band(n)
    ax.fill_between(x, lower, upper, step="post", color="0.85", lw=0, label="95% simultaneous band")
    sorted_pit = np.sort(pit)
    grid = np.concatenate([[0.0], sorted_pit, [1.0]])
    ecdf = np.concatenate([[0.0], np.arange(1, n + 1) / n, [1.0]])
    ax.step(grid, ecdf - grid, where="post", color=colour, lw=1.3, label="ECDF − uniform")
    ax.axhline(0, color="0.4", lw=0.6, ls="--")
    ax.set_xlim(0, 1)


def plot_parameter(
    label: str,
    ranks: np.ndarray,
    n_draws: int,
    path: str | Path,
    *,
    p_chi_square: float | None = None,
    p_pit_ecdf: float | None = None,
) -> Path:
    """Rank histogram and ECDF difference of one parameter.

    Parameters
    ----------
    label : str
        Parameter label.
    ranks : numpy.ndarray
        Ranks (0..``n_draws``) over the completed fits.
    n_draws : int
        ``L``, the number of thinned posterior draws per fit.
    path : str or pathlib.Path
        PNG to write.
    p_chi_square, p_pit_ecdf : float, optional
        Test p-values to print in the title.

    Returns
    -------
    pathlib.Path
    """
    ranks = np.asarray(ranks, dtype=int)
    n = len(ranks)
    n_bins = rank_bins(n, n_draws)
    counts, probabilities = binned(ranks, n_draws, n_bins)
    fig = Figure(figsize=(9, 3.4))
    ax_hist, ax_ecdf = fig.subplots(1, 2)
    edges = np.arange(n_bins + 1) / n_bins
    ax_hist.bar(edges[:-1], counts, width=1 / n_bins, align="edge", color="C0", alpha=0.75)
    expected = probabilities * n
    low = stats.binom.ppf(0.005, n, probabilities)
    high = stats.binom.ppf(0.995, n, probabilities)
    ax_hist.fill_between(
        edges,
        np.append(low, low[-1]),
        np.append(high, high[-1]),
        step="post",
        color="0.6",
        alpha=0.3,
        lw=0,
        label="99% range if uniform",
    )
    ax_hist.step(edges, np.append(expected, expected[-1]), where="post", color="0.2", lw=1)
    ax_hist.set_xlim(0, 1)
    ax_hist.set_xlabel(f"rank / {n_draws} (fraction of posterior draws below the truth)")
    ax_hist.set_ylabel(f"fits (of {n})")
    ax_hist.set_title("rank histogram")
    ax_hist.legend(fontsize=7, loc="upper right")

    _ecdf_difference(ax_ecdf, fractional_ranks(ranks, n_draws))
    ax_ecdf.set_xlabel("fractional rank")
    ax_ecdf.set_ylabel("ECDF difference")
    ax_ecdf.set_title("PIT-ECDF difference")
    ax_ecdf.legend(fontsize=7, loc="lower right")
    tests = []
    if p_chi_square is not None and np.isfinite(p_chi_square):
        tests.append(f"chi-square p = {p_chi_square:.3g}")
    if p_pit_ecdf is not None and np.isfinite(p_pit_ecdf):
        tests.append(f"PIT-ECDF p = {p_pit_ecdf:.3g}")
    fig.suptitle(f"SBC: {label}" + (f"   ({'; '.join(tests)})" if tests else ""), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_overview(ranks: pd.DataFrame, table: pd.DataFrame, path: str | Path) -> Path:
    """ECDF difference of every parameter in one grid (flagged ones in red).

    Parameters
    ----------
    ranks : pandas.DataFrame
        ``ranks.csv`` rows with status ``ok``.
    table : pandas.DataFrame
        :func:`magbayes.sbc.uniformity.uniformity_table`.
    path : str or pathlib.Path
        PNG to write.
    """
    rows = table[(table["n_fits"] >= 2) & (table["flag"] != "constant")]
    n_panels = max(1, len(rows))
    n_cols = min(5, n_panels)
    n_rows = int(np.ceil(n_panels / n_cols))
    fig = Figure(figsize=(2.6 * n_cols, 2.1 * n_rows))
    axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False)
    for ax, (_, row) in zip(axes.flat, rows.iterrows(), strict=False):
        sub = ranks[ranks["parameter"] == row["parameter"]]
        pit = fractional_ranks(sub["rank"].to_numpy(int), int(row["n_draws"]))
        flagged = row["flag"] == "non-uniform"
        _ecdf_difference(ax, pit, colour="C3" if flagged else "C0")
        ax.set_title(str(row["parameter"]), fontsize=8, color="C3" if flagged else "black")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    n_fits = int(rows["n_fits"].max()) if len(rows) else 0
    fig.suptitle(
        f"SBC PIT-ECDF differences over {n_fits} fits (grey: 95% simultaneous band; "
        "red: flagged non-uniform)",
        fontsize=10,
    )
    fig.supxlabel("fractional rank", fontsize=9)
    fig.supylabel("ECDF − uniform", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
