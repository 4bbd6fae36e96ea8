"""The aws-discovery processor (a source): read every region, classify, diff against the last
inventory, emit — and persist the new inventory only once the records are durable downstream.

One cycle = concurrent paginated DescribeInstances over the selected regions, then the pure
`classify` and `diff`. A cycle's end is the source's safe point: its position is the new state
document (inventory, sync health), saved by `committed` after stdout was flushed or, in
`harmony-pipes chain`, after the sink committed (a crash in between re-emits, never loses, a
change). The inventory lives in `<state-dir>/inventory.json` (atomic, versioned), so a restart
continues with diffs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from harmony_pipes._core.errors import ConfigError, PipesError
from harmony_pipes._core.metrics import Gauge, Health
from harmony_pipes._core.options import Runtime
from harmony_pipes._core.processor import SOURCE, CommitToken, Position, Processor, Resume
from harmony_pipes._core.state import StateDir

from .classify import classify, is_configured, tag_dict
from .config import COMMAND, SyncConfig
from .diff import Inventory, diff, snapshot_with_carry
from .ec2 import Ec2Reader, build_filters, gone_reason
from .inventory_state import STATE_FILE, STATE_FORMAT_VERSION, document, migrate, next_health

NAP_SECS = 0.2  # the wait between cycles is cut into naps, so the runner's timers and signals run


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
    observed_at: str = ""


class DiscoverySource(Processor):
    """Holds the reader, config and last inventory across cycles; one `poll` is one cycle (or
    one nap of the wait between cycles)."""

    role = SOURCE
    command = COMMAND

    def __init__(
        self,
        runtime: Runtime,
        reader: Ec2Reader,
        config: SyncConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(runtime)
        self.reader = reader
        self.config = config
        self.state: StateDir | None = None
        self.clock = clock
        self.filters = build_filters(
            states=config.states,
            vpcs=config.vpcs,
            tags=[(t.key, t.value) for t in config.selection.tags],
        )
        self.previous: Inventory | None = None
        self.health: dict[str, Any] | None = None  # last sync time, failing regions (for `report`)
        self.cycle = 0
        self.position_seq = 0  # grows with every state document made; orders ours and a sink's copy
        self._position: bytes | None = None  # the state document at the last safe point
        self._saved_seq = 0
        self._safe = True
        self._stop = False
        self._cycles: Iterator[None] | None = None
        self.failed_regions: list[str] = []
        runtime.health.success_on_progress = False  # a cycle that ends well is the success, not a tick
        runtime.gauges.append(
            Gauge("discovery_failed_regions", "Regions whose read failed last cycle.", lambda: len(self.failed_regions))
        )
        runtime.gauges.append(
            Gauge(
                "discovery_region_failed",
                "1 when this region's read failed in the last cycle, else 0.",
                lambda: [((r,), 1.0 if r in self.failed_regions else 0.0) for r in self.config.regions],
                labels=("region",),
            )
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self, resume: Resume | None = None) -> None:
        if self.config.state_dir:
            self.state = StateDir(self.config.state_dir, owner=COMMAND)
        self._load(resume)
        self._cycles = self._run()

    def _load(self, resume: Resume | None) -> None:
        if self.state is None:
            self.runtime.log.info("no --state-dir: the inventory is in memory only (a restart re-snapshots)")
            return
        found = self.state.read_versioned(STATE_FILE)
        data = None if found is None else migrate(*found, path=str(self.state.file(STATE_FILE)))
        ours = str(self.state.path.resolve())
        if resume is not None and isinstance(resume.position, dict) and resume.position.get("state_dir") == ours:
            # the sink's last commit names where this stage stood; ours may lag it (a crash
            # between the sink's commit and our save) or, run alone since, lead it (a position
            # of another --state-dir is a chain started over for this stage: ignored)
            theirs = resume.position
            if data is None or int(theirs.get("position_seq") or 0) > int(data.get("position_seq") or 0):
                data = migrate(STATE_FORMAT_VERSION, theirs, path=f"{self.stage_key} in the sink's last commit")
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
        self.health = data
        self.cycle = int(data.get("cycle") or 0)
        self.position_seq = self._saved_seq = int(data.get("position_seq") or 0)

    def _make_position(self, inventory: Inventory) -> None:
        """The state document as of everything emitted so far: saved once it is durable."""
        if self.state is None:
            return
        written_at = iso_now(self.clock)
        health = self.health or next_health(None, regions=self.config.regions, failed={}, at=written_at)
        data = document(
            site=self.config.selection.site, cycle=self.cycle, written_at=written_at, inventory=inventory, health=health
        )
        self.position_seq += 1
        data["position_seq"] = self.position_seq
        data["state_dir"] = str(self.state.path.resolve())
        self._position = orjson.dumps(data)
        self.progress += 1

    def checkpoint(self, token: CommitToken) -> Position | None:
        return None if self._position is None else orjson.Fragment(self._position)

    def committed(self, position: Position | None, token: CommitToken) -> None:
        if self.state is None or position is None or self.position_seq == self._saved_seq:
            return
        self.state.write_json(STATE_FILE, position, STATE_FORMAT_VERSION)
        self._saved_seq = self.position_seq

    @property
    def at_safe_point(self) -> bool:
        return self._safe

    def request_stop(self) -> None:
        self._stop = True

    def poll(self) -> bool:
        assert self._cycles is not None
        try:
            next(self._cycles)
        except StopIteration:
            return False
        return True

    def close(self) -> int:
        if self.state is not None:
            self.state.close()
        return 0

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
        return CycleOutcome(records, inventory, failed, seen, unconfigured, observed_at)

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

    def _emit(self, outcome: CycleOutcome) -> None:
        emit = self.emit
        stats = self.runtime.stats
        for rec in outcome.records:
            emit(rec, orjson.dumps(rec))
            stats.add(rec["op"])

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

    def _run(self) -> Iterator[None]:
        """The cycles: each ends at a safe point (records emitted, position made), then naps."""
        stats = self.runtime.stats
        health = self.runtime.health
        if not self.config.once:
            health.interval_secs = self.config.interval_secs
        first = True
        while True:
            started = time.monotonic()
            self.cycle += 1
            self._safe = False
            outcome = self.run_cycle(first=first)
            self.health = next_health(
                self.health,
                regions=self.config.regions,
                failed={region: error.one_line().removeprefix("Error: ") for region, error in outcome.failed.items()},
                at=outcome.observed_at,
            )
            self.failed_regions = sorted(outcome.failed)
            report_health(health, outcome)
            all_failed = len(outcome.failed) == len(self.config.regions)
            if all_failed and (self.config.once or first):
                error = next(iter(outcome.failed.values()))
                # with /healthz (--metrics-addr) a refused first cycle shows there and is retried
                fatal = not error.retryable and not health.keep_running  # the classifier says who must act
                if self.config.once or fatal:
                    if self.previous is not None and not self.config.resync:  # only the failures change
                        self._make_position(outcome.inventory)
                    self._safe = True
                    raise error
            self._emit(outcome)
            if not (all_failed and self.previous is None):  # nothing learnt: keep "never synced"
                self._make_position(outcome.inventory)
                self.previous = outcome.inventory
            self._safe = True
            stats.add("cycles")
            stats.add("regions_failed", len(outcome.failed))
            stats.add("instances_seen", outcome.instances)
            stats.counters["instances_selected"] = outcome.instances
            stats.counters["instances_unconfigured"] = outcome.unconfigured
            self.report(outcome, time.monotonic() - started)
            first = first and all_failed
            yield
            if self.config.once or self._stop:
                return
            deadline = started + self.config.interval_secs
            while (remaining := deadline - time.monotonic()) > 0:
                if self._stop:
                    return
                time.sleep(min(NAP_SECS, remaining))
                yield
            if self._stop:
                return


def report_health(health: Health, outcome: CycleOutcome) -> None:
    """A cycle with a failed region is a failed cycle: that region's inventory is not current."""
    if not outcome.failed:
        health.cycle_ok()
        return
    for error in outcome.failed.values():
        health.count_error(error)
    region, error = sorted(outcome.failed.items())[0]
    names = ", ".join(sorted(outcome.failed))
    health.cycle_failed(error, f"regions failed: {names} ({region}: {error.one_line()})", count=False)
