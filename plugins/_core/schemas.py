"""The JSON Schemas of our records, read from the installed package with importlib.resources.

The schemas live once, in the repository's top-level `schemas/` folder; pyproject.toml maps that
folder to the data package `harmony_pipes.schemas`, so an editable install reads the checkout's
files and a wheel (pip, pipx, the container image) carries them inside the package. Nothing here
looks beside a checkout.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from .errors import ConfigError

SCHEMA_PACKAGE = "harmony_pipes.schemas"
_SUFFIX = ".schema.json"


def schema_names() -> list[str]:
    """The schemas the package ships, without the `.schema.json` suffix."""
    return sorted(p.name.removesuffix(_SUFFIX) for p in files(SCHEMA_PACKAGE).iterdir() if p.name.endswith(_SUFFIX))


def schema_path(name: str) -> Traversable:
    """Schema `name` ("s3-receipt" or "s3-receipt.schema.json"); ConfigError if the package lacks it.

    In an installed (unzipped) package this is a filesystem path.
    """
    filename = name if name.endswith(".json") else name + _SUFFIX
    candidate = files(SCHEMA_PACKAGE) / filename
    if not candidate.is_file():
        raise ConfigError(
            f"schema {filename} is not in the installed package (it has: {', '.join(schema_names())})",
            "reinstall harmony-pipes (pip install --force-reinstall harmony-pipes)",
        )
    return candidate


@lru_cache(maxsize=32)
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `name` (cached; treat it as read-only)."""
    return json.loads(schema_path(name).read_bytes())
