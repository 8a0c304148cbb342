"""The documentation's commands run, in order, and do what the pages say.

In the pages below, every fenced ``console``, ``bash``, ``sh`` or ``shell`` block is preceded by
a marker comment: ``<!-- run -->`` (optionally ``<!-- run creates=a,b exit=3 -->``) or
``<!-- not run: reason -->``. Marked ``python`` blocks run too. ``getting-started.md`` runs in
an empty folder; the pages that continue from it run in a copy of that folder. In a ``console``
block each ``$ `` line is a command (a trailing ``\\`` continues it) and other lines are output;
a ``bash`` block runs as one script. Each command must exit with the marker's status (0 unless
``exit=`` says otherwise), and each file in ``creates=`` must exist and be non-empty.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIRST = "getting-started.md"
CONTINUING = ["models/progression.md", "reading-the-report.md"]
SHELL = {"console", "bash", "sh", "shell"}
MARKER = re.compile(r"^<!--\s*(not run|run)\b(.*?)-->\s*$")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
COMMAND_TIMEOUT_S = 600


@dataclass
class Block:
    """One fenced block of a page."""

    page: str
    line: int
    language: str
    text: str
    marker: str | None = None  # "run", "not run" or None
    options: str = ""
    creates: list[str] = field(default_factory=list)
    exit_status: int = 0

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def commands(self) -> list[str]:
        """The commands to run: ``$`` lines of a console block, or the whole script."""
        if self.language != "console":
            return [self.text]
        commands, current = [], None
        for line in self.text.splitlines():
            if current is not None:
                current += "\n" + line
            elif line.startswith("$ "):
                current = line[2:]
            else:
                continue  # output shown in the page
            if current.endswith("\\"):
                continue
            commands.append(current)
            current = None
        return commands


def read_blocks(page: str) -> list[Block]:
    """Every fenced block of a page with the marker comment just above it (if any)."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        block = Block(page, start + 1, opening.group(1).lower(), "\n".join(body))
        previous = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = MARKER.match(previous.strip())
        if marker:
            block.marker = marker.group(1)
            block.options = marker.group(2).strip()
            creates = re.search(r"creates=(\S+)", block.options)
            if creates:
                block.creates = [p for p in creates.group(1).split(",") if p]
            status = re.search(r"exit=(\d+)", block.options)
            if status:
                block.exit_status = int(status.group(1))
        blocks.append(block)
        i += 1
    return blocks


def environment() -> dict[str, str]:
    """The test's own Python environment first on PATH (``magbayes``, ``python``)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class Outcome:
    """What one command did."""

    block: Block
    command: str
    status: int
    output: str


def run_block(block: Block, folder: Path) -> list[Outcome]:
    """Run a marked block in ``folder``; one outcome per command."""
    outcomes = []
    for command in block.commands():
        if block.language == "python":
            script = folder / f".doc_block_{block.line}.py"
            script.write_text(command, encoding="utf-8")
            argv = [sys.executable, str(script)]
        else:
            argv = ["bash", "-e", "-o", "pipefail", "-c", command]
        done = subprocess.run(
            argv,
            cwd=folder,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        outcomes.append(Outcome(block, command, done.returncode, done.stdout + done.stderr))
        if done.returncode != block.exit_status:
            break  # later commands depend on this one
    return outcomes


def run_page(page: str, folder: Path) -> list[Outcome]:
    """Run every block of a page marked to run, in order, in ``folder``."""
    outcomes: list[Outcome] = []
    for block in read_blocks(page):
        if block.marker == "run":
            outcomes += run_block(block, folder)
    return outcomes


def check(outcomes: list[Outcome], folder: Path) -> None:
    """Every command exited as expected and every promised file exists."""
    assert outcomes, "no command ran"
    for outcome in outcomes:
        block = outcome.block
        assert outcome.status == block.exit_status, (
            f"{block.where}: `{outcome.command}` exited {outcome.status}, expected "
            f"{block.exit_status}\n{outcome.output[-3000:]}"
        )
    for block in {id(o.block): o.block for o in outcomes}.values():
        for name in block.creates:
            path = folder / name
            assert path.is_file(), f"{block.where}: {name} was not created"
            assert path.stat().st_size > 0, f"{block.where}: {name} is empty"


# ----------------------------------------------------------------------------- markers


@pytest.mark.parametrize("page", [FIRST, *CONTINUING])
def test_every_shell_block_says_whether_it_runs(page):
    blocks = read_blocks(page)
    assert blocks, f"{page} has no code blocks"
    for block in blocks:
        if block.language in SHELL:
            assert block.marker, f"{block.where}: a {block.language} block with no run marker"
        if block.marker == "not run":
            assert block.options.startswith(":") and len(block.options) > 5, (
                f"{block.where}: say why the block is not run (<!-- not run: reason -->)"
            )
        if block.marker == "run":
            assert block.language in SHELL | {"python"}, f"{block.where}: cannot run it"
            assert block.commands(), f"{block.where}: nothing to run"


def test_the_marker_parser_reads_creates_and_exit(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n<!-- run creates=a.txt,b/c.txt exit=3 -->\n```console\n$ echo hi \\\n"
        "  there\nhi there\n$ true\n```\n\n```console\n$ not marked\n```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "DOCS", tmp_path)
    first, second = read_blocks("page.md")
    assert first.marker == "run" and first.exit_status == 3
    assert first.creates == ["a.txt", "b/c.txt"]
    assert first.commands() == ["echo hi \\\n  there", "true"]
    assert second.marker is None


def test_a_failing_command_fails_the_check(tmp_path):
    block = Block("page.md", 1, "console", "$ false", marker="run")
    with pytest.raises(AssertionError, match="exited 1"):
        check(run_block(block, tmp_path), tmp_path)
    block = Block("page.md", 1, "console", "$ true", marker="run", creates=["missing.txt"])
    with pytest.raises(AssertionError, match="was not created"):
        check(run_block(block, tmp_path), tmp_path)


# ----------------------------------------------------------------------------- the pages


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """(folder, outcomes) of running getting-started.md in an empty folder."""
    folder = tmp_path_factory.mktemp("getting_started")
    return folder, run_page(FIRST, folder)


@pytest.mark.slow
def test_getting_started_runs(started):
    folder, outcomes = started
    check(outcomes, folder)
    by_command = {o.command.split()[1] if " " in o.command else o.command: o for o in outcomes}
    assert "is valid" in by_command["validate"].output
    report = (folder / "results" / "report.html").read_text()
    assert "data:image/png;base64," in report
    python_outputs = [o.output for o in outcomes if o.block.language == "python"]
    assert any("gamma_rituximab_x_sural" in out for out in python_outputs)
    assert any(out.startswith("Does early sural reduction") for out in python_outputs)


@pytest.mark.slow
@pytest.mark.parametrize("page", CONTINUING)
def test_continuing_pages_run(page, started, tmp_path):
    source, first = started
    check(first, source)
    folder = tmp_path / "work"
    shutil.copytree(source, folder)
    outcomes = run_page(page, folder)
    check(outcomes, folder)
    if page == "models/progression.md":
        compare = next(o for o in outcomes if o.command.startswith("magbayes compare"))
        assert "PSIS-LOO comparison" in compare.output
        assert "results_no_later_line" in (folder / "comparison.csv").read_text()
