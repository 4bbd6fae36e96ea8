"""`aws-discovery report`: the integration at a glance (the seed's "View report"), from the state.

Pure: the (migrated) state document and the time in, a report dict out (which is also the
`--json` output, `schemas/discovery-report.schema.json`), then text lines for a person. No I/O,
no clock, no AWS: the command reads `inventory.json` and hands it over.

Counts follow the inventory the sync keeps: an instance of a failed region stays counted as last
seen (its listing is unknown, not empty) and its region is listed under the failed regions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .classify import is_configured


@dataclass(frozen=True)
class ReasonKind:
    """A kind of `unconfigured` reason, how to recognise it in the reason text, and the fix."""

    kind: str
    pattern: re.Pattern[str]
    title: str
    fix: str


# Recognises the reason texts `classify` writes (tests build each through classify itself).
REASON_KINDS = (
    ReasonKind(
        "no_user",
        re.compile(r"^no checkpoint_ssh:<user> tag and no --default-user/--default-key$"),
        "no checkpoint_ssh tag and no default user",
        "tag `checkpoint_ssh:<user>` = `<key>.pem`, or set --default-user/--default-key",
    ),
    ReasonKind(
        "unknown_key",
        re.compile(r"^tag '.*' names key '.*', which is not in --known-keys$"),
        "key not in --known-keys",
        "add the key to --known-keys (or tag `checkpoint_ssh:<user>` = `<key>.pem` with a known key)",
    ),
    ReasonKind(
        "invalid_user",
        re.compile(r"^tag '.*' does not name a valid Linux user$"),
        "tag names no valid Linux user",
        "tag `checkpoint_ssh:<user>` = `<key>.pem` with a valid Linux user name",
    ),
    ReasonKind(
        "no_key",
        re.compile(r"^tag '.*' has no key name"),
        "tag names no key",
        "tag `checkpoint_ssh:<user>` = `<key>.pem` (the value names the key)",
    ),
)
OTHER_REASON = ReasonKind("other", re.compile(""), "other reason", "see the reason")
_KIND_ORDER = {k.kind: i for i, k in enumerate((*REASON_KINDS, OTHER_REASON))}
APP_AUTH = {"ssh": "managed", "rdp": "direct"}


def reason_kind(reason: str) -> ReasonKind:
    for kind in REASON_KINDS:
        if kind.pattern.search(reason):
            return kind
    return OTHER_REASON


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 time from the state (`...Z`), or None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rfc3339(secs: float) -> str:
    """`2026-11-25T05:46:40.296Z`, the shape of the times the sync writes."""
    moment = datetime.fromtimestamp(secs, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def age_secs(text: Any, now_secs: float) -> int | None:
    moment = parse_time(text)
    return None if moment is None else max(0, int(now_secs - moment.timestamp()))


def age_text(secs: int | None) -> str:
    """`42 s ago`, `7 min ago`, `5 h ago`, `3 days ago` (floored: never younger than it is)."""
    if secs is None:
        return "age unknown"
    if secs < 90:
        return f"{secs} s ago"
    if secs < 90 * 60:
        return f"{secs // 60} min ago"
    if secs < 48 * 3600:
        return f"{secs // 3600} h ago"
    return f"{secs // 86400} days ago"


def _entries(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    inventory = state.get("inventory") or {}
    found = [e for e in inventory.values() if isinstance(e, dict)]
    return sorted(found, key=lambda e: (str(e.get("region") or ""), str(e.get("instance_id") or "")))


def build_report(state: Mapping[str, Any], *, now_secs: float, state_dir: str | None = None) -> dict[str, Any]:
    """The report of a format-2 state document (see `inventory_state`) at `now_secs`."""
    entries = _entries(state)
    regions = sorted({*(str(r) for r in state.get("regions") or ()), *(str(e.get("region")) for e in entries)})
    by_region = dict.fromkeys(regions, 0)
    vpcs: dict[tuple[str, str], dict[str, Any]] = {}
    apps = {"ssh": 0, "rdp": 0}
    ssh_users = 0
    unconfigured: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    tags: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        region = str(entry.get("region"))
        configured = is_configured(entry)
        vpc = vpcs.setdefault(
            (region, str(entry.get("vpc_id") or "")),
            {"region": region, "vpc_id": entry.get("vpc_id"), "synced": 0, "unconfigured": 0},
        )
        vpc["synced" if configured else "unconfigured"] += 1
        for key, value in sorted((entry.get("tags") or {}).items()):
            tag = tags.setdefault(
                (key, value), {"tag": f"{key}={value}", "key": key, "value": value, "instances": 0, "synced": 0}
            )
            tag["instances"] += 1
            tag["synced"] += int(configured)
        if configured:
            by_region[region] += 1
            app = entry["app"]
            apps[app["type"]] = apps.get(app["type"], 0) + 1
            ssh_users += len(app.get("users") or ()) if app["type"] == "ssh" else 0
            continue
        reasons = [str(r) for r in entry.get("reasons") or ()] or ["no reason recorded"]
        item = {
            "instance_id": entry.get("instance_id"),
            "region": region,
            "vpc_id": entry.get("vpc_id"),
            "name": entry.get("name"),
            "reasons": reasons,
        }
        unconfigured.append(item)
        for reason in reasons:
            kind = reason_kind(reason)
            group = groups.setdefault(
                kind.kind, {"reason": kind.kind, "title": kind.title, "fix": kind.fix, "instances": []}
            )
            group["instances"].append({k: item[k] for k in ("instance_id", "region", "name")} | {"reason": reason})
    failed_state = state.get("failed_regions") or {}
    failed_regions = [
        {
            "region": region,
            "since": info.get("since"),
            "since_age_secs": age_secs(info.get("since"), now_secs),
            "last_failed_at": info.get("last_failed_at"),
            "error": info.get("error"),
        }
        for region, info in sorted(failed_state.items())
    ]
    last_sync_at = state.get("last_sync_at") or state.get("written_at")
    return {
        "site": state.get("site"),
        "state_dir": state_dir,
        "generated_at": rfc3339(now_secs),
        "last_sync_at": last_sync_at,
        "last_sync_age_secs": age_secs(last_sync_at, now_secs),
        "last_cycle_at": state.get("last_cycle_at") or state.get("written_at"),
        "cycle": int(state.get("cycle") or 0),
        "regions": regions,
        "synced": sum(by_region.values()),
        "by_region": by_region,
        "by_vpc": [vpcs[k] for k in sorted(vpcs)],
        "apps": apps,
        "ssh_users": ssh_users,
        "unconfigured": unconfigured,
        "unconfigured_by_reason": sorted(groups.values(), key=lambda g: _KIND_ORDER[g["reason"]]),
        "failed_regions": failed_regions,
        "tags": [tags[k] for k in sorted(tags)],
    }


def table(rows: Sequence[Sequence[Any]], *, columns: bool, indent: int = 2) -> list[str]:
    """Rows as aligned columns (terminal) or tab-separated fields (a pipe: `cut -f`, awk)."""
    cells = [["-" if c is None else str(c) for c in row] for row in rows]
    if not columns:
        return ["\t".join(row) for row in cells]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(max(map(len, cells), default=0))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
        lines.append((" " * indent + "  ".join(padded)).rstrip())
    return lines


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _section(title: str, body: Iterable[str]) -> list[str]:
    return ["", title, *body]


def render(report: Mapping[str, Any], *, columns: bool) -> list[str]:
    """The report for a person: aligned on a terminal (`columns`), tab-separated in a pipe."""
    apps = report["apps"]
    unconfigured = report["unconfigured"]
    failed = {f["region"]: f for f in report["failed_regions"]}
    sync_age = age_text(report["last_sync_age_secs"])
    lines = [f"aws-discovery report: site {report['site'] or '(none: no --site)'}"]
    lines += table(
        [
            ("state dir", report["state_dir"]),
            ("last sync", f"{report['last_sync_at'] or 'never'} ({sync_age}), cycle {report['cycle']}"),
            ("regions", ", ".join(report["regions"]) or None),
            (
                "synced apps",
                f"{report['synced']} (ssh managed {apps.get('ssh', 0)} with "
                f"{_plural(report['ssh_users'], 'user')}, rdp direct {apps.get('rdp', 0)})",
            ),
            ("unconfigured", len(unconfigured)),
            ("failed regions", ", ".join(failed) or "none"),
        ],
        columns=columns,
        indent=0,
    )

    unconfigured_by_region: dict[str, int] = {}
    for item in unconfigured:
        unconfigured_by_region[item["region"]] = unconfigured_by_region.get(item["region"], 0) + 1
    region_rows: list[tuple[Any, ...]] = [("REGION", "SYNCED", "UNCONFIGURED", "STATUS")]
    for region, synced in report["by_region"].items():
        status = "failed in the last cycle (counts as last seen)" if region in failed else "ok"
        region_rows.append((region, synced, unconfigured_by_region.get(region, 0), status))
    region_rows.append(("total", report["synced"], len(unconfigured)))
    lines += _section("By region", table(region_rows, columns=columns))

    vpc_rows: list[tuple[Any, ...]] = [("REGION", "VPC", "SYNCED", "UNCONFIGURED")]
    vpc_rows += [(v["region"], v["vpc_id"], v["synced"], v["unconfigured"]) for v in report["by_vpc"]]
    if len(vpc_rows) > 1:
        lines += _section("By VPC", table(vpc_rows, columns=columns))
    else:
        lines += _section("By VPC: none", [])

    app_rows: list[tuple[Any, ...]] = [("TYPE", "AUTH", "APPS", "USERS")]
    for kind in sorted(apps, key=lambda k: (list(APP_AUTH).index(k) if k in APP_AUTH else len(APP_AUTH), k)):
        users = report["ssh_users"] if kind == "ssh" else None
        app_rows.append((kind, APP_AUTH.get(kind, "-"), apps[kind], users))
    lines += _section("Apps by type", table(app_rows, columns=columns))

    if not unconfigured:
        lines += _section("Unconfigured instances: none", [])
    else:
        body: list[str] = []
        pad = "  " if columns else ""
        for group in report["unconfigured_by_reason"]:
            body.append(f"{pad}{group['title']}: {_plural(len(group['instances']), 'instance')}")
            body.append(f"{pad}{pad}fix: {group['fix']}")
            rows: list[tuple[Any, ...]] = [("INSTANCE", "REGION", "NAME", "REASON")]
            rows += [(i["instance_id"], i["region"], i["name"], i["reason"]) for i in group["instances"]]
            body += table(rows, columns=columns, indent=4)
        title = f"Unconfigured instances: {len(unconfigured)} (not integrated until fixed), by reason"
        lines += _section(title, body)

    if not failed:
        lines += _section("Failed regions (last cycle): none", [])
    else:
        rows = [("REGION", "FAILING SINCE", "LAST FAILED", "ERROR")]
        for f in failed.values():
            since = f"{f['since']} ({age_text(f['since_age_secs'])})"
            rows.append((f["region"], since, f["last_failed_at"], f["error"]))
        lines += _section("Failed regions (last cycle)", table(rows, columns=columns))

    if not report["tags"]:
        lines += _section("Tags in use: none", [])
    else:
        rows = [("TAG", "INSTANCES", "SYNCED")]
        rows += [(t["tag"], t["instances"], t["synced"]) for t in report["tags"]]
        lines += _section("Tags in use", table(rows, columns=columns))
    return lines
