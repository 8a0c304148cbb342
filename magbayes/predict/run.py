"""``mb.predict``: a fit's predictions for a cohort's patients under treatment strategies.

The model's definition does the predicting (its ``predict``); this module checks what it is
asked, writes the predictions (``predictions.nc``, CSV tables, one figure per patient) and
knows nothing of any particular model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from magbayes.atomic import atomic_folder, write_csv, write_json
from magbayes.errors import SpecError
from magbayes.models import get_model
from magbayes.predict.strategies import DEFAULT_STRATEGIES, Strategy

#: Default prediction times: 0 to 12 years since onset every half year.
DEFAULT_TIMES = np.arange(0.0, 12.0 + 0.25, 0.5)


def parse_times(text: str) -> np.ndarray:
    """``"A:B:STEP"`` (years since onset, B included) or ``"1,5,10"`` as an array.

    Raises
    ------
    SpecError
        For anything else, or times before onset.
    """
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            times = np.arange(start, stop + step / 2, step)
        else:
            times = np.array([float(x) for x in text.split(",") if x.strip()])
    except ValueError:
        raise SpecError(
            f"--times {text!r}: give START:STOP:STEP (e.g. 0:12:0.5) or a list (1,5,10), in "
            "years since onset"
        ) from None
    if not len(times) or (times < 0).any():
        raise SpecError(f"--times {text!r}: times are years since onset, 0 or more")
    return times


def predict(
    result: Any,
    cohort: Any,
    *,
    times: Sequence[float] | np.ndarray | None = None,
    strategies: Sequence[Strategy] | None = None,
    threshold: float | None = None,
    patients: Sequence[str] | None = None,
    seed: int | None = None,
) -> xr.DataTree:
    """Predictions of a fit for a cohort's patients under treatment strategies.

    Parameters
    ----------
    result : FitResult
        A fit (in memory or from :func:`magbayes.load_fit`).
    cohort : Cohort
        The patients to predict for. A patient of the fit (same id) is predicted from
        their own posterior; any other is a new patient, whose visits so far condition
        their own level and rate.
    times : sequence of float, optional
        Years since onset (default 0 to 12 every 0.5).
    strategies : sequence of Strategy, optional
        Treatment strategies (default prompt, delayed and never rituximab).
    threshold : float, optional
        Score counted as disabled (default the model's: INCAT 4, mRS 3, ...).
    patients : sequence of str, optional
        Which of the cohort's patients (default all).
    seed : int, optional
        Random seed (default the fit's).

    Returns
    -------
    xarray.DataTree
        Group ``predictions`` (see the model's ``predict``) and the fit's provenance in
        its attributes.

    Raises
    ------
    SpecError
        When the model has nothing to predict, or a patient is not in the cohort.
    """
    definition = get_model(result.model)
    if definition.predict is None:
        raise SpecError(f"the {result.model} model has no trajectory or event over time to predict")
    chosen = list(strategies) if strategies is not None else list(DEFAULT_STRATEGIES)
    names = [s.name for s in chosen]
    if len(set(names)) != len(names):
        raise SpecError(f"strategy names must differ: {names}")
    known = {str(p) for p in cohort.patient_ids}
    if patients is not None:
        unknown = [p for p in patients if p not in known]
        if unknown:
            raise SpecError(f"not patients of the cohort: {', '.join(map(str, unknown))}")
    years = np.asarray(DEFAULT_TIMES if times is None else times, float)
    dataset = definition.predict(
        result,
        cohort,
        years=years,
        strategies=chosen,
        threshold=threshold,
        patients=None if patients is None else [str(p) for p in patients],
        seed=result.seed if seed is None else int(seed),
    )
    tree = xr.DataTree.from_dict({"predictions": dataset})
    tree.attrs.update(
        {
            "magbayes_model": result.model,
            "data_sha256_of_fit": result.data_sha256,
            "strategies": [str(s.as_dict()) for s in chosen],
        }
    )
    return tree


def prediction_table(tree: xr.DataTree) -> pd.DataFrame:
    """One row per patient, strategy and time: every prediction over time, bands as columns.

    Each variable of dims (patient, strategy, time) is a column; one with a ``quantile``
    dimension too is a column per quantile (``band_3``, ``band_25``, ...).
    """
    ds = tree["predictions"].to_dataset()
    over_time = {"patient", "strategy", "time"}
    names = [str(n) for n, v in ds.data_vars.items() if set(v.dims) == over_time]
    table = ds[names].to_dataframe()[names]
    for name, var in ds.data_vars.items():
        if set(var.dims) == over_time | {"quantile"}:
            wide = var.to_dataframe().unstack("quantile")[name]
            wide.columns = [f"{name}_{str(q).rstrip('%')}" for q in wide.columns]
            table = table.join(wide)
    return table.reset_index()


def write_predictions(tree: xr.DataTree, cohort: Any, out: str | Path) -> Path:
    """Write ``predictions.nc``, ``predictions.csv``, ``p_category.csv`` and figures, atomically.

    The figures (one per patient, ``figures/PATIENT.png``) are the model's own
    (``prediction_figure`` of its definition).

    Parameters
    ----------
    tree : xarray.DataTree
        From :func:`predict`.
    cohort : Cohort
        The cohort predicted for (its observed visits are drawn in the figures).
    out : str or pathlib.Path
        Folder to write (replaced if it exists).
    """
    out = Path(out)
    ds = tree["predictions"].to_dataset()
    draw = get_model(str(tree.attrs["magbayes_model"])).prediction_figure
    with atomic_folder(out) as tmp:
        tree.to_netcdf(tmp / "predictions.nc", engine="h5netcdf")
        write_csv(tmp / "predictions.csv", prediction_table(tree), index=False)
        if "p_category" in ds:
            categories = ds["p_category"].to_dataframe().reset_index()
            write_csv(tmp / "p_category.csv", categories, index=False)
        (tmp / "figures").mkdir()
        for patient in ds["patient"].values if draw is not None else ():
            draw(ds, cohort, str(patient), tmp / "figures" / f"{patient}.png")
        write_json(
            tmp / "manifest.json",
            {"model": tree.attrs.get("magbayes_model"), **dict(ds.attrs)},
        )
    return out
