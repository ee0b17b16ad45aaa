"""The ``sparsa`` command line.

Each subcommand lives in its own module under :mod:`sparsa.commands` and exposes
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.  The CLI
turns every :class:`sparsa.errors.SparsaError` (and pydantic/YAML problems, which
the config loader converts) into one line on stderr and exit status 2.

Ctrl-C (SIGINT) anywhere prints ``interrupted`` on stderr, without a traceback, and exits with
status 130 (128 + SIGINT, the shell convention), so scripts can tell an interrupt from bad input
(2).  Outputs are written through :mod:`sparsa.output`: an interrupt or a failed write leaves the
previous output complete and no temporary files.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from sparsa.errors import SparsaError

#: Exit status after Ctrl-C / SIGINT (128 + signal 2), distinct from bad input (2).
EXIT_INTERRUPTED = 130

#: Subcommand modules, in the order ``sparsa --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "sparsa.commands.schema",
    "sparsa.commands.verilog",
    "sparsa.commands.compile",
    "sparsa.commands.run",
    "sparsa.commands.block",
    "sparsa.commands.generate",
    "sparsa.commands.quantize",
    "sparsa.commands.estimate",
    "sparsa.commands.compare",
    "sparsa.commands.sweep",
    "sparsa.commands.train",
    "sparsa.commands.train_estimate",
    "sparsa.commands.train_step",
    "sparsa.commands.build",
    "sparsa.commands.synth",
)


def _load_commands() -> list:
    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:  # a command whose module is not present in this build
            if exc.name == name:
                continue
            raise
    return modules


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error:`` line (exit status 2), like every other."""

    def error(self, message: str) -> "NoReturn":  # noqa: D102 - argparse's hook
        hint = f" (see {self.prog} --help)"
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    from sparsa import __version__

    parser = _Parser(
        prog="sparsa",
        description="Design, compile for, simulate and estimate sparse quantized DNN accelerators.",
    )
    parser.add_argument("--version", action="version", version=f"sparsa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _load_commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparsa`` console script; returns the exit status."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args._run(args) or 0)
    except SparsaError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:  # one line per problem
            print(f"error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> NoReturn:
    """The ``sparsa`` console script: :func:`main`, then exit with its status.

    After a Ctrl-C the rest of the shutdown ignores SIGINT: a terminal that sends another one
    while atexit handlers run (a Dask cluster closing its workers) would otherwise end the
    process by the signal (status -2) instead of with 130.  (Not in :func:`main`, which tests
    and other Python code call in-process.)
    """
    status = main()
    if status == EXIT_INTERRUPTED and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
