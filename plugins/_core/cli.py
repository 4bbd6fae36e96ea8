"""The error funnel every console script goes through.

Maps our errors to one line on stderr and the documented exit code, keeps click's usage errors
at exit 2, ends quietly on a closed stdout, and turns anything unexpected into one line instead of
a traceback (set HARMONY_PIPES_DEBUG=1 to see it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

import click

from .errors import ExitCode, OutputClosed, PipesError
from .log import DEFAULT_LOG_LEVEL, LOG_LEVELS, Log
from .options import active_runtime


def _log_for(command: str) -> Log:
    runtime = active_runtime(command)
    if runtime is not None:
        return runtime.log
    level = os.environ.get("HARMONY_PIPES_LOG_LEVEL", DEFAULT_LOG_LEVEL).lower()
    return Log(
        command,
        os.environ.get("HARMONY_PIPES_LOG_FORMAT", "text"),
        level=level if level in LOG_LEVELS else DEFAULT_LOG_LEVEL,
    )


def _record_failure(command: str, exc: BaseException) -> None:
    """The error that ends a command is its last cycle's outcome (metrics, --metrics-file)."""
    runtime = active_runtime(command)
    if runtime is not None:
        runtime.health.cycle_failed(exc)


def _finish(command: str) -> None:
    runtime = active_runtime(command)
    if runtime is not None:
        runtime.finish()


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so interpreter shutdown does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def command_main(command: click.Command, name: str) -> Callable[[], NoReturn]:
    """Build the `main()` console-script entry point for `command`."""

    def main() -> NoReturn:
        code: int = ExitCode.OK
        try:
            result = command.main(prog_name=name, standalone_mode=False)
            code = result if isinstance(result, int) else ExitCode.OK
            _finish(name)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code
        except click.exceptions.Abort:
            code = 130
        except OutputClosed:
            _silence_stdout()
            _finish(name)
            code = ExitCode.OK
        except PipesError as exc:
            _record_failure(name, exc)
            _finish(name)
            _log_for(name).fatal(exc.message, exc.fix, int(exc.exit_code))
            code = exc.exit_code
        except KeyboardInterrupt:
            _finish(name)
            code = 130
        except Exception as exc:  # the last line of defence: never a traceback for users
            _record_failure(name, exc)
            _finish(name)
            log = _log_for(name)
            if log.debug_enabled or os.environ.get("HARMONY_PIPES_DEBUG"):
                import traceback

                traceback.print_exc()
            log.fatal(
                f"internal error ({type(exc).__name__}: {exc})",
                "please report it; set HARMONY_PIPES_DEBUG=1 for a traceback",
                int(ExitCode.RUNTIME),
            )
            code = ExitCode.RUNTIME
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            _silence_stdout()
        sys.exit(int(code))

    main.click_command = command  # type: ignore[attr-defined]  # for tools that parse our command lines
    return main
