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

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# stop signals that came while a console script was still importing its command (see catch_early)
_early_signals: list[str] = []


def _keep_early(signum: int, _frame: FrameType | None) -> None:
    _early_signals.append(signal.Signals(signum).name)


def catch_early() -> None:
    """Keep a stop signal that comes while the command is still importing its modules.

    A console script spends 0.05-0.2 s importing (longer on a loaded machine) before its runner
    installs a StopFlag; a pipe stopped at once (Ctrl-C, `systemctl stop`, a shipper's shutdown)
    can signal a stage in that time, and the default action would kill it before it drained its
    input. The signal is handed to the first StopFlag installed (`end_early` first)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _keep_early)


def end_early() -> None:
    """Imports are done: the default actions again until a StopFlag takes over (a command that
    never installs one, e.g. `--help` or `status`, is stopped by a signal as usual). A signal
    kept during the imports waits for that StopFlag."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


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

        for signum in STOP_SIGNALS:
            signal.signal(signum, handler)
        if _early_signals:  # it came while the command was starting: stop as if it came now
            self.request(_early_signals[0])
            _early_signals.clear()
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
