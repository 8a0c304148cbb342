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
import warnings

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
    "predict",
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3


def note_left_out(left_out: list[dict[str, str]], model: str = "") -> None:
    """Say on the terminal (stderr) which covariates of a shipped spec were left out, and why."""
    where = f"{model}: " if model else ""
    for item in left_out:
        print(
            f"note: {where}covariate '{item['covariate']}' left out: {item['reason']}",
            file=sys.stderr,
        )


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


#: PyTensor's warning, on every fit, that its C back end found no BLAS library. magbayes
#: samples through numba (nutpie) and JAX, which do their own linear algebra, and its C
#: functions do no matrix products that BLAS would speed up; so on the command line the
#: warning says nothing about the user's analysis, and is not shown. ``import magbayes``
#: leaves every warning to the user.
PYTENSOR_BLAS_WARNING = r"PyTensor could not link to a BLAS installation"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and exits with) the exit status."""
    warnings.filterwarnings("ignore", message=PYTENSOR_BLAS_WARNING, category=UserWarning)
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
