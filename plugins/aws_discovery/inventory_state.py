"""The persisted inventory document (`<state-dir>/inventory.json`): its format and migration.

Pure: no I/O. The sync builds the document after each cycle, the `report` subcommand reads it
without calling AWS, so the document keeps what a person asks about besides the inventory itself:
when the last sync read anything, which regions the cycle asked for, and which regions are
failing since when (a failed listing is carried forward in the inventory, so without this the
state could not tell a current region from a stale one).

Format 2 (this version) `data`:
    site, cycle, written_at, inventory           as in format 1
    regions         the regions the last cycle read (in the order given)
    last_cycle_at   when the last cycle ended, whatever its outcome
    last_sync_at    when the last cycle that read at least one region ended
    failed_regions  {region: {"since", "last_failed_at", "error"}} for regions that failed in the
                    last cycle; `since` is the first failure of the current run of failures
Format 1 had only site, cycle, written_at and inventory; `migrate` fills the rest in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harmony_pipes._core.errors import ConfigError

STATE_FILE = "inventory.json"
STATE_FORMAT_VERSION = 2


def migrate(version: Any, data: Any, *, path: str = STATE_FILE) -> dict[str, Any]:
    """The format-2 `data` for a state document of `version` (1 or 2).

    Format 1 knew only when it was written: that time becomes the last sync (format 1 was
    written after every cycle that learnt something), failures are unknown (none recorded) and
    the regions are those holding instances. The next cycle writes format 2.
    """
    if version not in (1, STATE_FORMAT_VERSION):
        raise ConfigError(
            f"state file {path} has format version {version}, this version reads 1 to {STATE_FORMAT_VERSION}",
            "use the matching harmony-pipes version or move the file away",
        )
    if not isinstance(data, dict) or not isinstance(data.get("inventory"), dict):
        raise ConfigError(
            f"state file {path} is not an aws-discovery inventory",
            "point --state-dir at aws-discovery's own directory, or move the file away",
        )
    if version == STATE_FORMAT_VERSION:
        return data
    inventory: dict[str, Any] = data["inventory"]
    written_at = data.get("written_at")
    regions = sorted({str(e.get("region")) for e in inventory.values() if isinstance(e, dict) and e.get("region")})
    return {
        **data,
        "regions": regions,
        "last_cycle_at": written_at,
        "last_sync_at": written_at,
        "failed_regions": {},
    }


def next_health(
    previous: Mapping[str, Any] | None,
    *,
    regions: Sequence[str],
    failed: Mapping[str, str],
    at: str,
) -> dict[str, Any]:
    """The health fields after a cycle at `at` that read `regions`, of which `failed` (region ->
    one-line error) failed. A region keeps its `since` while it keeps failing; a region that
    answers, or is no longer selected, leaves `failed_regions`."""
    before = (previous or {}).get("failed_regions") or {}
    failed_regions: dict[str, dict[str, str]] = {}
    for region in regions:
        if region in failed:
            since = (before.get(region) or {}).get("since") or at
            failed_regions[region] = {"since": since, "last_failed_at": at, "error": failed[region]}
    any_read = any(region not in failed for region in regions)
    return {
        "regions": list(regions),
        "last_cycle_at": at,
        "last_sync_at": at if any_read else (previous or {}).get("last_sync_at"),
        "failed_regions": failed_regions,
    }


def document(
    *, site: str | None, cycle: int, written_at: str, inventory: Mapping[str, Any], health: Mapping[str, Any]
) -> dict[str, Any]:
    """The format-2 `data` to persist."""
    return {"site": site, "cycle": cycle, "written_at": written_at, "inventory": inventory, **health}
