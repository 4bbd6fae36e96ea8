"""SIGTERM, SIGINT and SIGHUP become a flag the runner checks (DESIGN section 3.4).

A source stops at its next safe point; a transform or sink reads on until end of input (or
`--shutdown-timeout-secs`) and commits everything it read. SIGHUP means the same as SIGTERM: a
shipper or a terminal hanging up must not cost a record, and none of our commands has a
configuration file to reload.
"""

from __future__ import annotations

import signal
import time
from types import FrameType


class StopFlag:
    def __init__(self) -> None:
        self.stopped = False
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self.stopped

    def request(self, name: str = "request") -> None:
        self.stopped = True
        self.signal_name = name

    def install(self) -> StopFlag:
        """Route SIGTERM, SIGINT and SIGHUP here; a second SIGINT interrupts for real."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.stopped and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, handler)
        return self

    def sleep(self, secs: float, step_secs: float = 0.1) -> bool:
        """Sleep up to `secs`, waking early on stop; True when the full time passed."""
        deadline = time.monotonic() + secs
        while not self.stopped:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(step_secs, remaining))
        return False
