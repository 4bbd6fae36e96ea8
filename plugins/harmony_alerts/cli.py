"""harmony-alerts: HEC security events in, normalized and deduplicated alerts out.

    harmony-events --once | harmony-alerts --state-dir /var/lib/harmony-pipes/alerts | s3-batch ...

Click wiring only; the rules live in normalize.py, the shapes in formats.py, the key store in
dedupe.py, and the stdin/stdout loop in harmony_pipes._core.stream.
"""

from __future__ import annotations

import time
from typing import Any

import click
import orjson
from xxhash import xxh3_64_intdigest

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.options import Runtime, StreamConfig, log_options, state_option, stream_options
from harmony_pipes._core.state import StateDir
from harmony_pipes._core.stream import run_transform

from .dedupe import DedupeLog, DigestSet
from .formats import FORMATS, to_ecs, to_ocsf
from .normalize import (
    DEDUPE_FIELDS,
    DEFAULT_DEDUPE_KEY,
    DEFAULT_MIN_SEVERITY,
    DEFAULT_TYPES,
    DedupeKey,
    KeepPolicy,
    build_alert,
)

COMMAND = "harmony-alerts"
FSYNC_INTERVAL_SECS = 1.0


@click.command(
    name=COMMAND,
    epilog=(
        "Exit codes: 0 ok, 1 runtime (state dir or disk failure), 2 usage or configuration, 65 bad input "
        "under --strict. See README for the stream contract."
    ),
)
@click.option(
    "--types",
    default=",".join(DEFAULT_TYPES),
    show_default=True,
    envvar="HARMONY_ALERTS_TYPES",
    show_envvar=True,
    help="Comma-separated event types that are alerts.",
)
@click.option(
    "--min-severity",
    type=click.IntRange(1, 6),
    default=DEFAULT_MIN_SEVERITY,
    show_default=True,
    envvar="HARMONY_ALERTS_MIN_SEVERITY",
    show_envvar=True,
    help="Events at or above this severity (1-5) are alerts whatever their type (6 = off).",
)
@click.option(
    "--all",
    "keep_all",
    is_flag=True,
    envvar="HARMONY_ALERTS_ALL",
    show_envvar=True,
    help='Keep every event (alert_reasons is ["all"] for those no rule selected).',
)
@click.option(
    "--tenant",
    envvar="HARMONY_ALERTS_TENANT",
    show_envvar=True,
    help="tenantid for every alert (default: the event's customerId).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="native",
    show_default=True,
    envvar="HARMONY_ALERTS_FORMAT",
    show_envvar=True,
    help="native (DESIGN section 4), ecs (Elastic Common Schema) or ocsf (Detection Finding 2004).",
)
@click.option(
    "--dedupe-max-keys",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    envvar="HARMONY_ALERTS_DEDUPE_MAX_KEYS",
    show_envvar=True,
    help="Keys remembered for dedupe; the oldest are forgotten first (~28 bytes each).",
)
@click.option(
    "--dedupe-ttl-secs",
    type=click.IntRange(min=1),
    default=30 * 86400,
    show_default=True,
    envvar="HARMONY_ALERTS_DEDUPE_TTL_SECS",
    show_envvar=True,
    help="Forget a key this long after it was first seen.",
)
@click.option(
    "--dedupe-key",
    "dedupe_key",
    default=DEFAULT_DEDUPE_KEY,
    show_default=True,
    envvar="HARMONY_ALERTS_DEDUPE_KEY",
    show_envvar=True,
    metavar="FIELDS",
    callback=lambda _ctx, _param, value: _dedupe_key(value),
    help="What makes two alerts duplicates: comma-separated, `tenant` plus event fields by their API names "
    f"({', '.join(DEDUPE_FIELDS)}).",
)
@click.option(
    "--no-dedupe",
    is_flag=True,
    envvar="HARMONY_ALERTS_NO_DEDUPE",
    show_envvar=True,
    help="Emit every alert, duplicates included.",
)
@state_option("HARMONY_ALERTS_STATE_DIR", "alerts")
@stream_options
@log_options
def cli(**options: Any) -> None:
    """Normalize HEC security events (stdin, NDJSON) into alerts (stdout, NDJSON).

    An event is kept when its type is in --types OR its severity is >= --min-severity; alerts
    are deduplicated on --dedupe-key, tenantid + eventId by default (first occurrence wins).
    """
    stream_config = StreamConfig.pop_from(options)
    runtime = Runtime.from_options(COMMAND, options)
    AlertsRun(runtime, stream_config, **options).run()


