"""Start-up and the serve loop: load/generate events, bind, print the URL line, serve until a signal."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from harmony_pipes._core.errors import ConfigError, UnreachableError
from harmony_pipes._core.log import DEFAULT_LOG_LEVEL, Log
from harmony_pipes._core.signals import StopFlag
from harmony_pipes._core.version import VERSION

from .api import Emulator, EmulatorConfig
from .generate import format_created, generate_events
from .server import EmulatorServer
from .store import EventStore, QueryError, parse_time_us

US_PER_SEC = 1_000_000


def load_events(path: Path, now_us: int) -> list[dict[str, Any]]:
    """NDJSON (or one JSON array); a bad line is a usage error naming the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read --events {path} ({exc.strerror})", "check the path") from None
    if data.lstrip().startswith(b"["):
        try:
            events = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"--events {path} is not valid JSON ({exc})", "fix the file") from None
        numbered = list(enumerate(events, 1))
    else:
        numbered = []
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((number, orjson.loads(line)))
            except orjson.JSONDecodeError:
                raise ConfigError(f"--events {path} line {number} is not JSON", "one event object per line") from None
    out = []
    for number, event in numbered:
        if not isinstance(event, dict):
            raise ConfigError(f"--events {path} item {number} is not a JSON object", "one event object per line")
        event.setdefault("eventCreated", format_created(now_us))
        try:
            parse_time_us(event["eventCreated"])
        except QueryError:
            raise ConfigError(
                f"--events {path} item {number} has an unparseable eventCreated", "use ISO 8601"
            ) from None
        out.append(event)
    return out


def build_emulator(opts: dict[str, Any]) -> Emulator:
    now_us = int(time.time() * US_PER_SEC)
    store = EventStore()
    events: list[dict[str, Any]] = []
    if opts.get("events_file"):
        events += load_events(Path(opts["events_file"]), now_us)
    if opts.get("generate"):
        end_us = now_us
        if opts.get("end_time"):
            try:
                end_us = parse_time_us(opts["end_time"])
            except QueryError:
                raise ConfigError(
                    f"--end-time {opts['end_time']!r} is not ISO 8601", "e.g. 2026-01-01T00:00:00Z"
                ) from None
        events += generate_events(opts["generate"], opts["seed"], end_us, opts["span_secs"], opts["customer_id"])
    store.add_many(events)
    config = EmulatorConfig(
        client_id=opts["client_id"],
        access_key=opts["access_key"],
        customer_id=opts["customer_id"],
        page_size=opts["page_size"],
        scroll_style=opts["scroll_style"],
        scroll_ttl_secs=opts["scroll_ttl_secs"],
        token_ttl_secs=opts["token_ttl_secs"],
        revoke_token_every=opts["revoke_token_every"],
        max_records_per_query=opts["max_records_per_query"],
        invalid_scroll_every=opts["invalid_scroll_every"],
        rate_limit_every=opts["rate_limit_every"],
        retry_after_secs=opts["retry_after_secs"],
        retry_after_style=opts["retry_after_style"],
        error_every=opts["error_every"],
        error_codes=opts["error_codes"],
        reset_every=opts["reset_every"],
        slow_every=opts["slow_every"],
        slow_ms=opts["slow_ms"],
        late_events=opts["late_events"],
        late_after_secs=opts["late_after_secs"],
        late_lag_secs=opts["late_lag_secs"],
        seed=opts["seed"],
    )
    return Emulator(config, store, clock=time.monotonic, wall_clock=time.time)


def serve(opts: dict[str, Any]) -> int:
    log = Log("hec-emulator", opts.get("log_format", "text"), level=opts.get("log_level", DEFAULT_LOG_LEVEL).lower())
    stop = StopFlag().install()
    emulator = build_emulator(opts)
    try:
        server = EmulatorServer(opts["port"], emulator, opts["delay_ms"] / 1000.0, opts["log_requests"], log)
    except OSError as exc:
        raise UnreachableError(
            f"cannot listen on 127.0.0.1:{opts['port']} ({exc.strerror})", "pick another --port or 0"
        ) from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    sys.stdout.write(orjson.dumps({"url": server.url}).decode() + "\n")
    sys.stdout.flush()
    log.info(f"serving {len(emulator.store)} events at {server.url}")
    while not stop():
        time.sleep(0.1)
        emulator.insert_late_events_if_due()
    server.shutdown()
    server.server_close()
    log.record("stats", {"command": "hec-emulator", "version": VERSION, **emulator.snapshot()})
    return 0
