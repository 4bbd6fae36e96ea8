"""The console scripts' entry points: catch stop signals first, then import the command.

Each entry point installs `catch_early` before it imports its command's modules (that import is
why the imports below are inside the functions): a stop signal that reaches a stage of a pipe
while it is still starting is kept and honoured as a graceful stop once the runner is up, so the
stage still reads, processes and commits its input (DESIGN section 3.4).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from harmony_pipes._core.signals import catch_early, end_early

# entry point -> the module whose `main` it runs (tests look the click command up here)
COMMAND_MODULES = {
    "harmony_pipes": "harmony_pipes.cli",
    "harmony_alerts": "harmony_pipes.harmony_alerts.cli",
    "harmony_events": "harmony_pipes.harmony_events.cli",
    "hec_emulator": "harmony_pipes.hec_emulator.cli",
    "s3_batch": "harmony_pipes.s3_batch.cli",
    "aws_discovery": "harmony_pipes.aws_discovery.cli",
}


def _run(entry: str, before_import: Callable[[], None] | None = None) -> None:
    catch_early()
    if before_import is not None:
        before_import()
    main = importlib.import_module(COMMAND_MODULES[entry]).main
    end_early()
    main()


def harmony_pipes() -> None:
    _run("harmony_pipes")


def harmony_alerts() -> None:
    _run("harmony_alerts", _start_alerts_helper_early)


def _start_alerts_helper_early() -> None:
    """A helper process that starts up while this one imports the command (harmony_alerts/spawn.py;
    imported here only, as the commands are: the other commands never load it)."""
    importlib.import_module("harmony_pipes.harmony_alerts.spawn").start_early(sys.argv[1:])


def harmony_events() -> None:
    _run("harmony_events")


def hec_emulator() -> None:
    _run("hec_emulator")


def s3_batch() -> None:
    _run("s3_batch")


def aws_discovery() -> None:
    _run("aws_discovery")
