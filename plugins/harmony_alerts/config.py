"""harmony-alerts' configuration: a frozen dataclass and the click options that fill it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from harmony_pipes._core.options import apply_options, env_options, log_options, state_option, stream_options

from .formats import FORMATS
from .normalize import DEDUPE_FIELDS, DEFAULT_DEDUPE_KEY, DEFAULT_MIN_SEVERITY, DEFAULT_TYPES, DedupeKey

F = TypeVar("F", bound=Callable[..., Any])
COMMAND = "harmony-alerts"
_opt = env_options("HARMONY_ALERTS_")


@dataclass(frozen=True)
class AlertsConfig:
    types: tuple[str, ...] = DEFAULT_TYPES
    min_severity: int = DEFAULT_MIN_SEVERITY
    keep_all: bool = False
    tenant: str | None = None
    output_format: str = "native"
    dedupe_max_keys: int = 1_000_000
    dedupe_ttl_secs: int = 30 * 86400
    dedupe: bool = True
    dedupe_key: DedupeKey = field(default_factory=lambda: DedupeKey.parse(DEFAULT_DEDUPE_KEY))
    state_dir: str | None = None
    workers: int | None = None  # helper processes (pool.py); None: one per spare CPU, at most one

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AlertsConfig:
        """Build from click's parsed options (the shared stream/log keys already popped)."""
        return cls(
            types=tuple(t for t in params["types"].split(",") if t.strip()),
            min_severity=params["min_severity"],
            keep_all=params["keep_all"],
            tenant=params["tenant"] or None,
            output_format=params["output_format"],
            dedupe_max_keys=params["dedupe_max_keys"],
            dedupe_ttl_secs=params["dedupe_ttl_secs"],
            dedupe=not params["no_dedupe"],
            dedupe_key=params["dedupe_key"],
            state_dir=params["state_dir"],
            workers=params["workers"],
        )


def options(f: F) -> F:
    """Every option of harmony-alerts, its own first, then the shared groups."""
    return apply_options(
        f,
        [
            _opt(
                "--types",
                env="TYPES",
                default=",".join(DEFAULT_TYPES),
                show_default=True,
                help="Comma-separated event types that are alerts.",
            ),
            _opt(
                "--min-severity",
                env="MIN_SEVERITY",
                type=click.IntRange(1, 6),
                default=DEFAULT_MIN_SEVERITY,
                show_default=True,
                help="Events at or above this severity (1-5) are alerts whatever their type (6 = off).",
            ),
            _opt(
                "--all",
                "keep_all",
                env="ALL",
                is_flag=True,
                help='Keep every event (alert_reasons is ["all"] for those no rule selected).',
            ),
            _opt("--tenant", env="TENANT", help="tenantid for every alert (default: the event's customerId)."),
            _opt(
                "--format",
                "output_format",
                env="FORMAT",
                type=click.Choice(FORMATS),
                default="native",
                show_default=True,
                help="native (DESIGN section 4), ecs (Elastic Common Schema) or ocsf (Detection Finding 2004).",
            ),
            _opt(
                "--dedupe-max-keys",
                env="DEDUPE_MAX_KEYS",
                type=click.IntRange(min=1),
                default=1_000_000,
                show_default=True,
                help="Keys remembered for dedupe; the oldest are forgotten first (~28 bytes each).",
            ),
            _opt(
                "--dedupe-ttl-secs",
                env="DEDUPE_TTL_SECS",
                type=click.IntRange(min=1),
                default=30 * 86400,
                show_default=True,
                help="Forget a key this long after it was first seen.",
            ),
            _opt(
                "--dedupe-key",
                "dedupe_key",
                env="DEDUPE_KEY",
                default=DEFAULT_DEDUPE_KEY,
                show_default=True,
                metavar="FIELDS",
                callback=lambda _ctx, _param, value: _dedupe_key(value),
                help="What makes two alerts duplicates: comma-separated, `tenant` plus event fields by their API "
                f"names ({', '.join(DEDUPE_FIELDS)}).",
            ),
            _opt("--no-dedupe", env="NO_DEDUPE", is_flag=True, help="Emit every alert, duplicates included."),
            _opt(
                "--workers",
                env="WORKERS",
                type=click.IntRange(min=0),
                default=None,
                metavar="N",
                help="Helper processes that render alerts beside this one; output and state are the same "
                "as with 0. Default: 1 when two or more CPUs are available (the affinity mask, capped by a "
                "container's CPU limit), else 0. Not used under --strict; "
                "in harmony-pipes chain only between a source and a sink.",
            ),
            state_option("HARMONY_ALERTS_STATE_DIR", "alerts"),
            stream_options,
            log_options,
        ],
    )


def _dedupe_key(value: str | DedupeKey) -> DedupeKey:
    if isinstance(value, DedupeKey):
        return value
    try:
        return DedupeKey.parse(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; use tenant and some of {', '.join(DEDUPE_FIELDS)}") from None
