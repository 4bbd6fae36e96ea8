"""harmony-events' configuration: `ConnectionConfig` and `CollectConfig`, the options that fill
them, and the rules behind them (which gateway, which filter spelling, where the secret may come
from) as plain functions with plain inputs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.hec import STATES, parse_severity, token
from harmony_pipes._core.options import apply_options, env_options, log_options, state_option

from .timeparse import US_PER_SEC, TimeParseError, parse_time_option

F = TypeVar("F", bound=Callable[..., Any])
COMMAND = "harmony-events"
opt = env_options("HARMONY_")  # the vendor's names: HARMONY_CLIENT_ID, HARMONY_ACCESS_KEY, ...
DEFAULT_START_SECS = 3600

DEFAULT_BASE_URL = "https://cloudinfra-gw-us.portal.checkpoint.com"
REGION_GATEWAYS = {
    "us": "https://cloudinfra-gw-us.portal.checkpoint.com",
    "eu": "https://cloudinfra-gw.portal.checkpoint.com",
    "ca": "https://cloudinfra-gw.ca.portal.checkpoint.com",
    "ap": "https://cloudinfra-gw.ap.portal.checkpoint.com",
    "uk": "https://cloudinfra-gw.uk.portal.checkpoint.com",
    "me": "https://cloudinfra-gw.me.portal.checkpoint.com",
    "in": "https://cloudinfra-gw.in.portal.checkpoint.com",
}
ACCESS_KEY_ENV = "HARMONY_ACCESS_KEY"
# scheme://userinfo@ — greedy up to the last '@' of the authority: a raw '@' in a password
# must not leave its tail behind
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def strip_userinfo(url: str) -> str:
    """`https://user:password@host/x` → `https://host/x` (what may be printed or stored)."""
    return _USERINFO_RE.sub(r"\1", url, count=1)


def resolve_base_url(base_url: str | None, region: str | None) -> str:
    """--base-url wins; else the region's gateway; else the US gateway (the connector default)."""
    if base_url and region:
        raise ConfigError(
            "both a base URL and --region are set", "use one of --base-url (HARMONY_BASE_URL) or --region"
        )
    if base_url:
        url = base_url.strip().rstrip("/")
        shown = strip_userinfo(url)  # never printed, logged or stored with a password
        if shown != url:
            raise ConfigError(
                f"base URL {shown!r} holds a user name or password (not shown)",
                "remove it from --base-url / HARMONY_BASE_URL: the API key is HARMONY_CLIENT_ID and "
                "HARMONY_ACCESS_KEY (or --access-key-file)",
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base URL {shown!r} is not http(s)", "use e.g. https://cloudinfra-gw.portal.checkpoint.com"
            )
        return url
    if region:
        return REGION_GATEWAYS[region.lower()]
    return DEFAULT_BASE_URL


def read_access_key(env: Mapping[str, str], key_file: str | None) -> str:
    """The secret from --access-key-file (first line) or HARMONY_ACCESS_KEY; never from argv."""
    if key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --access-key-file {key_file}: {exc.strerror}", "point it at a readable file"
            ) from None
        value = key[0].strip() if key else ""
        if not value:
            raise ConfigError(f"--access-key-file {key_file} is empty", "write the access key into it")
        return value
    value = env.get(ACCESS_KEY_ENV, "").strip()
    if not value:
        raise ConfigError("no access key", f"set {ACCESS_KEY_ENV} or use --access-key-file (HARMONY_ACCESS_KEY_FILE)")
    return value


def require_client_id(client_id: str | None) -> str:
    if not client_id or not client_id.strip():
        raise ConfigError("no client id", "set HARMONY_CLIENT_ID or --client-id")
    return client_id.strip()


def split_list(value: str | None) -> list[str]:
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def build_filters(types: str | None, states: str | None, severities: str | None, saas: str | None) -> dict[str, Any]:
    """The `requestData` filter keys; omitted filters mean "all" (as Elastic and Sentinel rely on)."""
    filters: dict[str, Any] = {}
    type_list = [token(t) for t in split_list(types)]
    if type_list:
        filters["eventTypes"] = type_list
    state_list = [token(s) for s in split_list(states)]
    unknown = [s for s in state_list if s not in STATES]
    if unknown:
        raise ConfigError(f"unknown --states value(s): {', '.join(unknown)}", f"use {', '.join(STATES)}")
    if state_list:
        filters["eventStates"] = state_list
    severity_list = []
    for item in split_list(severities):
        number = parse_severity(item)
        if number is not None:
            severity_list.append(number)
        else:
            raise ConfigError(
                f"unknown --severities value {item!r}", "use 1-5 or very_low, low, medium, high, critical"
            )
    if severity_list:
        filters["severities"] = sorted(set(severity_list))
    saas_list = [token(s) for s in split_list(saas)]
    if saas_list:
        filters["saas"] = saas_list
    return filters


