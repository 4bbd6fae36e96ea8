"""Exit codes and the error taxonomy shared by every command.

Every failure a user can cause or fix is a `PipesError`: it carries one readable line (what
failed), the fix, and the exit code from DESIGN section 3.5. The CLI funnel in `cli.py` prints it
and exits; nothing else in the project prints tracebacks.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit-code table every command keeps (documented in README)."""

    OK = 0
    RUNTIME = 1  # runtime failure after retries
    USAGE = 2  # usage or configuration error
    AUTH = 3  # authentication / authorization refused
    UNREACHABLE = 4  # endpoint or bucket unreachable
    BAD_INPUT = 65  # bad input under --strict (EX_DATAERR)
    TEMPFAIL = 75  # temporary failure, try again (EX_TEMPFAIL)


class PipesError(Exception):
    """A failure with a one-line explanation, an optional fix, and an exit code.

    `retryable` says whether trying the same thing again later can succeed (throttling, 5xx,
    timeouts, a connection refused) or cannot until a person fixes something (credentials,
    permissions, a missing bucket, a bad request). It defaults per class (only `TempFailError`
    is retryable) and a classifier sets it per error: an unreachable endpoint is retryable, a
    missing bucket (the same exit code 4) is not.
    """

    exit_code: ExitCode = ExitCode.RUNTIME
    retryable: bool = False

    def __init__(
        self,
        message: str,
        fix: str | None = None,
        exit_code: ExitCode | None = None,
        *,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code
        if retryable is not None:
            self.retryable = retryable

    def one_line(self) -> str:
        """`Error: what failed — fix`, always a single line."""
        text = f"Error: {self.message}"
        if self.fix:
            text += f" — {self.fix}"
        return " ".join(text.split())


class RuntimeFailure(PipesError):
    exit_code = ExitCode.RUNTIME


class ConfigError(PipesError):
    exit_code = ExitCode.USAGE


class AuthError(PipesError):
    exit_code = ExitCode.AUTH


class UnreachableError(PipesError):
    exit_code = ExitCode.UNREACHABLE


class BadInputError(PipesError):
    exit_code = ExitCode.BAD_INPUT


class TempFailError(PipesError):
    exit_code = ExitCode.TEMPFAIL
    retryable = True


class ItemRefused(PipesError):
    """The service refuses this one item for good (an object key it cannot store), while other
    items still go through: the caller sets the item aside instead of retrying or stopping."""

    exit_code = ExitCode.USAGE


class RetriableError(Exception):
    """Raised inside retry loops for failures worth another attempt (429, 5xx, resets).

    `retry_after_secs` carries a server hint (Retry-After) when there was one. `unprocessed`
    says the server refused the request before acting on it (429, 408), so sending it again is
    safe even when the request moves server-side state on (a scroll page).
    """

    def __init__(self, message: str, retry_after_secs: float | None = None, *, unprocessed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_secs = retry_after_secs
        self.unprocessed = unprocessed


class OutputClosed(Exception):
    """stdout was closed by the reader (EPIPE): stop quietly, persist state, exit 0."""
