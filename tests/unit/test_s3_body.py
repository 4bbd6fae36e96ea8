"""Object bodies: exact round trips, JSON-array shape, torn tails, headers and extensions."""

from __future__ import annotations

import gzip
import itertools
import random
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
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
    assert BodySpec("ndjson", "gzip").effective_level == 5
    assert BodySpec("ndjson", "zstd").effective_level == 3
    assert BodySpec("ndjson", "gzip", 1).effective_level == 1


def alert_records(count: int, seed: int = 7) -> list[bytes]:
    """Alert-shaped records (the fields harmony-alerts emits, random ids): a realistic corpus."""
    rng = random.Random(seed)
    base_ms = 1_714_521_600_000
    out = []
    for i in range(count):
        user, policy = rng.randint(1, 5000), rng.randint(1, 99)
        out.append(
            orjson.dumps(
                {
                    "timestamp": base_ms + i * 10,
                    "msg_class": "checkpoint_harmony_security_event",
                    "tenantid": f"tenant-{i % 7}",
                    "event_id": f"{rng.getrandbits(128):032x}",
                    "event_type": rng.choice(["phishing", "malware", "dlp", "alert"]),
                    "event_state": "new",
                    "saas": rng.choice(["office365_emails", "google_mail", "slack"]),
                    "severity": rng.randint(1, 5),
                    "confidence": "high",
                    "description": f"Suspicious message from user{user}@example.com flagged by policy {policy}",
                    "sender": f"user{rng.randint(1, 5000)}@example.com",
                    "entity_id": f"{rng.getrandbits(96):024x}",
                    "entity_link": f"https://portal.checkpointcloudsec.com/dashboard/x/{rng.getrandbits(64):016x}",
                    "alert_reasons": ["type:phishing", "severity>=4"],
                    "dedupe_key": f"tenant-{i % 7}:{rng.getrandbits(64):016x}",
                }
            )
        )
    return out


def write_body(path: Path, spec: BodySpec, records: list[bytes], flush_every_bytes: int) -> BodyWriter:
    """Write like the sink does: a flush (commit) after every `flush_every_bytes` of input."""
    with ThreadPoolExecutor(1) as worker:
        writer = BodyWriter(path, spec, worker)
        pending = 0
        for record in records:
            writer.add(record)
            pending += len(record) + 1
            if pending >= flush_every_bytes:
                writer.flush()
                pending = 0
        writer.finish()
    return writer


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("level", [None, 1, 2, 6, 9])
def test_gzip_bodies_are_one_standard_gzip_member(tmp_path: Path, fmt: str, level: int | None) -> None:
    """ISA-L (level 1) and zlib-ng (2-9) bodies read back byte-exact with Python's gzip, zlib and `gzip -dc`."""
    spec = BodySpec(fmt, "gzip", level)
    records = RECORDS + alert_records(500)
    write_body(tmp_path / "b", spec, records, flush_every_bytes=20_000)
    data = (tmp_path / "b").read_bytes()
    expected = b"".join(r + b"\n" for r in records) if fmt == "ndjson" else b"[" + b"\n,".join(records) + b"\n]"
    assert data[:3] == b"\x1f\x8b\x08", "a gzip member (RFC 1952, deflate)"
    assert gzip.decompress(data) == expected
    decoder = zlib.decompressobj(31)
    assert decoder.decompress(data) == expected and decoder.eof and decoder.unused_data == b"", "exactly one member"
    done = subprocess.run(["gzip", "-dc", str(tmp_path / "b")], capture_output=True, check=True)
    assert done.stdout == expected and done.stderr == b""
    assert list(read_records(tmp_path / "b", spec)) == records


