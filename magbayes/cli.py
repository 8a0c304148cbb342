"""The ``magbayes`` command: parses arguments and calls the library.

Each subcommand lives in ``magbayes/commands/<name>.py`` with two functions:
``register(subparsers)`` adds its parser (and sets ``func``), and ``run(args) -> int``
does the work and returns the exit status.

Exit status: 0 done; 2 bad input or usage; 3 fitted but convergence checks failed;
1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from magbayes import __version__
from magbayes.errors import CohortError, ResultsFolderError, SpecError

#: Subcommands, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "simulate",
    "validate",
    "fit",
    "report",
    "compare",
    "answer",
    "sbc",
    "sensitivity",
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="magbayes",
        description="Bayesian models of disability in anti-MAG neuropathy.",
    )
    parser.add_argument("--version", action="version", version=f"magbayes {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"magbayes.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"magbayes.commands.{name}":
                continue  # not written yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and exits with) the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        status = int(args.func(args) or 0)
    except CohortError as err:
        print(f"error: {err}", file=sys.stderr)
        status = EXIT_BAD_INPUT
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        status = EXIT_BAD_INPUT
    except ResultsFolderError as err:
        print(f"error: {err}", file=sys.stderr)
        status = EXIT_BAD_INPUT
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        status = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = EXIT_ERROR
    return status


def entry() -> None:  # pragma: no cover - thin wrapper for the console script
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
