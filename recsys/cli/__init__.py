"""The ``recsys`` command line: thin adapters over the library, used by ``dvc.yaml`` and people.

Errors a user can act on (``RecsysError``) print as a few plain lines and exit with their code
(2 for bad input or configuration, 1 for a failed validation); anything else is a bug and keeps
its traceback.

One module per command group: ``data`` (prepare, validate, preprocess, download, docs),
``models`` (benchmark, train, evaluate, compose), ``registry`` (gate, gate-candidates,
champion, promote, rollback), ``update`` and ``serving`` (bento build, bento validate,
serve); ``common`` holds the options they share. A command's help is its handler's
docstring: the first line is its line in ``recsys --help``, the rest the description of
``recsys COMMAND --help``. This module assembles the parser and runs a command.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from recsys import __version__
from recsys.cli import data, models, registry, serving, tune, update
from recsys.cli.common import (
    DEFAULT_PARAMS,
    DEFAULT_REGISTRY,
    DEFAULT_REPORTS,
    PROFILE_FILE,
    Handler,
)
from recsys.errors import RecsysError

__all__ = [
    "DEFAULT_PARAMS",
    "DEFAULT_REGISTRY",
    "DEFAULT_REPORTS",
    "INTERNAL_ERROR",
    "PROFILE_FILE",
    "build_parser",
    "main",
]

INTERNAL_ERROR = 3
"""Exit status of an unexpected exception (0 ok, 1 validation failed, 2 bad input or config)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recsys`` console script."""
    for name, value in (("GX_ANALYTICS_ENABLED", "False"), ("DVC_NO_ANALYTICS", "1")):
        os.environ.setdefault(name, value)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except RecsysError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except Exception:  # a bug, not bad input: keep the traceback, and a distinct exit status
        traceback.print_exc()
        print("internal error: this is a bug in recsys, please report it", file=sys.stderr)
        return INTERNAL_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Validated data, deep recommenders, a metric gate and a BentoML service.",
    )
    parser.add_argument("--version", action="version", version=f"recsys {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    # The order of `recsys --help`.
    data.add_parsers(commands)
    models.add_benchmark_parser(commands)
    tune.add_parsers(commands)
    registry.add_parsers(commands)
    update.add_parsers(commands)
    models.add_parsers(commands)
    registry.add_gate_candidates_parser(commands)
    serving.add_parsers(commands)
    return parser
