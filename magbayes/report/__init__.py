"""Headline, tables, figures and the written report of a fit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magbayes.fit import FitResult
    from magbayes.report.document import ReportFiles


def write_report(result: FitResult, folder: str | Path) -> ReportFiles:
    """Draw the figures and write ``report.md`` and ``report.html`` into ``folder``.

    Returns
    -------
    magbayes.report.document.ReportFiles
        The files written, the figures drawn and those skipped (with the reason).
    """
    from magbayes.report.document import write_report as _write

    return _write(result, Path(folder))
