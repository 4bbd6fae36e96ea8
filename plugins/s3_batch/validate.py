"""Record validation for `s3-batch --validate harness-audit` / `--schema PATH`.

A validator is a plain function `check(record) -> None` that raises
`harmony_pipes._core.processor.SkipRecord(reason)` for a record that does not fit, so the stream
loop counts it and writes it to the dead-letter file with the reason. Schemas are compiled by
fastjsonschema once per process, when a validator is first built (never at import), and the
reason is short and exact: `harness-audit: missing auditEventAuthor.principal.identifier`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.processor import SkipRecord
from harmony_pipes._core.schemas import schema_path as find_schema

# --validate KIND -> schema name in schemas/
KINDS = {"harness-audit": "harness-audit-event"}
REASON_MAX_CHARS = 200

Validator = Callable[[dict[str, Any]], None]


def build_validator(kind: str | None = None, schema_path: str | None = None) -> Validator:
    """The validator for a known `kind` or a user schema file (exactly one of them).

    Raises ConfigError (exit 2) for an unknown kind, an unreadable schema or one that does not
    compile.
    """
    if kind and schema_path:
        raise ConfigError("--validate and --schema were both given", "use one of them")
    if kind:
        if kind not in KINDS:
            raise ConfigError(f"unknown --validate kind {kind!r}", f"use one of: {', '.join(sorted(KINDS))}")
        path = str(find_schema(KINDS[kind]))
        label = kind
    elif schema_path:
        path = str(Path(schema_path).expanduser().resolve())
        label = Path(schema_path).name
    else:
        raise ConfigError("no schema to validate against", "give --validate harness-audit or --schema PATH")
    compiled = _compile(path)

    def check(record: dict[str, Any]) -> None:
        try:
            compiled(record)
        except Exception as exc:  # fastjsonschema.JsonSchemaValueException, or a bad regex at runtime
            raise SkipRecord(f"{label}: {describe_failure(exc)}") from None

    return check


@lru_cache(maxsize=16)
def _compile(path: str) -> Callable[[Any], Any]:
    import fastjsonschema

    try:
        with open(path, "rb") as handle:
            schema = json.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read schema {path}: {exc.strerror}", "check --schema PATH") from None
    except ValueError as exc:
        raise ConfigError(f"schema {path} is not valid JSON: {exc}", "fix the file") from None
    if not isinstance(schema, dict | bool):
        raise ConfigError(f"schema {path} is not a JSON Schema object", "fix the file")
    try:
        return fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ConfigError(f"schema {path} does not compile: {exc}", "fix the schema") from None


def _dotted(path: list[Any] | None) -> str:
    """`['data', 'a', 0, 'b']` -> `a[0].b`; the record itself is `record`."""
    parts = [p for p in (path or [])[1:]]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "record"


def describe_failure(exc: Exception) -> str:
    """A short, exact reason from a fastjsonschema error (the first failing rule)."""
    rule = getattr(exc, "rule", None)
    path = getattr(exc, "path", None)
    where = _dotted(path)
    if rule == "required":
        value = getattr(exc, "value", None)
        required = getattr(exc, "rule_definition", None) or []
        missing = [name for name in required if not isinstance(value, dict) or name not in value]
        prefix = "" if where == "record" else where + "."
        if missing:
            return "missing " + ", ".join(prefix + str(name) for name in missing)
    if rule == "type":
        expected = getattr(exc, "rule_definition", None)
        if isinstance(expected, list):
            expected = " or ".join(str(e) for e in expected)
        return f"{where} must be {expected}, got {_json_type(getattr(exc, 'value', None))}"
    if rule in ("anyOf", "oneOf") and where != "record":
        return f"{where} matches none of its allowed forms, got {_short(getattr(exc, 'value', None))}"
    if rule == "minLength" and getattr(exc, "rule_definition", None) == 1:
        return f"{where} must not be empty"
    message = str(getattr(exc, "message", exc))
    message = message.replace("data.", "", 1) if message.startswith("data.") else message
    message = message.replace("data ", "record ", 1) if message.startswith("data ") else message
    message = " ".join(message.split())
    return message if len(message) <= REASON_MAX_CHARS else message[: REASON_MAX_CHARS - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
