"""The one way tests wait for something observable (a file, a line, a counter) instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], Any],
    timeout_secs: float = 15.0,
    what: str = "the condition",
    step_secs: float = 0.02,
    *,
    ignore: tuple[type[BaseException], ...] = (),
    alive: Callable[[], None] | None = None,
) -> Any:
    """Poll `condition()` until it is truthy and return its value; fail the test saying `what` did
    not happen. Exceptions of the `ignore` types count as "not yet"; `alive()` may raise to stop
    early (a process that died)."""
    deadline = time.monotonic() + timeout_secs
    last: Any = None
    while True:
        try:
            last = condition()
        except ignore as exc:
            last = exc
        if last and not isinstance(last, BaseException):
            return last
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs} s waiting for {what} (last: {last!r})")
        time.sleep(step_secs)
