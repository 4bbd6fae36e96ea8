"""hec-emulator's options (every one with a HEC_EMULATOR_* variable; the tenant's client id and
access key also fall back to HARMONY_CLIENT_ID / HARMONY_ACCESS_KEY, so a collector and its
emulator can share one environment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from harmony_pipes._core.options import apply_options, env_options, log_format_option, log_level_option

COMMAND = "hec-emulator"
F = TypeVar("F", bound=Callable[..., Any])
opt = env_options("HEC_EMULATOR_")


def _codes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        codes = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter("a comma-separated list of HTTP status codes, e.g. 500,502,503") from None
    if not codes or any(not 400 <= c <= 599 for c in codes):
        raise click.BadParameter("codes must be HTTP error statuses (400-599)")
    return codes


EVERY = click.IntRange(min=0)
SECS = click.FloatRange(min=0)


def options(f: F) -> F:
    """Every option of hec-emulator, in --help order."""
    return apply_options(
        f,
        [
            opt(
                "--port",
                env="PORT",
                type=click.IntRange(0, 65535),
                default=0,
                show_default=True,
                help="TCP port on 127.0.0.1 (0 = a free one; the URL line says which).",
            ),
            opt(
                "--events",
                "events_file",
                env="EVENTS",
                type=click.Path(dir_okay=False),
                help="NDJSON file of events to serve (a JSON array works too).",
            ),
            opt(
                "--generate",
                env="GENERATE",
                type=click.IntRange(min=0),
                default=0,
                show_default=True,
                help="Generate N realistic events (added to --events).",
            ),
            opt("--seed", env="SEED", type=int, default=1, show_default=True, help="Seed of --generate."),
            opt(
                "--span-secs",
                env="SPAN_SECS",
                type=click.FloatRange(min=0.001),
                default=3600.0,
                show_default=True,
                help="Generated events spread over this many seconds before --end-time.",
            ),
            opt(
                "--end-time",
                env="END_TIME",
                metavar="ISO",
                help="Newest generated eventCreated (default: now). Fixing it makes --generate byte-identical.",
            ),
            opt(
                "--customer-id",
                env="CUSTOMER_ID",
                default="exampletest",
                show_default=True,
                help="customerId of generated events and the scope.",
            ),
            opt(
                "--client-id",
                env="CLIENT_ID",
                also_env=("HARMONY_CLIENT_ID",),
                default="demo-client",
                show_default=True,
                help="Client ID the tenant accepts (falls back to HARMONY_CLIENT_ID).",
            ),
            opt(
                "--access-key",
                env="ACCESS_KEY",
                also_env=("HARMONY_ACCESS_KEY",),
                default="demo-secret",
                show_default=False,
                help="Access key the tenant accepts; prefer the env var (falls back to HARMONY_ACCESS_KEY) "
                "[default: demo-secret].",
            ),
            opt(
                "--page-size",
                env="PAGE_SIZE",
                type=click.IntRange(min=1),
                default=100,
                show_default=True,
                help="Records per event/query page.",
            ),
            opt(
                "--scroll-style",
                env="SCROLL_STYLE",
                type=click.Choice(["null", "constant-empty-page"]),
                default="null",
                show_default=True,
                help="End of scroll: null scrollId on the last page, or the same scrollId forever and an empty "
                "last page.",
            ),
            opt(
                "--scroll-ttl-secs",
                env="SCROLL_TTL_SECS",
                type=SECS,
                default=300.0,
                show_default=True,
                help="A scroll id unused this long is forgotten (then 400 Invalid scroll).",
            ),
            opt(
                "--token-ttl-secs",
                env="TOKEN_TTL_SECS",
                type=click.FloatRange(min=0.001),
                default=1800.0,
                show_default=True,
                help="Token lifetime (expiresIn); an expired token gets 401 Authentication required.",
            ),
            opt(
                "--revoke-token-every",
                env="REVOKE_TOKEN_EVERY",
                type=EVERY,
                default=0,
                show_default=True,
                help="Invalidate the token server-side on every Nth authorized API request (401 forceLogout).",
            ),
            opt(
                "--max-records-per-query",
                env="MAX_RECORDS_PER_QUERY",
                type=click.IntRange(min=1),
                help="Silently truncate every query to its N oldest matches (like the real gateway's cap).",
            ),
            opt(
                "--invalid-scroll-every",
                env="INVALID_SCROLL_EVERY",
                type=EVERY,
                default=0,
                show_default=True,
                help="Every Nth scroll (paged query) loses its id: its next page request gets 400 Invalid scroll.",
            ),
            opt(
                "--rate-limit-every",
                env="RATE_LIMIT_EVERY",
                type=EVERY,
                default=0,
                show_default=True,
                help="Every Nth API request gets 429.",
            ),
            opt(
                "--retry-after-secs",
                env="RETRY_AFTER_SECS",
                type=SECS,
                default=1.0,
                show_default=True,
                help="Retry-After value sent with 429.",
            ),
            opt(
                "--retry-after-style",
                env="RETRY_AFTER_STYLE",
                type=click.Choice(["seconds", "http-date", "none"]),
                default="seconds",
                show_default=True,
                help="Retry-After as delta seconds, an HTTP date, or absent.",
            ),
            opt(
                "--error-every",
                env="ERROR_EVERY",
                type=EVERY,
                default=0,
                show_default=True,
                help="Every Nth API request gets an error status from --error-codes (in turn).",
            ),
            opt(
                "--error-codes",
                env="ERROR_CODES",
                default="500,502,503",
                show_default=True,
                callback=_codes,
                help="Error statuses --error-every cycles through (422 = failure envelope).",
            ),
            opt(
                "--reset-every",
                env="RESET_EVERY",
                type=EVERY,
                default=0,
                show_default=True,
                help="Every Nth API request is processed (a scroll advances), then its connection is reset: the "
                "answer is lost.",
            ),
            opt(
                "--slow-every",
                env="SLOW_EVERY",
                type=EVERY,
                default=0,
                show_default=True,
                help="Every Nth API request is processed, then answered --slow-ms late (past a client's timeout).",
            ),
            opt(
                "--slow-ms",
                env="SLOW_MS",
                type=SECS,
                default=2000.0,
                show_default=True,
                help="How late --slow-every answers come.",
            ),
            opt(
                "--delay-ms",
                env="DELAY_MS",
                type=SECS,
                default=0.0,
                show_default=True,
                help="Answer every API request this much later (slow gateway).",
            ),
            opt(
                "--late-events",
                env="LATE_EVENTS",
                type=click.IntRange(min=0),
                default=0,
                show_default=True,
                help="Insert N extra events while running...",
            ),
            opt(
                "--late-after-secs",
                env="LATE_AFTER_SECS",
                type=SECS,
                default=5.0,
                show_default=True,
                help="...this long after start...",
            ),
            opt(
                "--late-lag-secs",
                env="LATE_LAG_SECS",
                type=SECS,
                default=120.0,
                show_default=True,
                help="...with an eventCreated this far in the past.",
            ),
            opt("--log-requests", env="LOG_REQUESTS", is_flag=True, help="One stderr line per request."),
            log_format_option,
            log_level_option,
        ],
    )
