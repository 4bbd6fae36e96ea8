"""`hec-emulator`: a local double of the HEC Smart API for tests, benchmarks and the demo.

Prints one line `{"url": "http://127.0.0.1:PORT"}` on stdout once it listens, then serves until
SIGTERM/SIGINT (exit 0, a `{"stats": ...}` line on stderr). Every option has an env var.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.options import log_format_option, log_level_option
from harmony_pipes._core.version import version_option

COMMAND = "hec-emulator"
F = TypeVar("F", bound=Callable[..., Any])


def _opt(*names: str, envvar: str | list[str], **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


def _env(name: str) -> str:
    return f"HEC_EMULATOR_{name}"


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


@click.command(
    context_settings={**CONTEXT_SETTINGS, "max_content_width": 110},
    epilog=with_examples(
        'hec-emulator --generate 1000 --seed 7  # prints {"url": ...} once it listens',
        "hec-emulator --port 8080 --events events.ndjson --rate-limit-every 10 --token-ttl-secs 60",
        "hec-emulator --generate 50000 --page-size 500 --max-records-per-query 10000 --log-requests",
    ),
)
@_opt(
    "--port",
    envvar=_env("PORT"),
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="TCP port on 127.0.0.1 (0 = a free one; the URL line says which).",
)
@_opt(
    "--events",
    "events_file",
    envvar=_env("EVENTS"),
    type=click.Path(dir_okay=False),
    help="NDJSON file of events to serve (a JSON array works too).",
)
@_opt(
    "--generate",
    envvar=_env("GENERATE"),
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Generate N realistic events (added to --events).",
)
@_opt("--seed", envvar=_env("SEED"), type=int, default=1, show_default=True, help="Seed of --generate.")
@_opt(
    "--span-secs",
    envvar=_env("SPAN_SECS"),
    type=click.FloatRange(min=0.001),
    default=3600.0,
    show_default=True,
    help="Generated events spread over this many seconds before --end-time.",
)
@_opt(
    "--end-time",
    envvar=_env("END_TIME"),
    metavar="ISO",
    help="Newest generated eventCreated (default: now). Fixing it makes --generate byte-identical.",
)
@_opt(
    "--customer-id",
    envvar=_env("CUSTOMER_ID"),
    default="exampletest",
    show_default=True,
    help="customerId of generated events and the scope.",
)
@_opt(
    "--client-id",
    envvar=[_env("CLIENT_ID"), "HARMONY_CLIENT_ID"],
    default="demo-client",
    show_default=True,
    help="Client ID the tenant accepts (falls back to HARMONY_CLIENT_ID).",
)
@_opt(
    "--access-key",
    envvar=[_env("ACCESS_KEY"), "HARMONY_ACCESS_KEY"],
    default="demo-secret",
    show_default=False,
    help="Access key the tenant accepts; prefer the env var (falls back to HARMONY_ACCESS_KEY) [default: demo-secret].",
)
@_opt(
    "--page-size",
    envvar=_env("PAGE_SIZE"),
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Records per event/query page.",
)
@_opt(
    "--scroll-style",
    envvar=_env("SCROLL_STYLE"),
    type=click.Choice(["null", "constant-empty-page"]),
    default="null",
    show_default=True,
    help="End of scroll: null scrollId on the last page, or the same scrollId forever and an empty last page.",
)
@_opt(
    "--scroll-ttl-secs",
    envvar=_env("SCROLL_TTL_SECS"),
    type=SECS,
    default=300.0,
    show_default=True,
    help="A scroll id unused this long is forgotten (then 400 Invalid scroll).",
)
@_opt(
    "--token-ttl-secs",
    envvar=_env("TOKEN_TTL_SECS"),
    type=click.FloatRange(min=0.001),
    default=1800.0,
    show_default=True,
    help="Token lifetime (expiresIn); an expired token gets 401 Authentication required.",
)
@_opt(
    "--revoke-token-every",
    envvar=_env("REVOKE_TOKEN_EVERY"),
    type=EVERY,
    default=0,
    show_default=True,
    help="Invalidate the token server-side on every Nth authorized API request (401 forceLogout).",
)
@_opt(
    "--max-records-per-query",
    envvar=_env("MAX_RECORDS_PER_QUERY"),
    type=click.IntRange(min=1),
    help="Silently truncate every query to its N oldest matches (like the real gateway's cap).",
)
@_opt(
    "--invalid-scroll-every",
    envvar=_env("INVALID_SCROLL_EVERY"),
    type=EVERY,
    default=0,
    show_default=True,
    help="Every Nth scroll (paged query) loses its id: its next page request gets 400 Invalid scroll.",
)
@_opt(
    "--rate-limit-every",
    envvar=_env("RATE_LIMIT_EVERY"),
    type=EVERY,
    default=0,
    show_default=True,
    help="Every Nth API request gets 429.",
)
@_opt(
    "--retry-after-secs",
    envvar=_env("RETRY_AFTER_SECS"),
    type=SECS,
    default=1.0,
    show_default=True,
    help="Retry-After value sent with 429.",
)
@_opt(
    "--retry-after-style",
    envvar=_env("RETRY_AFTER_STYLE"),
    type=click.Choice(["seconds", "http-date", "none"]),
    default="seconds",
    show_default=True,
    help="Retry-After as delta seconds, an HTTP date, or absent.",
)
@_opt(
    "--error-every",
    envvar=_env("ERROR_EVERY"),
    type=EVERY,
    default=0,
    show_default=True,
    help="Every Nth API request gets an error status from --error-codes (in turn).",
)
@_opt(
    "--error-codes",
    envvar=_env("ERROR_CODES"),
    default="500,502,503",
    show_default=True,
    callback=_codes,
    help="Error statuses --error-every cycles through (422 = failure envelope).",
)
@_opt(
    "--reset-every",
    envvar=_env("RESET_EVERY"),
    type=EVERY,
    default=0,
    show_default=True,
    help="Every Nth API request is processed (a scroll advances), then its connection is reset: the answer is lost.",
)
@_opt(
    "--slow-every",
    envvar=_env("SLOW_EVERY"),
    type=EVERY,
    default=0,
    show_default=True,
    help="Every Nth API request is processed, then answered --slow-ms late (past a client's timeout).",
)
@_opt(
    "--slow-ms",
    envvar=_env("SLOW_MS"),
    type=SECS,
    default=2000.0,
    show_default=True,
    help="How late --slow-every answers come.",
)
@_opt(
    "--delay-ms",
    envvar=_env("DELAY_MS"),
    type=SECS,
    default=0.0,
    show_default=True,
    help="Answer every API request this much later (slow gateway).",
)
@_opt(
    "--late-events",
    envvar=_env("LATE_EVENTS"),
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Insert N extra events while running...",
)
@_opt(
    "--late-after-secs",
    envvar=_env("LATE_AFTER_SECS"),
    type=SECS,
    default=5.0,
    show_default=True,
    help="...this long after start...",
)
@_opt(
    "--late-lag-secs",
    envvar=_env("LATE_LAG_SECS"),
    type=SECS,
    default=120.0,
    show_default=True,
    help="...with an eventCreated this far in the past.",
)
@_opt("--log-requests", envvar=_env("LOG_REQUESTS"), is_flag=True, help="One stderr line per request.")
@log_format_option
@log_level_option
@version_option(COMMAND)
def cmd(**opts: Any) -> int:
    """Serve a local emulation of the Harmony Email & Collaboration (HEC) Smart API on 127.0.0.1."""
    from .run import serve

    return serve(opts)


main = command_main(cmd, COMMAND)