def test_default_gzip_level_compresses_at_least_as_well_as_zlib_6(tmp_path: Path) -> None:
    """The default level (zlib-ng 5), flushed every 64 KiB as a pipe-fed sink does, vs zlib 6 in one go."""
    records = alert_records(8000)  # ~4.5 MB
    raw = b"".join(r + b"\n" for r in records)
    zlib6 = zlib.compressobj(6, zlib.DEFLATED, 31)
    zlib6_ratio = len(raw) / len(zlib6.compress(raw) + zlib6.flush())
    writer = write_body(tmp_path / "b", BodySpec("ndjson", "gzip"), records, flush_every_bytes=64 * 1024)
    ratio = len(raw) / writer.written_bytes
    assert writer.raw_bytes == len(raw)
    assert ratio >= zlib6_ratio, f"default level: {ratio:.3f}, zlib level 6: {zlib6_ratio:.3f}"
    assert gzip.decompress((tmp_path / "b").read_bytes()) == raw


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("level", [1, 6])
def test_size_bound_holds_for_incompressible_records(tmp_path: Path, fmt: str, level: int) -> None:
    """Sealing right after any record stays within the bound the batcher checks `--max-bytes` with."""
    rng = random.Random(level)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789+/"
    records = [rng.randbytes(350).hex().encode() for _ in range(60)]
    records += [bytes(rng.choice(alphabet) for _ in range(700)) for _ in range(120)]
    flush_at = {rng.randrange(len(records)) for _ in range(15)}
    spec = BodySpec(fmt, "gzip", level)
    for cut in [*sorted(rng.sample(range(len(records)), 6)), len(records) - 1]:
        writer = BodyWriter(tmp_path / "b", spec)
        for n, record in enumerate(records[: cut + 1]):
            bound = writer.size_bound_with(len(record))
            writer.add(record)
            if n in flush_at:
                writer.flush()
        size, _ = writer.finish()
        assert size <= bound, f"sealed after record {cut}: {size} bytes > bound {bound}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("level", [1, 6])
def test_flushes_that_take_over_queued_segments_keep_the_input_order(tmp_path: Path, fmt: str, level: int) -> None:
    """Input chunks of several slices: at each flush the caller compresses the segments the
    worker has not started; the body is still every record once, in order, in one gzip member."""
    records = alert_records(6000, seed=level)  # ~3.4 MB: flushes every ~1 MiB leave slices queued
    spec = BodySpec(fmt, "gzip", level)
    writer = write_body(tmp_path / "b", spec, records, flush_every_bytes=1 << 20)
    data = (tmp_path / "b").read_bytes()
    expected = b"".join(r + b"\n" for r in records) if fmt == "ndjson" else b"[" + b"\n,".join(records) + b"\n]"
    assert gzip.decompress(data) == expected and writer.raw_bytes == len(expected)
    assert list(read_records(tmp_path / "b", spec)) == records
    for cut in range(0, len(data), len(data) // 23):  # a body cut anywhere reads back as a prefix
        (tmp_path / "t").write_bytes(data[:cut])
        got = list(read_records(tmp_path / "t", spec))
        assert got == records[: len(got)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_blocks_of_records_give_the_body_records_one_by_one_give(tmp_path: Path, fmt: str, compression: str) -> None:
    """`add_block` (the sink's whole-chunk path) mixed with `add`: the same records, in order."""
    records = alert_records(3000, seed=3)
    spec = BodySpec(fmt, compression)
    with ThreadPoolExecutor(1) as worker:
        writer = BodyWriter(tmp_path / "b", spec, worker)
        for start in range(0, len(records), 700):  # ~400 KB per group: more than one slice
            group = records[start : start + 700]
            writer.add(group[0])
            writer.add_block(b"\n".join(group[1:]), len(group) - 1)
            if start % 1400 == 0:
                writer.flush()
                assert writer.flushed_records == start + len(group)
        assert writer.records == len(records)
        writer.finish()
    expected = b"".join(r + b"\n" for r in records) if fmt == "ndjson" else b"[" + b"\n,".join(records) + b"\n]"
    assert decompress((tmp_path / "b").read_bytes(), compression) == expected
    assert writer.raw_bytes == len(expected)
    assert list(read_records(tmp_path / "b", spec)) == records
