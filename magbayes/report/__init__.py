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

__all__ = ["rewrite_report", "write_report", *_FIGURES]

#: What a report writes into a results folder (replaced by :func:`rewrite_report`).
REPORT_FILES = ("report.md", "report.html", "figures")


def write_report(result: FitResult, folder: str | Path) -> ReportFiles:
    """Draw the figures and write ``report.md`` and ``report.html`` into ``folder``.

    Returns
    -------
    magbayes.report.document.ReportFiles
        The files written, the figures drawn and those skipped (with the reason).
    """
    from magbayes.report.document import write_report as _write

    return _write(result, Path(folder))


def rewrite_report(folder: str | Path) -> ReportFiles:
    """Rewrite the report and figures of a saved results folder, atomically, without refitting.

    The folder is rebuilt in a temporary sibling (its data files copied, the report and
    figures drawn afresh from the saved posterior) that replaces it when complete, so an
    interrupted rewrite leaves the folder as it was.

    Returns
    -------
    magbayes.report.document.ReportFiles
        The files written (paths in ``folder``), the figures drawn and those skipped.
    """
    import dataclasses
    import shutil

    from magbayes.atomic import atomic_folder
    from magbayes.result import load_fit

    folder = Path(folder)
    result = load_fit(folder)
    with atomic_folder(folder) as tmp:
        for path in folder.iterdir():
            if path.name in REPORT_FILES:
                continue
            if path.is_dir():
                shutil.copytree(path, tmp / path.name)
            else:
                shutil.copy2(path, tmp / path.name)
        files = write_report(result, tmp)

    def moved(path: Path) -> Path:
        return folder / path.relative_to(tmp)

    return dataclasses.replace(
        files,
        markdown=moved(files.markdown),
        html=moved(files.html),
        figures=[dataclasses.replace(f, path=moved(f.path)) for f in files.figures],
        extra=[moved(p) for p in files.extra],
    )


def __getattr__(name: str) -> Any:
    if name in _FIGURES:
        return getattr(importlib.import_module("magbayes.report.figures"), name)
    raise AttributeError(f"module 'magbayes.report' has no attribute {name!r}")
