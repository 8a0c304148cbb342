"""Headline, tables, figures and the written report of a fit: functions that take a FitResult.

``write_report(result, folder)`` draws every figure and writes ``report.md`` /
``report.html``; each figure is also a function of its own (``plot_trajectories``,
``plot_ppc``, ``plot_forest``, ``plot_headline``, ``plot_rank``: ``(result, path) ->
caption``), and a model's own figures are in its definition's ``figures``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from magbayes.report.document import ReportFiles
    from magbayes.result import FitResult

#: Figure functions, imported from :mod:`magbayes.report.figures` when first used.
_FIGURES = ("plot_trajectories", "plot_ppc", "plot_forest", "plot_headline", "plot_rank")

__all__ = ["write_report", *_FIGURES]


def write_report(result: FitResult, folder: str | Path) -> ReportFiles:
    """Draw the figures and write ``report.md`` and ``report.html`` into ``folder``.

    Returns
    -------
    magbayes.report.document.ReportFiles
        The files written, the figures drawn and those skipped (with the reason).
    """
    from magbayes.report.document import write_report as _write

    return _write(result, Path(folder))


def __getattr__(name: str) -> Any:
    if name in _FIGURES:
        return getattr(importlib.import_module("magbayes.report.figures"), name)
    raise AttributeError(f"module 'magbayes.report' has no attribute {name!r}")
