"""The sync loop: read every region, classify, diff against the last inventory, emit, persist.

One cycle = concurrent paginated DescribeInstances over the selected regions, then the pure
`classify` and `diff`. Records are written and flushed *before* the new inventory is persisted
(a crash in between re-emits, never loses, a change). The inventory lives in
`<state-dir>/inventory.json` (atomic, versioned), so a restart continues with diffs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from harmony_pipes._core.errors import ConfigError, PipesError
from harmony_pipes._core.options import Runtime
from harmony_pipes._core.state import StateDir

from .classify import Selection, classify, is_configured, tag_dict
from .diff import Inventory, diff, snapshot_with_carry
from .ec2 import Ec2Reader, build_filters, gone_reason

STATE_FILE = "inventory.json"
STATE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SyncConfig:
    regions: tuple[str, ...]
    selection: Selection
    vpcs: tuple[str, ...] = ()
    states: tuple[str, ...] = ("running",)
    interval_secs: float = 60.0
    once: bool = False
    resync: bool = False


def iso_now(clock: Callable[[], float] = time.time) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-25T02:54:19.123Z."""
    moment = datetime.fromtimestamp(clock(), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class CycleOutcome:
    records: list[dict[str, Any]]
    inventory: Inventory
    failed: dict[str, PipesError]
    instances: int
    unconfigured: int


class Syncer:
    """Holds the reader, config and last inventory across cycles."""

    def __init__(
        self,
        runtime: Runtime,
        reader: Ec2Reader,
        config: SyncConfig,
        state: StateDir | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.reader = reader
        self.config = config
        self.state = state
        self.clock = clock
        self.filters = build_filters(
            states=config.states,
            vpcs=config.vpcs,
            tags=[(t.key, t.value) for t in config.selection.tags],
        )
        self.previous: Inventory | None = None
        self.cycle = 0
        self._load()

    def _load(self) -> None:
        if self.state is None:
            self.runtime.log.info("no --state-dir: the inventory is in memory only (a restart re-snapshots)")
            return
        data = self.state.read_json(STATE_FILE, STATE_FORMAT_VERSION)
        if data is None:
            return
        site = data.get("site")
        if site != self.config.selection.site and not self.config.resync:
            raise ConfigError(
                f"state directory {self.state.path} holds the inventory of site {site!r}, "
                f"not {self.config.selection.site!r}",
                "use one --state-dir per site, or add --resync to start this directory over",
            )
        self.previous = data.get("inventory") or {}
        self.cycle = int(data.get("cycle") or 0)

    def _persist(self, inventory: Inventory) -> None:
        if self.state is None:
            return
        data = {
            "site": self.config.selection.site,
            "cycle": self.cycle,
            "written_at": iso_now(self.clock),
            "inventory": inventory,
        }
        self.state.write_json(STATE_FILE, data, STATE_FORMAT_VERSION)

    def run_cycle(self, *, first: bool) -> CycleOutcome:
        config = self.config
        selection = config.selection
        results = self.reader.describe_regions(
            config.regions, self.filters, keep=lambda region, inst: classify(inst, region, selection)
        )
        observed_at = iso_now(self.clock)
        current: Inventory = {}
        failed: dict[str, PipesError] = {}
        seen = 0
        for result in results:
            if result.error is not None:
                failed[result.region] = result.error
                continue
            for entry in result.instances:
                current[entry["instance_id"]] = entry
                seen += 1
        unconfigured = sum(1 for e in current.values() if not is_configured(e))
        if first and (config.resync or self.previous is None):
            records, inventory = snapshot_with_carry(
                self.previous, current, failed_regions=failed, observed_at=observed_at
            )
        else:
            gone = self._gone_reasons(current, failed)
            records, inventory = diff(
                self.previous, current, failed_regions=failed, observed_at=observed_at, gone_reasons=gone
            )
        return CycleOutcome(records, inventory, failed, seen, unconfigured)

    def _gone_reasons(self, current: Inventory, failed: dict[str, PipesError]) -> dict[str, str]:
        """Look the vanished apps up (without filters) to say why they are removed."""
        missing: dict[str, list[str]] = {}
        for instance_id, old in (self.previous or {}).items():
            region = old.get("region")
            if instance_id in current or region in failed or not is_configured(old):
                continue
            missing.setdefault(region, []).append(instance_id)
        reasons: dict[str, str] = {}
        for region in [r for r in missing if r not in self.config.regions]:
            for instance_id in missing.pop(region):
                reasons[instance_id] = f"region {region} is no longer selected"
        selection = self.config.selection
        for region, ids in missing.items():
            found = self.reader.lookup_ids(region, ids)
            for instance_id in ids:
                reasons[instance_id] = gone_reason(
                    found.get(instance_id),
                    states=self.config.states,
                    vpcs=self.config.vpcs,
                    is_selected=lambda inst: selection.is_selected(tag_dict(inst)),
                )
        return reasons

    def emit(self, outcome: CycleOutcome) -> None:
        writer = self.runtime.writer
        stats = self.runtime.stats
        for rec in outcome.records:
            writer.write(orjson.dumps(rec))
            stats.add(rec["op"])
        writer.flush()

    def report(self, outcome: CycleOutcome, elapsed_secs: float) -> None:
        log = self.runtime.log
        for region, error in sorted(outcome.failed.items()):
            kept = sum(1 for e in outcome.inventory.values() if e.get("region") == region)
            log.warning(
                f"region {region} failed this cycle; its {kept} known instances are kept, none removed: "
                f"{error.message}",
                fix=error.fix or "",
            )
        ops: dict[str, int] = {}
        for rec in outcome.records:
            ops[rec["op"]] = ops.get(rec["op"], 0) + 1
        summary = {
            "cycle": self.cycle,
            "instances": outcome.instances,
            "unconfigured": outcome.unconfigured,
            **{op: ops.get(op, 0) for op in ("snapshot", "add", "update", "remove")},
            "new_unconfigured": ops.get("unconfigured", 0),
            "regions_failed": len(outcome.failed),
            "elapsed_secs": round(elapsed_secs, 3),
        }
        # One line per cycle (the seed's "some computers are left unconfigured" notification).
        if outcome.unconfigured:
            count = outcome.unconfigured
            are = "instance is" if count == 1 else "instances are"
            message = (
                f"cycle done: {count} {are} left unconfigured and not integrated: tag them "
                "checkpoint_ssh:<user>=<key>.pem with a known key, or set --default-user/--default-key"
            )
        else:
            message = "cycle done: 0 instances unconfigured"
        log.info(message, **summary)

    def run(self) -> int:
        runtime = self.runtime
        stats = runtime.stats
        first = True
        while True:
            started = time.monotonic()
            self.cycle += 1
            outcome = self.run_cycle(first=first)
            if len(outcome.failed) == len(self.config.regions) and (self.config.once or first):
                error = next(iter(outcome.failed.values()))
                if self.config.once or not error.retryable:  # the classifier says who must act
                    raise error
            all_failed = len(outcome.failed) == len(self.config.regions)
            self.emit(outcome)
            if not (all_failed and self.previous is None):  # nothing learnt: keep "never synced"
                self._persist(outcome.inventory)
                self.previous = outcome.inventory
            stats.add("cycles")
            stats.add("regions_failed", len(outcome.failed))
            stats.counters["instances_selected"] = outcome.instances
            stats.counters["instances_unconfigured"] = outcome.unconfigured
            self.report(outcome, time.monotonic() - started)
            first = first and all_failed
            stats.tick()
            if self.config.once or runtime.stop():
                return 0
            remaining = self.config.interval_secs - (time.monotonic() - started)
            if remaining > 0 and not runtime.stop.sleep(remaining):
                return 0
            if runtime.stop():
                return 0


def resolve_regions(reader: Ec2Reader, requested: Sequence[str], home_region: str) -> tuple[str, ...]:
    """`all` -> every enabled region (DescribeRegions); otherwise the list as given, deduplicated."""
    if any(r.lower() == "all" for r in requested):
        return tuple(r["RegionName"] for r in reader.list_regions(home_region))
    return tuple(dict.fromkeys(requested))
