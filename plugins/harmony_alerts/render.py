"""An alert's last steps, shared by the record handler (run.py) and the helper processes
(helper.py): the output format, the original event spliced in, and for helpers the whole
event → `(dedupe digest, JSON line)` step. Imports only what rendering needs, so a helper
process starts small (pool.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from xxhash import xxh3_64_intdigest

from .chunks import Render
from .formats import to_ecs, to_ocsf
from .normalize import DedupeKey, KeepPolicy, build_alert

Finish = Callable[[dict[str, Any], dict[str, Any], bytes, int], dict[str, Any]]


def make_finisher(output_format: str) -> Finish:
    """`finish(alert, event, raw, now_ms)`: the alert in the output format, with the original
    event spliced in byte-exact (an `orjson.Fragment`, never serialized a second time)."""
    fragment = orjson.Fragment
    if output_format == "native":

        def finish(alert: dict[str, Any], event: dict[str, Any], raw: bytes, now_ms: int) -> dict[str, Any]:
            alert["checkpoint_harmony"] = fragment(raw.strip())
            return alert

    elif output_format == "ocsf":

        def finish(alert: dict[str, Any], event: dict[str, Any], raw: bytes, now_ms: int) -> dict[str, Any]:
            alert = to_ocsf(alert, event, now_ms)
            alert["unmapped"] = {"checkpoint_harmony": fragment(raw.strip())}
            return alert

    elif output_format == "ecs":

        def finish(alert: dict[str, Any], event: dict[str, Any], raw: bytes, now_ms: int) -> dict[str, Any]:
            alert = to_ecs(alert, event, now_ms)
            alert["checkpoint_harmony"] = fragment(raw.strip())
            return alert

    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return finish


def make_render(spec: dict[str, Any]) -> Render:
    """`render(event, raw, now_ms)`: `(digest, alert JSON line)` for an alert, None for an event
    that is not one. `digest` is the dedupe key's (`dedupe.key_digest`), 0 when the alert is
    never deduplicated; dedupe itself is the caller's, in input order. The bytes equal what the
    record handler emits for the same event. `spec` is `render_spec`'s (JSON-able: it is how a
    helper process gets its configuration)."""
    policy = KeepPolicy(spec["types"], spec["min_severity"], spec["keep_all"])
    tenant = spec["tenant"]
    dedupe_key = DedupeKey.parse(spec["dedupe_key"])
    dedupe = spec["dedupe"]
    finish = make_finisher(spec["output_format"])
    dumps = orjson.dumps
    xxh3 = xxh3_64_intdigest

    def render(event: dict[str, Any], raw: bytes, now_ms: int) -> tuple[int, bytes] | None:
        alert = build_alert(event, tenant, policy, dedupe_key)
        if alert is None:
            return None
        key = alert["dedupe_key"]
        digest = (xxh3(key.encode()) or 1) if dedupe and key is not None else 0
        return digest, dumps(finish(alert, event, raw, now_ms))

    return render
