"""Pure diff: previous inventory + this cycle's entries -> the records to emit and the new inventory.

Inventories map instance id -> entry (see `classify`). Rules:
- no previous inventory (first run, or `--resync`) -> `snapshot` for every configured instance
  and `unconfigured` for every unconfigured one;
- new configured instance -> `add`; configured again after being unconfigured -> `add`;
- a compared field changed -> `update` with `changed` naming the fields;
- configured instance gone (terminated, stopped, tag removed, outside the VPCs) -> `remove`;
- app that becomes unconfigured -> `remove`, then `unconfigured`;
- unconfigured instances are reported once: in the snapshot or in the cycle where they become
  unconfigured, not again while they stay so (and they vanish silently: they never were an app);
- instances of a region that FAILED this cycle are carried forward untouched: a failed listing
  is "unknown", never "gone" (Prometheus keeps old targets on error for the same reason).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .classify import COMPARED_FIELDS, is_configured

Entry = dict[str, Any]
Inventory = dict[str, Entry]

GONE_REASON = "no longer listed with a selected tag (terminated, state or VPC not selected, or tag removed)"


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [name for name in COMPARED_FIELDS if old.get(name) != new.get(name)]


def record(op: str, entry: Mapping[str, Any], observed_at: str, **extra: Any) -> dict[str, Any]:
    """An output record: `op` first, then the entry, then extras, then `observed_at`."""
    out: dict[str, Any] = {"op": op}
    out.update(entry)
    out.update(extra)
    out["observed_at"] = observed_at
    return out


def _sort_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    return (str(entry.get("region") or ""), str(entry.get("instance_id") or ""))


def diff(
    previous: Inventory | None,
    current: Inventory,
    *,
    failed_regions: Collection[str] = (),
    observed_at: str,
    gone_reasons: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], Inventory]:
    """Records to emit (sorted by region, instance id) and the inventory to persist.

    `gone_reasons` may explain why a previously known instance is missing (looked up by the
    caller); otherwise a generic reason is given on `remove`.
    """
    failed = set(failed_regions)
    inventory: Inventory = dict(current)
    records: list[dict[str, Any]] = []

    if previous is None:
        for entry in sorted(current.values(), key=_sort_key):
            records.append(record("snapshot" if is_configured(entry) else "unconfigured", entry, observed_at))
        return records, inventory

    # Carry forward what a failed region cannot tell us about.
    for instance_id, old in previous.items():
        if old.get("region") in failed and instance_id not in current:
            inventory[instance_id] = old

    gone_reasons = gone_reasons or {}
    keyed: list[tuple[tuple[str, str], list[dict[str, Any]]]] = []
    for instance_id in previous.keys() | current.keys():
        old = previous.get(instance_id)
        new = current.get(instance_id)
        out: list[dict[str, Any]] = []
        if new is None:
            assert old is not None
            if old.get("region") in failed:
                continue
            if is_configured(old):
                reason = gone_reasons.get(instance_id, GONE_REASON)
                out.append(record("remove", old, observed_at, reasons=[reason]))
        elif old is None or not is_configured(old):
            if is_configured(new):
                out.append(record("add", new, observed_at))
            elif old is None:
                out.append(record("unconfigured", new, observed_at))
        elif is_configured(new):
            changes = changed_fields(old, new)
            if changes:
                out.append(record("update", new, observed_at, changed=changes))
        else:
            removed = {k: v for k, v in old.items() if k != "reasons"}
            out.append(record("remove", removed, observed_at, reasons=["became unconfigured"]))
            out.append(record("unconfigured", new, observed_at))
        if out:
            keyed.append((_sort_key(new or old or {}), out))
    for _, out in sorted(keyed, key=lambda item: item[0]):
        records.extend(out)
    return records, inventory


def snapshot_with_carry(
    previous: Inventory | None,
    current: Inventory,
    *,
    failed_regions: Collection[str],
    observed_at: str,
) -> tuple[list[dict[str, Any]], Inventory]:
    """`--resync`: a full snapshot; instances of failed regions are re-emitted from the last
    inventory (the snapshot stays complete) rather than silently dropped."""
    merged: Inventory = dict(current)
    failed = set(failed_regions)
    for instance_id, old in (previous or {}).items():
        if old.get("region") in failed and instance_id not in merged:
            merged[instance_id] = old
    return diff(None, merged, observed_at=observed_at)
