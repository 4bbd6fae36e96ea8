"""stderr is for people and shippers' logs: one line per message, text or JSON.

Text lines read `harmony-alerts: warning: message`; JSON lines are
`{"level": "warning", "command": "harmony-alerts", "msg": "..."}` so a shipper can parse them.
Messages never carry secrets: callers pass what failed and the fix, not request bodies or headers.
As a last line of defence a command registers its secrets (`add_secret`): they are replaced by
`<redacted>` in every line this logger writes, whatever text reached it.
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

    def _emit(self, level: str, msg: str, fields: dict[str, object]) -> None:
        if self._secrets:
            msg = self.redact(msg)
            fields = {k: self.redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        if self.fmt == "json":
            line = orjson.dumps({"level": level, "command": self.command, "msg": msg, **fields}).decode()
        else:
            extra = "".join(f" {k}={v}" for k, v in fields.items())
            line = f"{self.command}: {level}: {msg}{extra}"
        if self._secrets:
            line = self.redact(line)
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
        """Write one line exactly as given (the stats line, the error line), secrets redacted."""
        if self._secrets:
            line = self.redact(line)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
