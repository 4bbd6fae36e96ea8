"""stderr is for people and shippers' logs: one line per message, text or JSON.

Text lines read `harmony-alerts: warning: message`; JSON lines are
`{"level": "warning", "command": "harmony-alerts", "msg": "..."}` so a shipper can parse them.
Messages never carry secrets: callers pass what failed and the fix, not request bodies or headers.
"""

from __future__ import annotations

import sys
from typing import TextIO

import orjson

LOG_FORMATS = ("text", "json")


class Log:
    """A tiny stderr logger; the stdlib logging machinery costs start-up time we do not need."""

    def __init__(self, command: str, fmt: str = "text", stream: TextIO | None = None, debug: bool = False):
        self.command = command
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stderr
        self.debug_enabled = debug
        self._once: set[str] = set()

    def _emit(self, level: str, msg: str, fields: dict[str, object]) -> None:
        if self.fmt == "json":
            line = orjson.dumps({"level": level, "command": self.command, "msg": msg, **fields}).decode()
        else:
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            line = f"{self.command}: {level}: {msg}{extra}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass

    def info(self, msg: str, **fields: object) -> None:
        self._emit("info", msg, fields)

    def warning(self, msg: str, **fields: object) -> None:
        self._emit("warning", msg, fields)

    def warning_once(self, key: str, msg: str, **fields: object) -> None:
        """Warn the first time only: repeated failures must not flood a shipper's log."""
        if key not in self._once:
            self._once.add(key)
            self.warning(msg, **fields)

    def error(self, msg: str, **fields: object) -> None:
        self._emit("error", msg, fields)

    def debug(self, msg: str, **fields: object) -> None:
        if self.debug_enabled:
            self._emit("debug", msg, fields)

    def raw(self, line: str) -> None:
        """Write one line exactly as given (the stats line, the error line)."""
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
