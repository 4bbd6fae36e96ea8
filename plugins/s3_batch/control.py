"""Pause, resume and status: operations on a spool's files that work while the sink runs.

The running sink holds the spool's lock; these never take it. Pause flags are one small file
(`control.json`, written atomically) that the delivery workers re-read when it changes.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import orjson

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.state import atomic_write_bytes

from .manifest import DAMAGED_SUFFIX, QUARANTINE_DIR, manifest_problem, quarantined_for

FORMAT_VERSION = 1
SPOOL_SUBDIR = "s3-batch-spool"
CONTROL_FILE = "control.json"
DESTINATIONS_FILE = "destinations.json"
ALL_DESTINATIONS = "*"


def read_control(spool_dir: Path) -> dict[str, Any]:
    """`{"paused": [names...]}`; "*" means every destination."""
    try:
        doc = orjson.loads((spool_dir / CONTROL_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {"paused": []}
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("paused"), list):
        return {"paused": []}
    return data


def write_control(spool_dir: Path, data: dict[str, Any]) -> None:
    payload = orjson.dumps({"format_version": FORMAT_VERSION, "data": data})
    atomic_write_bytes(spool_dir / CONTROL_FILE, payload)


def is_paused(control: dict[str, Any], dest: str) -> bool:
    paused = control.get("paused", [])
    return dest in paused or ALL_DESTINATIONS in paused


def scan_backlog(spool_dir: Path, destinations: Iterable[str], now_ms: int) -> list[dict[str, Any]]:
    """Backlog per destination from the files alone (used by `s3-batch status`, no lock).

    Objects set aside are reported too: `quarantined_objects` (this destination can never take
    them, e.g. a refused key) and `damaged_objects` (an unusable manifest; the next start moves
    such an object into quarantine/ if it is still under objects/).
    """
    objects_dir = spool_dir / "objects"
    if not spool_dir.is_dir():
        raise ConfigError(f"spool directory {spool_dir} does not exist", "check --spool-dir / --state-dir")
    manifests: list[dict[str, Any]] = []
    damaged = 0
    seen: set[str] = set()
    for path in sorted(objects_dir.glob("*.json")) if objects_dir.is_dir() else []:
        if not (path.stem.isascii() and path.stem.isdigit()):
            continue
        seen.add(path.stem)
        try:
            manifest = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            continue  # delivered and deleted meanwhile
        except (OSError, orjson.JSONDecodeError):
            manifest = None
        if manifest is None or manifest_problem(manifest) is not None:
            damaged += 1
            continue
        manifests.append(manifest)
    for path in objects_dir.glob("*.body") if objects_dir.is_dir() else []:
        if path.stem not in seen:  # a body without its manifest
            damaged += 1
    quarantine = spool_dir / QUARANTINE_DIR
    aside = [p.name for p in quarantine.glob("*.json")] if quarantine.is_dir() else []
    damaged += sum(1 for name in aside if name.endswith(DAMAGED_SUFFIX))
    open_bytes = 0
    open_batches = 0
    for path in (spool_dir / "open").glob("*.body") if (spool_dir / "open").is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            open_bytes += path.stat().st_size
            open_batches += 1
    control = read_control(spool_dir)
    rows = []
    for dest in destinations:
        pending = [m for m in manifests if not (objects_dir / f"{m['seq']}.done.{dest}").exists()]
        oldest = min((m["sealed_ms"] for m in pending), default=None)
        rows.append(
            {
                "destination": dest,
                "paused": is_paused(control, dest),
                "backlog_objects": len(pending),
                "backlog_bytes": sum(m["bytes"] for m in pending),
                "backlog_records": sum(m["records"] for m in pending),
                "oldest_age_secs": None if oldest is None else round(max(0, now_ms - oldest) / 1000, 3),
                "open_batches": open_batches,
                "open_bytes": open_bytes,
                "quarantined_objects": sum(1 for name in aside if quarantined_for(name, dest)),
                "damaged_objects": damaged,
            }
        )
    return rows


def resolve_spool_dir(spool_dir: str | None, state_dir: str | None) -> tuple[Path, bool]:
    """The spool: --spool-dir, else <--state-dir>/s3-batch-spool, else a temporary directory
    (True: removed at exit when empty)."""
    if spool_dir:
        return Path(spool_dir), False
    if state_dir:
        return Path(state_dir) / SPOOL_SUBDIR, False
    return Path(tempfile.mkdtemp(prefix="s3-batch-spool-")), True


def spool_path(spool_dir: str | None, state_dir: str | None) -> Path:
    if not spool_dir and not state_dir:
        raise ConfigError("no spool given", "pass --spool-dir (or --state-dir) of the running s3-batch")
    path, _ = resolve_spool_dir(spool_dir, state_dir)
    if not path.is_dir():
        raise ConfigError(f"spool directory {path} does not exist", "check --spool-dir / --state-dir")
    return path


def known_destinations(path: Path) -> list[str]:
    try:
        doc = orjson.loads((path / "destinations.json").read_bytes())
        return list(doc["data"]["destinations"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return []


def set_paused(spool_dir: str | None, state_dir: str | None, names: tuple[str, ...], paused: bool) -> None:
    path = spool_path(spool_dir, state_dir)
    known = known_destinations(path)
    for name in names:
        if known and name not in known:
            raise ConfigError(f"unknown destination {name!r}", f"known here: {', '.join(known)}")
    current = set(read_control(path).get("paused", []))
    if not names:
        current = {ALL_DESTINATIONS} if paused else set()
    elif paused:
        current |= set(names)
    else:
        if ALL_DESTINATIONS in current:
            current = (current - {ALL_DESTINATIONS}) | set(known)
        current -= set(names)
    write_control(path, {"paused": sorted(current)})
    what = ", ".join(names) if names else "all destinations"
    click.echo(f"{'paused' if paused else 'resumed'} {what} in {path}", err=True)
