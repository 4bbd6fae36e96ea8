"""Object bodies: exact round trips, JSON-array shape, torn tails, headers and extensions."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import orjson
import pytest
import zstandard

from harmony_pipes.s3_batch.body import COMPRESSIONS, FORMATS, BodySpec, BodyWriter, read_records

RECORDS = [orjson.dumps({"i": i, "s": "é\\u2028" * (i % 7), "n": None}) for i in range(3000)]


def decompress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


@pytest.mark.parametrize(("fmt", "compression"), list(itertools.product(FORMATS, COMPRESSIONS)))
def test_round_trip_is_exact(tmp_path: Path, fmt: str, compression: str) -> None:
    spec = BodySpec(fmt, compression)
    writer = BodyWriter(tmp_path / "b", spec)
    for n, record in enumerate(RECORDS):
        writer.add(record)
        if n % 1000 == 999:
            assert writer.sync() == 1000
    size, sha = writer.finish()
    data = (tmp_path / "b").read_bytes()
    assert size == len(data)
    import hashlib

    assert sha == hashlib.sha256(data).hexdigest()
    raw = decompress(data, compression)
    assert len(raw) == writer.raw_bytes
    if fmt == "json-array":
        assert orjson.loads(raw) == [orjson.loads(r) for r in RECORDS]
    else:
        assert raw == b"".join(r + b"\n" for r in RECORDS)
    assert list(read_records(tmp_path / "b", spec)) == RECORDS


@pytest.mark.parametrize(("fmt", "compression"), list(itertools.product(FORMATS, COMPRESSIONS)))
def test_a_torn_body_yields_a_prefix_of_complete_records(tmp_path: Path, fmt: str, compression: str) -> None:
    spec = BodySpec(fmt, compression)
    writer = BodyWriter(tmp_path / "b", spec)
    durable = 0
    for n, record in enumerate(RECORDS):
        writer.add(record)
        if n == 1500:
            writer.sync()
            durable = n + 1
    writer.finish()
    data = (tmp_path / "b").read_bytes()
    for cut in range(0, len(data), max(1, len(data) // 37)):
        (tmp_path / "t").write_bytes(data[:cut])
        got = list(read_records(tmp_path / "t", spec))
        assert got == RECORDS[: len(got)]
    # after a sync, the synced records are all readable even when nothing else reached the disk
    writer2 = BodyWriter(tmp_path / "c", spec)
    for record in RECORDS[:durable]:
        writer2.add(record)
    writer2.sync()
    assert list(read_records(tmp_path / "c", spec)) == RECORDS[:durable]
    writer2.abort()


@pytest.mark.parametrize(
    ("fmt", "compression", "ext", "content_type", "encoding"),
    [
        ("ndjson", "gzip", ".ndjson.gz", "application/x-ndjson", "gzip"),
        ("ndjson", "zstd", ".ndjson.zst", "application/x-ndjson", "zstd"),
        ("ndjson", "none", ".ndjson", "application/x-ndjson", None),
        ("json-array", "gzip", ".json.gz", "application/json", "gzip"),
        ("json-array", "none", ".json", "application/json", None),
    ],
)
def test_extension_and_headers(fmt, compression, ext, content_type, encoding) -> None:
    spec = BodySpec(fmt, compression)
    assert (spec.extension, spec.content_type, spec.content_encoding) == (ext, content_type, encoding)


def test_levels() -> None:
    assert BodySpec("ndjson", "gzip").effective_level == 6
    assert BodySpec("ndjson", "zstd").effective_level == 3
    assert BodySpec("ndjson", "gzip", 1).effective_level == 1
