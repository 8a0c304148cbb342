"""Simulation-based calibration (Talts et al. 2018) of the magbayes models, on Dask.

For each fit: draw parameters and data from the model's prior with the model's own PyMC
graph (:mod:`magbayes.sbc.prior_draws`), refit with the once-compiled model, and record the
rank of each true value among the (thinned) posterior draws (:mod:`magbayes.sbc.ranks`).
Fits run as independent Dask tasks (:mod:`magbayes.sbc.runner`); the ranks are tested for
uniformity (:mod:`magbayes.sbc.uniformity`) and drawn (:mod:`magbayes.sbc.figures`).
See ``docs/sbc.md``.
"""

from magbayes.sbc.prior_draws import ModelStructure, SBCProblem, observed_as_shared
from magbayes.sbc.ranks import fit_ranks, rank_of_truth, thin_draws
from magbayes.sbc.runner import SBCResult, SBCSettings, SBCSetupError, fit_seed, run_sbc
from magbayes.sbc.uniformity import uniformity_table

__all__ = [
    "ModelStructure",
    "SBCProblem",
    "SBCResult",
    "SBCSettings",
    "SBCSetupError",
    "fit_ranks",
    "fit_seed",
    "observed_as_shared",
    "rank_of_truth",
    "run_sbc",
    "thin_draws",
    "uniformity_table",
]
