"""One helper for the command line's subcommands: a parser that knows the function it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from lexlip_es.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def command(group: Any, name: str, func: Handler, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """`group.add_parser(name)` that runs `func(args, settings)`; the description defaults to the help line."""
    parser: argparse.ArgumentParser = group.add_parser(
        name, help=help, description=description or f"{help[:1].upper()}{help[1:]}."
    )
    parser.set_defaults(func=func)
    return parser
