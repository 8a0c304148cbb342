"""Writing files and folders atomically: all or nothing, never half-written.

Every file and results folder magbayes writes goes through here. A file is written beside
its target and moved onto it; a folder is built in a temporary sibling that replaces the
target only when complete, so an interrupted command leaves the earlier version (or
nothing) in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars, tuples and non-finite floats made JSON-friendly."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling file.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (:func:`jsonable` first), atomically."""
    return write_text(path, json.dumps(jsonable(payload), indent=2, default=str) + "\n")


def write_csv(path: str | Path, table: pd.DataFrame, **to_csv: Any) -> Path:
    """Write a table as CSV (``DataFrame.to_csv`` keywords), atomically."""
    return write_text(path, table.to_csv(**to_csv))


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling; it replaces ``target`` on success.

    On an exception (or an interrupt) the temporary folder is removed and ``target`` is
    left as it was.

    Yields
    ------
    pathlib.Path
        The temporary folder to write into.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(staging, 0o755)
        yield staging
        _replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(new: Path, target: Path) -> None:
    """Move ``new`` onto ``target``; the old ``target`` is restored if the move fails."""
    if not target.exists():
        os.rename(new, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(retired)
    os.rename(target, retired)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