def connection_options(f: F) -> F:
    options = [
        opt(
            "--base-url",
            env="BASE_URL",
            metavar="URL",
            help="Infinity Portal gateway [default: https://cloudinfra-gw-us.portal.checkpoint.com].",
        ),
        opt(
            "--region",
            env="REGION",
            type=click.Choice(sorted(REGION_GATEWAYS), case_sensitive=False),
            help="Use this region's gateway instead of --base-url.",
        ),
        opt("--client-id", env="CLIENT_ID", help="Client ID of the Infinity Portal API key."),
        opt(
            "--access-key-file",
            env="ACCESS_KEY_FILE",
            type=click.Path(dir_okay=False),
            help="File holding the access (secret) key; else env HARMONY_ACCESS_KEY. Never on argv.",
        ),
        opt(
            "--timeout-secs",
            env="TIMEOUT_SECS",
            type=click.FloatRange(min=0.1),
            default=30.0,
            show_default=True,
            help="Per-request timeout.",
        ),
        opt(
            "--max-retries",
            env="MAX_RETRIES",
            type=click.IntRange(min=0),
            default=5,
            show_default=True,
            help="Retries of a request after 429, 5xx, timeouts and resets.",
        ),
        opt(
            "--insecure",
            env="INSECURE",
            is_flag=True,
            help="Do not verify TLS certificates (warns on every start).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def collect_options(f: F) -> F:
    """Every option of `harmony-events collect` (connection, window, cursor, state, log)."""
    return apply_options(
        f,
        [
            connection_options,
            opt(
                "--start",
                env="START",
                metavar="TIME",
                help="First run only: ISO 8601 or relative (24h, 30m, 7d) [default: 1h].",
            ),
            opt(
                "--end",
                env="END",
                metavar="TIME",
                help="Stop at this time (ISO 8601 or relative); implies one pass.",
            ),
            opt("--once", env="ONCE", is_flag=True, help="Collect up to now, then exit."),
            opt(
                "--interval-secs",
                env="INTERVAL_SECS",
                type=click.FloatRange(min=0.1),
                default=60.0,
                show_default=True,
                help="Time between collection cycles when not --once.",
            ),
            opt(
                "--types",
                env="TYPES",
                metavar="LIST",
                help="Event types, comma-separated (phishing,malware,...).",
            ),
            opt(
                "--states",
                env="STATES",
                metavar="LIST",
                help="Event states, comma-separated (new,detected,...).",
            ),
            opt(
                "--severities",
                env="SEVERITIES",
                metavar="LIST",
                help="Severities 1-5 or names, comma-separated.",
            ),
            opt(
                "--saas",
                env="SAAS",
                metavar="LIST",
                help="SaaS names, comma-separated (office365_emails,...).",
            ),
            opt(
                "--window-secs",
                env="WINDOW_SECS",
                type=click.IntRange(min=1),
                default=3600,
                show_default=True,
                help="Longest time window per query.",
            ),
            opt(
                "--overlap-secs",
                env="OVERLAP_SECS",
                type=click.IntRange(min=0),
                default=300,
                show_default=True,
                help="Lookback re-read each cycle to catch late events (emitted once).",
            ),
            opt(
                "--max-records-per-window",
                env="MAX_RECORDS_PER_WINDOW",
                type=click.IntRange(min=1),
                default=10_000,
                show_default=True,
                help="Windows are planned to hold half this many events; one returning this many is split.",
            ),
            opt("--tenant", env="TENANT", help="Tenant name for log and stats lines (events stay untouched)."),
            opt(
                "--retry-base-delay-secs",
                env="RETRY_BASE_DELAY_SECS",
                type=click.FloatRange(min=0),
                default=0.5,
                show_default=True,
                help="First backoff step (full jitter, doubling, capped at 30 s).",
            ),
            state_option("HARMONY_EVENTS_STATE_DIR", "events"),
            log_options,
        ],
    )


@dataclass(frozen=True)
class ConnectionConfig:
    """Where and as whom (the access key itself is read by `read_access_key`, never kept here)."""

    base_url: str
    client_id: str
    access_key_file: str | None
    timeout_secs: float = 30.0
    max_retries: int = 5
    retry_base_delay_secs: float = 0.5
    insecure: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ConnectionConfig:
        return cls(
            base_url=resolve_base_url(params["base_url"], params["region"]),
            client_id=require_client_id(params["client_id"]),
            access_key_file=params["access_key_file"],
            timeout_secs=params["timeout_secs"],
            max_retries=params["max_retries"],
            retry_base_delay_secs=params.get("retry_base_delay_secs", 0.5),
            insecure=params["insecure"],
        )


@dataclass(frozen=True)
class CollectConfig:
    start_us: int  # where a brand-new cursor starts
    end_us: int | None = None  # stop here (implies a single pass)
    once: bool = False
    interval_secs: float = 60.0
    window_us: int = 3600 * US_PER_SEC
    overlap_us: int = 300 * US_PER_SEC
    max_records_per_window: int = 10_000
    max_pages_per_window: int = 5_000
    filters: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    state_dir: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any], now_us: int) -> CollectConfig:
        start_us = time_option("--start", params["start"], now_us)
        end_us = time_option("--end", params["end"], now_us)
        if start_us is None:
            start_us = now_us - DEFAULT_START_SECS * US_PER_SEC
        if end_us is not None and end_us <= start_us:
            raise ConfigError("--end is not after --start", "give an --end later than --start")
        return cls(
            start_us=start_us,
            end_us=end_us,
            once=params["once"],
            interval_secs=params["interval_secs"],
            window_us=params["window_secs"] * US_PER_SEC,
            overlap_us=params["overlap_secs"] * US_PER_SEC,
            max_records_per_window=params["max_records_per_window"],
            filters=build_filters(params["types"], params["states"], params["severities"], params["saas"]),
            tenant=params["tenant"] or None,
            state_dir=params["state_dir"],
        )


def time_option(name: str, value: str | None, now_us: int) -> int | None:
    if value is None:
        return None
    try:
        return parse_time_option(value, now_us)
    except TimeParseError:
        raise ConfigError(
            f"{name} {value!r} is not a time",
            "use ISO 8601 (2024-10-18T08:00:00Z) or a duration (24h, 30m, 7d)",
        ) from None


def now_us() -> int:
    return time.time_ns() // 1000
