"""What every command group of the ``recsys`` CLI shares: default paths, the parameter file
loader, and one helper per option that several commands take (so that each option is spelled,
defaulted and documented once)."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path

from recsys.config import Params, load_params
from recsys.timings import TIMINGS_DIR

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_REPORTS = Path("reports") / "validation"
DEFAULT_REGISTRY = Path("data") / "registry"
"""Champion pointer, promotion history and gate decisions (``recsys.serving.store``)."""
PROFILE_FILE = "profile.json"
"""The data profile stored with each accepted version; the next run checks drift against it."""

Handler = Callable[[argparse.Namespace], int]
Commands = argparse._SubParsersAction  # type: ignore[type-arg]  # argparse exposes no public name
"""The object ``add_subparsers`` returns; each command group adds its parsers to it."""


def add_command(
    commands: Commands, name: str, handler: Handler, *, raw: bool = False
) -> argparse.ArgumentParser:
    """Add the command ``name`` run by ``handler``, documented by the handler's docstring: its
    first line is the one-line help of ``recsys --help``, the rest the description of
    ``recsys NAME --help``; ``raw`` keeps the description's layout instead of refilling it."""
    help, _, description = (inspect.getdoc(handler) or "").partition("\n")
    formatter = argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=description.strip(), formatter_class=formatter
    )
    parser.set_defaults(handler=handler)
    return parser


def add_group(commands: Commands, name: str, help: str) -> Commands:
    """Add a command group (``recsys data ...``); alone, it prints its help and exits 2."""
    group = commands.add_parser(name, help=help)
    group.set_defaults(handler=lambda _args: print_help(group))
    sub: Commands = group.add_subparsers(title=f"{name} commands", metavar="COMMAND")
    return sub


def print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def add_format_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--format``, ``--items-format``, ``--users-format``: how ``recsys benchmark`` and
    ``recsys tune`` read their split files and side tables (default: detected per file)."""
    from recsys.data.sources.formats import FORMAT_CHOICES

    formats = ", ".join(FORMAT_CHOICES)
    for flag, dest, what in (
        ("--format", "file_format", "the split files"),
        ("--items-format", "items_format", "--items"),
        ("--users-format", "users_format", "--users"),
    ):
        parser.add_argument(
            flag, dest=dest, choices=FORMAT_CHOICES, metavar="FMT",
            help=f"format of {what} (default: detected); one of {formats}",
        )  # fmt: skip


def add_params_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file")


def add_registry_option(parser: argparse.ArgumentParser, help: str = "registry dir") -> None:
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help=help)


def add_in_option(
    parser: argparse.ArgumentParser,
    help: str = "processed directory (its test split)",
) -> None:
    parser.add_argument("--in", dest="inp", type=Path, required=True, help=help)


def add_timings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timings",
        type=Path,
        default=TIMINGS_DIR,
        metavar="DIR",
        help="untracked record of what the run measured: seconds, latency, hardware "
        "(default: %(default)s)",
    )


def add_out_option(parser: argparse.ArgumentParser, help: str, metavar: str | None = None) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar=metavar, help=help)


def params_from(path: Path) -> Params:
    """The parameters of ``path``; library defaults when the default params.yaml is missing
    (a missing explicit file is an error)."""
    if path == DEFAULT_PARAMS and not path.exists():
        return Params()
    return load_params(path)
