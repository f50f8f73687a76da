"""The library's commands: ``xentropy evaluate`` (:mod:`xentropy.cli.evaluate`).

The ``xentropy`` entry point (``app.cli``) registers them with :func:`add_commands`;
``import xentropy`` does not import this package, and it imports orjson, tqdm and
pyarrow only when a command uses them.
"""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Add the library's subcommands to an argparse subparsers object; each parsed
    namespace's ``run`` attribute runs it."""
    from xentropy.cli import evaluate

    evaluate.add_parser(commands).set_defaults(run=evaluate.run)
