"""`--dest [NAME=]URL` parsing and size options (pure)."""

from __future__ import annotations

import click
import pytest

from harmony_pipes._core.errors import ConfigError
from harmony_pipes._core.options import BYTES
from harmony_pipes.s3_batch.config import split_dests
from harmony_pipes.s3_batch.stores import parse_destinations


def test_names_are_derived_or_given_and_unique() -> None:
    dests = parse_destinations(
        ["s3://logs/harmony", "s3://logs/other/", "backup=file:///srv/archive/", "file:///tmp/x"]
    )
    assert [(d.name, d.scheme, d.bucket, d.prefix) for d in dests] == [
        ("logs", "s3", "logs", "harmony/"),
        ("logs-2", "s3", "logs", "other/"),
        ("backup", "file", "/srv/archive", ""),
        ("file", "file", "/tmp/x", ""),
    ]


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["ftp://x/"],
        ["s3:///nobucket"],
        ["file://host/dir"],
        ["file:relative"],
        ["a=s3://b/", "a=s3://c/"],
        ["bad name=s3://b/"],
    ],
)
def test_bad_destinations_are_config_errors(values) -> None:
    with pytest.raises(ConfigError):
        parse_destinations(values)


def test_env_value_with_several_urls() -> None:
    assert split_dests(("a=s3://x/ b=file:///y/,file:///z/",)) == ["a=s3://x/", "b=file:///y/", "file:///z/"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * 1024**2),
        ("100MB", 100_000_000),
        ("1048576", 1048576),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("8k", 8000),
        ("2 KiB", 2048),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert BYTES.convert(text, None, None) == size


@pytest.mark.parametrize("text", ["lots", "-1", "5XB", "0"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(click.BadParameter):
        BYTES.convert(text, None, None)
