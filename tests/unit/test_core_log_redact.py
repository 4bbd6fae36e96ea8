"""_core.log: registered secrets never reach stderr, in text or JSON lines (issue 11, case 3)."""

from __future__ import annotations

import io

import orjson

from harmony_pipes._core.log import Log

SECRET = 'pa/ss"word-0123456789'


def test_registered_secrets_are_redacted_in_every_line() -> None:
    for fmt in ("text", "json"):
        stream = io.StringIO()
        log = Log("harmony-events", fmt, stream=stream)
        log.add_secret(SECRET)
        log.warning(f"server said: {SECRET}", detail=SECRET)
        log.error(f"bad body {orjson.dumps({'accessKey': SECRET}).decode()}")
        log.raw(f"Error: echoed {SECRET} — fix it")
        text = stream.getvalue()
        assert SECRET not in text and orjson.dumps(SECRET).decode()[1:-1] not in text
        assert text.count("<redacted>") == 4 and len(text.splitlines()) == 3
        if fmt == "json":
            assert [orjson.loads(line)["level"] for line in text.splitlines()[:2]] == ["warning", "error"]
