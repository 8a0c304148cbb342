"""Helpers shared by the benchmark scripts: run a measurement in a fresh Python process.

A fresh process per measurement means compilation is included (nothing cached in memory
from an earlier run) and the peak resident memory is that run's alone
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in the child, KiB on Linux).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

MARK = "@@BENCH@@"


def machine() -> str:
    """One line describing this machine (CPU model, cores, memory)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}"


def emit(result: dict) -> None:
    """Print a child's result (with its peak memory) for :func:`run_child` to read."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = dict(result)
    result.setdefault("peak_rss_mib", usage.ru_maxrss / 1024)
    result.setdefault("cpu_s", usage.ru_utime + usage.ru_stime)
    print(MARK + json.dumps(result, default=float), flush=True)


def run_child(
    script: str, args: list[str], python: str | None = None, timeout: float | None = None
) -> dict:
    """Run ``python script --child ARGS`` and return the dict it :func:`emit`-ted.

    On failure returns ``{"error": ...}`` with the end of its standard error.
    """
    command = [python or sys.executable, script, "--child", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines()[::-1]:
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


def print_table(rows: list[dict], columns: list[str], formats: dict | None = None) -> None:
    """Print rows as an aligned text table."""
    formats = formats or {}

    def cell(row: dict, column: str) -> str:
        value = row.get(column, "")
        if value is None or value == "":
            return "-"
        if column in formats:
            try:
                return formats[column].format(value)
            except (ValueError, TypeError):
                return str(value)
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    table = [[cell(r, c) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(columns)
    ]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for t in table:
        print("  ".join(v.rjust(w) for v, w in zip(t, widths, strict=True)))


def progression_settings(**given: float | None) -> dict:
    """The progression spec's ``[sampler]`` table with the given values (0/None: spec's)."""
    from magbayes.fit import resolve_spec

    chosen = {k: v for k, v in given.items() if v}
    return resolve_spec("progression", {"sampler": chosen}).section("sampler")
