"""Tests that SBC ranks are uniform, one parameter at a time.

Two tests per parameter, over the fits that completed:

chi-square on binned ranks
    Ranks ``0..L`` are grouped into ``B`` bins of (nearly) equal width, with ``B`` chosen so
    that at least about 5 fits are expected per bin (at most 20 bins); expected counts use
    the exact share of rank values in each bin. Sensitive to any shape of departure, coarse.
PIT-ECDF test (ArviZ ``uniformity_test``, method ``pot_c``)
    On the fractional ranks ``u = (rank + V) / (L + 1)``, ``V`` uniform on (0, 1) with a
    fixed seed (exactly uniform under correct calibration, and free of ties); a test with
    good power against local departures (Tesso et al. 2026; ArviZ's default for SBC).

A parameter is flagged ``non-uniform`` when either p-value is below
``0.05 / (2 × number of parameters tested)`` (Bonferroni over the parameters and the two tests),
so that with dozens of parameters a flag is not expected by chance alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

#: Family-wise error rate of the flags (over parameters and tests).
FAMILY_ALPHA = 0.05

#: Seed of the jitter that turns integer ranks into fractional ranks.
PIT_SEED = 20180101


def rank_bins(n_fits: int, n_draws: int, max_bins: int = 20) -> int:
    """Number of bins for the rank histogram and chi-square test.

    Parameters
    ----------
    n_fits : int
        Number of ranks.
    n_draws : int
        ``L``: ranks take values ``0..L``.
    max_bins : int
        Upper limit.
    """
    return int(max(2, min(max_bins, n_fits // 5, n_draws + 1)))


def binned(ranks: np.ndarray, n_draws: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Observed counts per bin and the probability of each bin under uniformity.

    Rank ``r`` falls in bin ``floor(r * B / (L + 1))``.
    """
    ranks = np.asarray(ranks, dtype=int)
    values = np.arange(n_draws + 1)
    bin_of_value = (values * n_bins) // (n_draws + 1)
    probabilities = np.bincount(bin_of_value, minlength=n_bins) / (n_draws + 1)
    counts = np.bincount((ranks * n_bins) // (n_draws + 1), minlength=n_bins)
    return counts, probabilities


def chi_square(ranks: np.ndarray, n_draws: int, n_bins: int | None = None) -> dict[str, float]:
    """Chi-square test of uniformity of binned ranks.

    Returns
    -------
    dict
        ``chi_square``, ``df``, ``bins``, ``p_chi_square``.
    """
    ranks = np.asarray(ranks, dtype=int)
    n_bins = n_bins or rank_bins(len(ranks), n_draws)
    counts, probabilities = binned(ranks, n_draws, n_bins)
    expected = probabilities * len(ranks)
    statistic, p_value = stats.chisquare(counts, expected)
    return {
        "chi_square": float(statistic),
        "df": n_bins - 1,
        "bins": n_bins,
        "p_chi_square": float(p_value),
    }


def fractional_ranks(ranks: np.ndarray, n_draws: int, seed: int = PIT_SEED) -> np.ndarray:
    """Ranks as PIT values in (0, 1): ``(rank + V) / (L + 1)`` with ``V`` ~ Uniform(0, 1)."""
    ranks = np.asarray(ranks, dtype=float)
    jitter = np.random.default_rng(seed).uniform(size=ranks.shape)
    return (ranks + jitter) / (n_draws + 1)


def pit_test(ranks: np.ndarray, n_draws: int) -> float:
    """ArviZ's PIT uniformity test (``pot_c``) p-value on fractional ranks."""
    pit = xr.Dataset({"pit": xr.DataArray(fractional_ranks(ranks, n_draws), dims="fit")})
    p_values, _, _ = pit.azstats.uniformity_test(dim="fit", method="pot_c")
    return float(p_values["pit"])


def uniformity_table(ranks: pd.DataFrame, family_alpha: float = FAMILY_ALPHA) -> pd.DataFrame:
    """One row per parameter: the two tests and a flag.

    Parameters
    ----------
    ranks : pandas.DataFrame
        ``ranks.csv`` (columns ``parameter``, ``rank``, ``n_draws``, ``status``); only rows
        with status ``ok`` are used.
    family_alpha : float
        Family-wise error rate of the flags.

    Returns
    -------
    pandas.DataFrame
        ``parameter``, ``n_fits``, ``n_draws``, ``bins``, ``chi_square``, ``df``,
        ``p_chi_square``, ``p_pit_ecdf``, ``mean_fractional_rank`` (0.5 when calibrated;
        above 0.5: the posterior tends to sit below the truth), ``flag``
        (``ok`` / ``non-uniform`` / ``too few fits`` / ``constant``: a quantity fixed by the
        model, such as a first cutpoint at 0, whose posterior sd is 0 in every fit and whose
        ranks are only tie-breaks), in the order parameters first appear.
    """
    ok = ranks[ranks["status"] == "ok"].dropna(subset=["rank"])
    order = list(dict.fromkeys(ok["parameter"]))
    constant = set()
    if "posterior_sd" in ok.columns:
        spread = ok.groupby("parameter")["posterior_sd"].max()
        constant = set(spread.index[spread == 0])
    threshold = family_alpha / (2 * max(1, len(set(order) - constant)))
    rows = []
    for parameter in order:
        sub = ok[ok["parameter"] == parameter]
        n_draws = int(sub["n_draws"].max())
        values = sub["rank"].to_numpy(int)
        row: dict = {"parameter": parameter, "n_fits": len(values), "n_draws": n_draws}
        if parameter in constant:
            row.update(
                bins=np.nan,
                chi_square=np.nan,
                df=np.nan,
                p_chi_square=np.nan,
                p_pit_ecdf=np.nan,
                mean_fractional_rank=np.nan,
                flag="constant",
            )
            rows.append(row)
            continue
        if len(values) < 5:
            row.update(
                bins=np.nan,
                chi_square=np.nan,
                df=np.nan,
                p_chi_square=np.nan,
                p_pit_ecdf=np.nan,
                mean_fractional_rank=float(np.mean(values) / n_draws) if len(values) else np.nan,
                flag="too few fits",
            )
            rows.append(row)
            continue
        row.update(chi_square(values, n_draws))
        row["p_pit_ecdf"] = pit_test(values, n_draws)
        row["mean_fractional_rank"] = float(np.mean(values) / n_draws)
        worst = min(row["p_chi_square"], row["p_pit_ecdf"])
        row["flag"] = "non-uniform" if worst < threshold else "ok"
        rows.append(row)
    columns = [
        "parameter",
        "n_fits",
        "n_draws",
        "bins",
        "chi_square",
        "df",
        "p_chi_square",
        "p_pit_ecdf",
        "mean_fractional_rank",
        "flag",
    ]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["flag_threshold"] = threshold
    return table
