"""stderr is for people and shippers' logs: one line per message, text or JSON, each timestamped.

Text lines read `2026-03-01T12:00:00.123Z harmony-alerts: warning: message`; JSON lines are
`{"level": "warning", "time": "2026-03-01T12:00:00.123Z", "command": "harmony-alerts", "msg": "..."}`
so a shipper can parse them. Times are RFC 3339 UTC with milliseconds. `--log-level` drops lines
below it; the fatal error line and the stats line are always written. Messages never carry
secrets: callers pass what failed and the fix, not request bodies or headers. As a last line of
defence a command registers its secrets (`add_secret`): they are replaced by `<redacted>` in
every line this logger writes, whatever text reached it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import orjson

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"
_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}


def rfc3339_utc(epoch_secs: float) -> str:
    """`2026-03-01T12:00:00.123Z`: RFC 3339, UTC, milliseconds."""
    whole = int(epoch_secs)
    millis = int((epoch_secs - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


class Log:
    """A tiny stderr logger; the stdlib logging machinery costs start-up time we do not need."""

    def __init__(
        self,
        command: str,
        fmt: str = "text",
        stream: TextIO | None = None,
        debug: bool = False,
        level: str = DEFAULT_LOG_LEVEL,
        clock: Callable[[], float] = time.time,
    ):
        self.command = command
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stderr
        self.level = "debug" if debug else level
        self.threshold = _RANK[self.level]
        self.debug_enabled = self.threshold == 0
        self.clock = clock
        # runs before each line: the terminal status line (stats.py) clears itself there
        self.before_line: Callable[[], None] | None = None
        self._once: set[str] = set()
        self._secrets: list[str] = []

    def add_secret(self, secret: str) -> None:
        """Never write `secret` on stderr from now on, nor its JSON-escaped forms (a message may
        quote a JSON body, and a JSON log line escapes that once more)."""
        forms = set()
        current = secret
        for _ in range(4):
            forms.add(current)
            current = orjson.dumps(current).decode()[1:-1]
        self._secrets = sorted({*self._secrets, *(f for f in forms if f)}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "<redacted>")
        return text

    def enabled(self, level: str) -> bool:
        return _RANK[level] >= self.threshold

    def _emit(self, level: str, msg: str, fields: dict[str, object]) -> None:
        if _RANK[level] < self.threshold:
            return
        now = rfc3339_utc(self.clock())
        if self._secrets:
            msg = self.redact(msg)
            fields = {k: self.redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        if self.fmt == "json":
            line = orjson.dumps(
                {"level": level, "time": now, "command": self.command, "msg": msg, **fields}, default=str
            ).decode()
        else:
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            line = f"{now} {self.command}: {level}: {msg}{extra}"
        self._write(line)

    def _write(self, line: str) -> None:
        if self._secrets:
            line = self.redact(line)
        if self.before_line is not None:
            self.before_line()
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

    def fatal(self, message: str, fix: str | None, exit_code: int) -> None:
        """The one line a command ends with when it fails: what failed — the fix. Never filtered."""
        if self.fmt == "json":
            self._emit("error", message, {"fix": fix or "", "exit_code": exit_code})
            return
        text = message + (f" — {fix}" if fix else "")
        self._write(f"{rfc3339_utc(self.clock())} {self.command}: error: {' '.join(text.split())}")

    def record(self, key: str, payload: dict[str, object]) -> None:
        """`{"stats": {...}, "level": "info", "time": ...}`: a JSON line in either format, never filtered.

        The key comes first so a reader can find the line by its start (`{"stats"`).
        """
        self._write(orjson.dumps({key: payload, "level": "info", "time": rfc3339_utc(self.clock())}).decode())

    def raw(self, line: str) -> None:
        """Write one line exactly as given (secrets redacted)."""
        self._write(line)
