"""Wiring for the two subcommands: options → client, cursor store, collector; and `test`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from harmony_pipes._core.errors import ConfigError, PipesError
from harmony_pipes._core.options import Runtime
from harmony_pipes._core.retry import Backoff

from .timeparse import US_PER_SEC, TimeParseError, format_api_time, parse_time_option

DEFAULT_START_SECS = 3600
INSECURE_WARNING = "--insecure: TLS certificates are NOT verified; only use this on a network you trust"


def _now_us() -> int:
    return time.time_ns() // 1000


def _time_option(name: str, value: str | None, now: int) -> int | None:
    if value is None:
        return None
    try:
        return parse_time_option(value, now)
    except TimeParseError:
        raise ConfigError(
            f"{name} {value!r} is not a time",
            "use ISO 8601 (2024-10-18T08:00:00Z) or a duration (24h, 30m, 7d)",
        ) from None


def _client(
    opts: dict[str, Any],
    env: Mapping[str, str],
    runtime: Runtime | None,
    *,
    max_retries: int,
    base_delay_secs: float = 0.5,
) -> Any:
    from .client import HecClient
    from .settings import read_access_key, require_client_id, resolve_base_url

    base_url = resolve_base_url(opts.pop("base_url"), opts.pop("region"))
    client_id = require_client_id(opts.pop("client_id"))
    access_key = read_access_key(env, opts.pop("access_key_file"))
    if runtime is not None:
        runtime.log.add_secret(access_key)  # a last line of defence; the client scrubs answers itself
    insecure = opts.pop("insecure")
    stop = runtime.stop if runtime is not None else None

    def on_retry(reason: str, delay: float) -> None:
        if runtime is not None:
            runtime.log.debug(f"retrying in {delay:.2f} s: {reason}")

    return HecClient(
        base_url,
        client_id,
        access_key,
        timeout_secs=opts.pop("timeout_secs"),
        verify_tls=not insecure,
        backoff=Backoff(base_delay_secs=base_delay_secs, max_retries=max_retries),
        stats=runtime.stats if runtime is not None else None,
        sleep=stop.sleep if stop is not None else None,
        on_retry=on_retry,
    ), insecure


def run_collect(runtime: Runtime, opts: dict[str, Any], env: Mapping[str, str]) -> int:
    from harmony_pipes._core.state import StateDir

    from .collect import CollectConfig, Collector
    from .cursor import CursorStore
    from .settings import build_filters

    log = runtime.log
    now = _now_us()
    start_us = _time_option("--start", opts.pop("start"), now)
    end_us = _time_option("--end", opts.pop("end"), now)
    if start_us is None:
        start_us = now - DEFAULT_START_SECS * US_PER_SEC
    if end_us is not None and end_us <= start_us:
        raise ConfigError("--end is not after --start", "give an --end later than --start")
    filters = build_filters(opts.pop("types"), opts.pop("states"), opts.pop("severities"), opts.pop("saas"))
    client, insecure = _client(
        opts,
        env,
        runtime,
        max_retries=opts.pop("max_retries"),
        base_delay_secs=opts.pop("retry_base_delay_secs"),
    )
    if insecure:
        log.warning(INSECURE_WARNING)
    tenant = opts.pop("tenant")
    if tenant:
        runtime.stats.extra["tenant"] = tenant
    state_dir_path = opts.pop("state_dir")
    state_dir = StateDir(state_dir_path, owner="harmony-events") if state_dir_path else None
    if state_dir is None:
        log.warning("no --state-dir: the cursor is kept in memory only; a restart begins again at --start")
    config = CollectConfig(
        start_us=start_us,
        end_us=end_us,
        once=opts.pop("once"),
        interval_secs=opts.pop("interval_secs"),
        window_us=opts.pop("window_secs") * US_PER_SEC,
        overlap_us=opts.pop("overlap_secs") * US_PER_SEC,
        max_records_per_window=opts.pop("max_records_per_window"),
        filters=filters,
    )
    source = f"{client.base_url} {client.client_id}"
    try:
        collector = Collector(client, runtime, CursorStore(state_dir), config, source, _now_us)
        log.debug(f"collecting from {format_api_time(collector.state.cursor_us)} ({client.base_url})")
        from .client import Stopped

        try:
            code = collector.run()
        except Stopped:
            code = 0
        if runtime.stop.signal_name:
            log.info(f"stopped by {runtime.stop.signal_name}; output flushed and cursor saved")
        return code
    finally:
        client.close()
        if state_dir is not None:
            state_dir.close()


def run_test(opts: dict[str, Any], env: Mapping[str, str], echo: Callable[[str], None]) -> int:
    """`harmony-events test`: token, then one tiny query (first page of the last hour)."""
    client, insecure = _client(opts, env, None, max_retries=min(1, opts.pop("max_retries")))
    if insecure:
        echo("warning: " + INSECURE_WARNING)
    echo(f"harmony-events test: {client.base_url} as client {client.client_id}")
    try:
        client.token()
        echo(f"  ok    token issued (valid {client.token_ttl_secs:g} s)")
        now = _now_us()
        body = {
            "requestData": {
                "startDate": format_api_time(now - 3600 * US_PER_SEC),
                "endDate": format_api_time(now),
            }
        }
        doc = client.query_events(body)
        events = doc.get("responseData") or []
        echo(f"  ok    event query answered: {len(events)} event(s) on the first page of the last hour")
    except PipesError as exc:
        echo(f"  FAIL  {exc.message}")
        if exc.fix:
            echo(f"        fix: {exc.fix}")
        raise
    finally:
        client.close()
    echo("  all checks passed")
    return 0
