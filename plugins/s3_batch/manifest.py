"""What a sealed object's manifest must hold to be delivered (pure; shared by spool and status).

A manifest is written atomically, so a torn one cannot happen; a damaged one can (a disk error,
a hand edit, a bug of another version). Such an object is never guessed at: the sink sets it
aside in the spool's `quarantine/` folder and `s3-batch status` reports it.
"""

from __future__ import annotations

from typing import Any

QUARANTINE_DIR = "quarantine"
DAMAGED_SUFFIX = ".damaged.json"  # quarantine/<seq>.damaged.json: why a manifest was unusable


def quarantine_name(seq: str, dest: str) -> str:
    """quarantine/<seq>.dest-<dest>.json: why <dest> can never take object <seq>."""
    return f"{seq}.dest-{dest}.json"


def quarantined_for(name: str, dest: str) -> bool:
    return name.split(".", 1)[-1] == f"dest-{dest}.json"


_INT_FIELDS = ("records", "bytes", "raw_bytes", "first_ms", "last_ms", "sealed_ms")
_STR_FIELDS = ("seq", "format", "compression", "content_type", "sha256", "template", "ext")


def manifest_problem(manifest: Any) -> str | None:
    """Why `manifest` cannot drive a delivery (None when it can)."""
    if not isinstance(manifest, dict):
        return "the manifest is not a JSON object"
    for name in _INT_FIELDS:
        value = manifest.get(name)
        if type(value) is not int:
            return f"the manifest's {name!r} is not an integer"
    for name in _STR_FIELDS:
        if not isinstance(manifest.get(name), str):
            return f"the manifest's {name!r} is not a string"
    keys = manifest.get("keys")
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        return "the manifest's 'keys' are not a map of destination to key"
    if manifest.get("content_encoding") is not None and not isinstance(manifest["content_encoding"], str):
        return "the manifest's 'content_encoding' is not a string"
    values = manifest.get("field_values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return "the manifest's 'field_values' are not a list of strings"
    return None
