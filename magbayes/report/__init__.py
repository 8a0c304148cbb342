"""Headline, tables, figures and the written report of a fit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magbayes.fit import FitResult


def write_report(result: FitResult, folder: str | Path) -> None:
    """Draw the figures and write ``report.md`` and ``report.html`` into ``folder``."""
    from magbayes.report.document import write_report as _write

    _write(result, Path(folder))
