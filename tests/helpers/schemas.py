"""Validate real output against the JSON Schemas in schemas/ (draft 2020-12)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


@cache
def validator(name: str):
    from jsonschema import Draft202012Validator

    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid(name: str, record: dict) -> None:
    errors = sorted(validator(name).iter_errors(record), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