def _dedupe_key(value: str) -> DedupeKey:
    try:
        return DedupeKey.parse(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; use tenant and some of {', '.join(DEDUPE_FIELDS)}") from None


class AlertsRun:
    def __init__(
        self,
        runtime: Runtime,
        stream_config: StreamConfig,
        *,
        types: str,
        min_severity: int,
        keep_all: bool,
        tenant: str | None,
        output_format: str,
        dedupe_max_keys: int,
        dedupe_ttl_secs: int,
        dedupe_key: DedupeKey,
        no_dedupe: bool,
        state_dir: str | None,
    ) -> None:
        self.runtime = runtime
        self.stream_config = stream_config
        self.policy = KeepPolicy.from_options(types.split(","), min_severity, keep_all)
        self.tenant = tenant or None
        self.output_format = output_format
        self.dedupe = not no_dedupe
        self.dedupe_key = dedupe_key
        self.digests = DigestSet(dedupe_max_keys, dedupe_ttl_secs)
        self.pending_keys: list[tuple[int, int]] = []
        self.state: StateDir | None = None
        self.key_log: DedupeLog | None = None
        self.last_fsync_at = time.monotonic()
        # wall-clock seconds for key ages, read once per input batch (on_tick), not per record
        self.now_secs = [int(time.time())]
        if self.dedupe and state_dir:
            self.state = StateDir(state_dir)
            self.key_log = DedupeLog(self.state.file("dedupe-keys.bin"))
            loaded = self.key_log.load_into(self.digests)
            runtime.stats.extra["dedupe_keys_loaded"] = loaded
        elif self.dedupe:
            runtime.log.info("No --state-dir: dedupe keys are kept in memory only.")

    def run(self) -> None:
        counters = self.runtime.stats.counters
        for name in ("alerts", "duplicates", "filtered"):
            counters[name] = 0
        if self.key_log is not None:
            self.runtime.writer.on_flushed = self.persist_keys
        run_transform(
            self.runtime,
            self.stream_config,
            self.make_handler(),
            on_tick=self.on_tick,
            on_drain=self.on_drain,
        )

    def make_handler(self):
        counters = self.runtime.stats.counters
        policy = self.policy
        tenant = self.tenant
        dedupe_key = self.dedupe_key
        dedupe = self.dedupe
        digests_add = self.digests.add
        # keys wait here for the flush that makes them persistable; without a state dir there is
        # nothing to persist, and keeping them would grow without bound
        persist = self.key_log is not None
        pending_append = self.pending_keys.append
        dumps = orjson.dumps
        shape = {"native": None, "ecs": to_ecs, "ocsf": to_ocsf}[self.output_format]
        fragment = orjson.Fragment
        ocsf = self.output_format == "ocsf"
        now_secs = self.now_secs
        xxh3 = xxh3_64_intdigest

        def on_record(event: dict[str, Any], raw: bytes) -> bytes | None:
            alert = build_alert(event, tenant, policy, dedupe_key)
            if alert is None:
                counters["filtered"] += 1
                return None
            if dedupe and alert["dedupe_key"] is not None:
                digest = xxh3(alert["dedupe_key"].encode()) or 1  # = key_digest, inlined (hot path)
                seen_at = now_secs[0]
                if not digests_add(digest, seen_at):
                    counters["duplicates"] += 1
                    return None
                if persist:
                    pending_append((digest, seen_at))
            counters["alerts"] += 1
            if shape is not None:
                alert = shape(alert, event, now_secs[0] * 1000)
            # the original event, byte-exact, without serializing it a second time
            if ocsf:
                alert["unmapped"] = {"checkpoint_harmony": fragment(raw.strip())}
            else:
                alert["checkpoint_harmony"] = fragment(raw.strip())
            return dumps(alert)

        return on_record

    def persist_keys(self) -> None:
        """Runs after each stdout flush: the keys of alerts the reader now has go to disk."""
        if self.key_log is not None and self.pending_keys:
            self.key_log.append(self.pending_keys)
            self.pending_keys.clear()

    def on_tick(self) -> None:
        self.now_secs[0] = int(time.time())
        if self.key_log is None:
            return
        now = time.monotonic()
        if now - self.last_fsync_at >= FSYNC_INTERVAL_SECS:
            self.last_fsync_at = now
            self.key_log.sync()
            self.maybe_compact()

    def maybe_compact(self) -> None:
        if self.key_log is not None and self.key_log.entries_on_disk > 2 * len(self.digests) + 10_000:
            self.key_log.compact(self.digests)

    def on_drain(self) -> None:
        try:
            self.runtime.writer.flush()
        finally:
            if self.key_log is not None:
                self.key_log.sync()
                self.maybe_compact()
                self.key_log.close()
            if self.state is not None:
                self.state.close()
            self.runtime.stats.extra["dedupe_keys"] = len(self.digests)


main = command_main(cli, COMMAND)
