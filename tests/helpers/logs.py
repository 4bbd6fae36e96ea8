"""Read our stderr log lines: `2026-03-01T12:00:00.123Z harmony-alerts: warning: message`."""

from __future__ import annotations

import re

LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) (?P<command>[a-z0-9-]+): "
    r"(?P<level>debug|info|warning|error): (?P<msg>.*)$"
)


def log_lines(stderr: str, level: str | None = None) -> list[dict[str, str]]:
    """The text log lines in `stderr` (time, command, level, msg), optionally of one level."""
    found = []
    for line in stderr.splitlines():
        match = LOG_LINE.match(line.rsplit("\r", 1)[-1])  # a status line may precede it on a tty
        if match and (level is None or match["level"] == level):
            found.append(match.groupdict())
    return found


def error_lines(stderr: str) -> list[str]:
    """The messages of the error lines (`what failed — the fix`), without time and command."""
    return [line["msg"] for line in log_lines(stderr, "error")]
