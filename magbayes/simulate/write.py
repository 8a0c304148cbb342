"""Writing a simulated cohort: fixed formatting, sorted JSON, atomic folder replacement.

The same tables and truth always give the same bytes: numbers are written with a fixed
number of decimals per column, JSON keys are sorted, and nothing time-dependent is
written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from magbayes.atomic import atomic_folder, write_text

#: Decimals written per numeric column (0 = integer); other columns are text.
DECIMALS: dict[str, int] = {
    "age_at_onset": 1,
    "anti_mag_titer_btu": 0,
    "sural_snap_uv": 1,
    "first_ncs_years": 3,
    "median_dml_ms": 2,
    "ulnar_dml_ms": 2,
    "peroneal_dml_ms": 2,
    "median_mcv_ms": 1,
    "ulnar_mcv_ms": 1,
    "peroneal_mcv_ms": 1,
    "median_cmap_mv": 2,
    "ulnar_cmap_mv": 2,
    "peroneal_cmap_mv": 2,
    "tli_median": 3,
    "tli_ulnar": 3,
    "years_since_onset": 3,
    "incat": 0,
    "onls": 0,
    "mrs": 0,
    "irods": 1,
    "line": 0,
    "start_years": 3,
    "stop_years": 3,
    "end_years": 3,
    "end_lower_years": 3,
}

#: Files of a simulated cohort folder, in the order they are written.
FILES: tuple[str, ...] = ("patients.csv", "visits.csv", "treatments.csv", "truth.json")


def _cell(value: Any, decimals: int | None) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if decimals is None:
        text = str(value)
        if any(c in text for c in ',"\n\r'):
            text = '"' + text.replace('"', '""') + '"'
        return text
    if decimals == 0:
        return str(int(round(float(value))))
    return f"{float(value):.{decimals}f}"


def table_csv(frame: pd.DataFrame) -> str:
    """A table as CSV text (``,`` separator, Unix line ends, empty cell = missing).

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns named as in CONTRACT.md; numeric ones listed in :data:`DECIMALS` are
        written with that many decimals.
    """
    columns = list(frame.columns)
    lines = [",".join(columns)]
    values = [frame[c].astype(object).to_numpy() for c in columns]
    decimals = [DECIMALS.get(c) for c in columns]
    for r in range(len(frame)):
        lines.append(",".join(_cell(values[j][r], decimals[j]) for j in range(len(columns))))
    return "\n".join(lines) + "\n"


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into JSON types (NaN/inf -> None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is pd.NA:
        return None
    return value


def truth_json(truth: dict[str, Any]) -> str:
    """The truth as JSON text: sorted keys, two-space indent, full float precision."""
    return json.dumps(plain(truth), sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_folder(folder: str | os.PathLike, files: dict[str, str], overwrite: bool = False) -> Path:
    """Write text files into ``folder`` atomically (temporary folder, then rename).

    Parameters
    ----------
    folder : path
        Target folder. It may not exist yet, or be empty; a non-empty folder is replaced
        only with ``overwrite=True``.
    files : dict
        ``{file name: text}`` (UTF-8).
    overwrite : bool
        Replace a non-empty folder.

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    FileExistsError
        ``folder`` is a file, or a non-empty folder and ``overwrite`` is false.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} is not empty (use --force / overwrite=True to replace it)")
    with atomic_folder(target) as staging:
        for name, text in files.items():
            write_text(staging / name, text)
    return target
