"""Find and load the JSON Schemas in the repository's `schemas/` folder at runtime.

The import package `harmony_pipes` is the folder `plugins/`; with the editable install the schemas
sit next to it (`<repo>/schemas/`). `HARMONY_PIPES_SCHEMA_DIR` overrides the location (for an
installed wheel or a custom deployment).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ConfigError

SCHEMA_DIR_ENV = "HARMONY_PIPES_SCHEMA_DIR"
_SUFFIX = ".schema.json"


def schema_dirs() -> list[Path]:
    """Where schemas are looked for, in order."""
    dirs: list[Path] = []
    override = os.environ.get(SCHEMA_DIR_ENV)
    if override:
        dirs.append(Path(override))
    package_dir = Path(__file__).resolve().parents[1]  # plugins/ == harmony_pipes
    dirs.append(package_dir.parent / "schemas")  # editable install: <repo>/schemas
    dirs.append(package_dir / "schemas")  # a wheel that ships them inside the package
    return dirs


def schema_path(name: str) -> Path:
    """Path of schema `name` ("s3-receipt", "s3-receipt.schema.json"); ConfigError if missing."""
    filename = name if name.endswith(".json") else name + _SUFFIX
    for directory in schema_dirs():
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in schema_dirs())
    raise ConfigError(f"schema {filename} not found (looked in {searched})", f"set {SCHEMA_DIR_ENV}")


@lru_cache(maxsize=32)
def _load(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return json.load(handle)


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `name` (cached; treat it as read-only)."""
    return _load(str(schema_path(name)))
