"""The pure parts of harmony-alerts' helper pool: a rendered chunk survives shared memory as it
was, `DigestSet.add_many` decides exactly as `add` one by one, `render_spec` rebuilds the same
renderer, and `BatchWriter.write_now` writes and counts whole blocks."""

from __future__ import annotations

import mmap
import os
import random

import orjson
import pytest

from harmony_pipes._core.output import IOV_MAX, BatchWriter, write_vectors
from harmony_pipes.harmony_alerts.chunks import Chunk, render_chunk
from harmony_pipes.harmony_alerts.dedupe import DigestSet
from harmony_pipes.harmony_alerts.normalize import DedupeKey
from harmony_pipes.harmony_alerts.pool import available_cpus
from harmony_pipes.harmony_alerts.render import make_render
from harmony_pipes.hec_emulator.generate import EventGenerator

SPEC = {
    "types": ["phishing", "malware", "alert", "dlp"],
    "min_severity": 4,
    "keep_all": False,
    "tenant": None,
    "dedupe_key": "tenant,eventId",
    "dedupe": True,
    "output_format": "native",
}


def lines_of(count: int, seed: int) -> list[bytes]:
    generator = EventGenerator(seed)
    lines = [orjson.dumps(generator.make(1_767_225_600_000_000 + i * 1000)) for i in range(count)]
    lines[3:3] = [b"", b"  ", b"{broken", b"[1]", b"null"]  # blank, blank, bad, bad, bad
    return lines


def test_render_chunk_locates_bad_lines_and_keeps_each_alert_and_its_digest() -> None:
    lines = lines_of(300, seed=2)
    render = make_render(SPEC)
    chunk = render_chunk(lines, render, now_ms=0)
    assert list(chunk.bad) == [5, 6, 7]
    assert chunk.good == 300
    events = lines[:3] + lines[8:]
    rendered = [render(orjson.loads(line), line, 0) for line in events]
    rendered = [found for found in rendered if found is not None]
    assert chunk.filtered == 300 - len(rendered) > 0
    assert bytes(chunk.blob) == b"".join(alert + b"\n" for _, alert in rendered)
    assert list(chunk.digests) == [digest for digest, _ in rendered]
    starts = [0] + [end + 1 for end in chunk.ends[:-1]]
    assert [bytes(chunk.blob[s:e]) for s, e in zip(starts, chunk.ends, strict=True)] == [a for _, a in rendered]


def test_a_chunk_packed_into_shared_memory_unpacks_the_same() -> None:
    chunk = render_chunk(lines_of(200, seed=4), make_render(SPEC), now_ms=0)
    with mmap.mmap(-1, 8 << 20) as buffer:
        counts = chunk.pack_into(buffer)
        again = Chunk.unpack_from(buffer, *counts)
        assert bytes(again.blob) == bytes(chunk.blob)
        assert (again.digests, again.ends, again.bad) == (chunk.digests, chunk.ends, chunk.bad)
        assert (again.filtered, again.good) == (chunk.filtered, chunk.good)
        assert chunk.packed_bytes() == 12 * len(chunk.digests) + 4 * len(chunk.bad) + len(chunk.blob)
        again.blob.release()


@pytest.mark.parametrize("key", ["tenant,eventId", "eventId", "tenant,eventId,eventCreated,type", "type,tenant"])
def test_the_dedupe_key_text_rebuilds_the_same_key(key: str) -> None:
    parsed = DedupeKey.parse(key)
    again = DedupeKey.parse(parsed.text)
    event = {"eventId": "e1", "eventCreated": "2026-01-01T00:00:00Z", "type": "phishing", "customerId": "t"}
    assert again.key(event, "t") == parsed.key(event, "t")
    assert again.default == parsed.default


@pytest.mark.parametrize("max_keys", [40, 1000, 300_000])
def test_add_many_decides_as_add_one_by_one(max_keys: int) -> None:
    """Same duplicates, same keys kept, across evictions (max_keys), TTL expiry and table growth."""
    rng = random.Random(max_keys)
    one, many = DigestSet(max_keys, ttl_secs=50), DigestSet(max_keys, ttl_secs=50)
    pool = [rng.getrandbits(64) | 1 for _ in range(max(80, max_keys // 2))]
    now = 1000
    for _ in range(60):
        now += rng.choice((0, 1, 7, 30))
        batch = [rng.choice(pool) if rng.random() < 0.4 else rng.getrandbits(64) for _ in range(400)]
        batch[rng.randrange(400)] = 0  # no dedupe key
        expected = [i for i, digest in enumerate(batch) if digest and not one.add(digest, now)]
        assert many.add_many(batch, now) == expected
    assert many.entries() == one.entries()
    assert len(many) == len(one) and many.evicted == one.evicted


def test_write_now_writes_after_what_is_buffered_and_counts_lines(tmp_path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    flushed = []
    writer = BatchWriter(fd)
    writer.on_flushed = lambda: flushed.append(writer.lines_written)
    writer.write(b'{"a":1}')
    with mmap.mmap(-1, 4096) as shared:
        shared[:12] = b'{"b":2}\n{"c"'
        view = memoryview(shared)
        writer.write_now([view[:8]], 1)
        view.release()
    writer.write_lines([b'{"d":4}', b'{"e":5}'])
    writer.flush()
    os.close(fd)
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n{"d":4}\n{"e":5}\n'
    assert writer.lines_written == 4 and flushed == [1, 2, 4]


def test_write_vectors_writes_more_parts_than_one_writev_takes(tmp_path) -> None:
    parts = [b"%d\n" % i for i in range(IOV_MAX * 2 + 7)] + [b""]
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    assert write_vectors(fd, parts) == sum(map(len, parts))
    os.close(fd)
    assert path.read_bytes() == b"".join(parts)


@pytest.mark.parametrize(
    ("cpu_max", "v1", "cap"),
    [
        ("max 100000\n", None, None),  # v2, no limit
        ("150000 100000\n", None, 1.5),  # v2: a limit of 1.5 CPUs
        ("300000 100000\n", None, 3.0),
        (None, ("-1", "100000"), None),  # v1, no limit
        (None, ("50000", "100000"), 0.5),  # v1: half a CPU
        (None, None, None),  # no cgroup files: the affinity mask alone
        ("garbage\n", None, None),
    ],
)
def test_available_cpus_is_the_affinity_capped_by_the_cgroup_quota(tmp_path, cpu_max, v1, cap) -> None:
    affinity = len(os.sched_getaffinity(0))
    v2_file, v1_dir = tmp_path / "cpu.max", tmp_path / "cpu"
    if cpu_max is not None:
        v2_file.write_text(cpu_max)
    if v1 is not None:
        v1_dir.mkdir()
        (v1_dir / "cpu.cfs_quota_us").write_text(v1[0] + "\n")
        (v1_dir / "cpu.cfs_period_us").write_text(v1[1] + "\n")
    expected = affinity if cap is None else min(affinity, cap)
    assert available_cpus(v2_file, v1_dir) == expected
