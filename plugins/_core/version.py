"""`--version` for every command (`NAME VERSION`) and the version the stats line carries.

One version for the whole distribution: `harmony_pipes.__version__`, from which pyproject.toml
builds the package metadata (`[tool.setuptools.dynamic]`), so `importlib.metadata.version(
"harmony-pipes")` says the same (tests/integration/test_install_wheel.py checks it on a real
wheel). We read the attribute rather than importlib.metadata at run time because importing
importlib.metadata costs ~28 ms, a quarter of a command's start-up, and every command's stats
line carries the version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from harmony_pipes import __version__

DISTRIBUTION = "harmony-pipes"
VERSION: str = __version__

F = TypeVar("F", bound=Callable[..., Any])


def version_line(command: str) -> str:
    """`harmony-alerts 0.1.0`: what `--version` prints."""
    return f"{command} {VERSION}"


def version_option(command: str) -> Callable[[F], F]:
    """The `--version` flag of `command` (any click command or group, `harmony-pipes` included)."""
    return click.version_option(
        VERSION,
        "--version",
        prog_name=command,
        message="%(prog)s %(version)s",
        help="Print the command name and version, then exit.",
    )
