"""Sealing policy with real body files and an injected clock."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson
import pytest

from harmony_pipes.s3_batch.batcher import Batcher, Limits
from harmony_pipes.s3_batch.body import COMPRESSIONS, BodySpec, BodyWriter, read_records


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_batcher(tmp_path: Path, limits: Limits, spec: BodySpec, clock: Clock) -> Batcher:
    counter = iter(range(10**6))

    def open_body(partition: tuple[str, ...]) -> BodyWriter:
        return BodyWriter(tmp_path / f"{next(counter):06d}.body", spec)

    return Batcher(limits, open_body, clock)


def line(i: int) -> bytes:
    """A record that compresses about 2:1 (hex digests), so compressed limits are exercised."""
    return orjson.dumps({"i": i, "msg": hashlib.sha256(str(i).encode()).hexdigest() * 2})


def seal_all(batches) -> list[tuple[int, int, str]]:
    out = []
    for batch in batches:
        size, _ = batch.body.finish()
        out.append((batch.records, size, batch.reason))
    return out


def test_max_records(tmp_path: Path) -> None:
    batcher = make_batcher(tmp_path, Limits(max_records=10), BodySpec("ndjson", "none"), Clock())
    sealed = []
    for i in range(25):
        sealed += seal_all(batcher.add((), i, line(i)))
    sealed += seal_all(batcher.drain())
    assert [s[0] for s in sealed] == [10, 10, 5]
    assert [s[2] for s in sealed] == ["records", "records", "drain"]


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("max_bytes", [4096, 50_000])
def test_max_bytes_is_measured_on_stored_bytes(tmp_path: Path, compression: str, max_bytes: int) -> None:
    spec = BodySpec("json-array", compression)
    batcher = make_batcher(tmp_path, Limits(max_records=10**9, max_bytes=max_bytes), spec, Clock())
    batches = []
    for i in range(6000):
        batches += batcher.add((), i, line(i))
    batches += batcher.drain()
    sizes = []
    records = []
    for batch in batches:
        size, _ = batch.body.finish()
        assert size == os.path.getsize(batch.body.path)
        sizes.append(size)
        records += [orjson.loads(r)["i"] for r in read_records(batch.body.path, spec)]
    assert records == list(range(6000))
    assert max(sizes) <= max_bytes, "no stored object exceeds --max-bytes"
    # objects are filled close to the limit (within a record's worst case), not sealed early
    full = sizes[:-1]
    assert full and min(full) >= max_bytes - 2 * (len(line(0)) + 200)


def test_one_record_larger_than_max_bytes_gets_its_own_object(tmp_path: Path) -> None:
    batcher = make_batcher(tmp_path, Limits(max_bytes=100), BodySpec("ndjson", "none"), Clock())
    sealed = seal_all(batcher.add((), 1, b'{"a":"' + b"x" * 500 + b'"}'))
    sealed += seal_all(batcher.add((), 2, b'{"b":1}'))
    sealed += seal_all(batcher.drain())
    assert [s[0] for s in sealed] == [1, 1]


def test_max_age_since_first_record_with_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    batcher = make_batcher(tmp_path, Limits(max_age_secs=60), BodySpec("ndjson", "gzip"), clock)
    batcher.add((), 1, line(1))
    clock.now += 59.9
    batcher.add((), 2, line(2))  # a later record does not extend the age
    assert batcher.due() == []
    assert batcher.next_due_in() == pytest.approx(0.1)
    clock.now += 0.1
    due = batcher.due()
    assert [(b.records, b.reason) for b in due] == [(2, "age")]
    assert batcher.next_due_in() is None
    seal_all(due)


def test_partitions_are_separate_and_bounded(tmp_path: Path) -> None:
    clock = Clock()
    batcher = make_batcher(tmp_path, Limits(max_open_batches=2), BodySpec("ndjson", "none"), clock)
    assert not batcher.add(("a",), 1, line(1))
    clock.now += 1
    assert not batcher.add(("b",), 2, line(2))
    clock.now += 1
    batcher.add(("a",), 3, line(3))
    evicted = batcher.add(("c",), 4, line(4))  # third partition: the oldest-opened one is sealed
    assert [(b.partition, b.records, b.reason) for b in evicted] == [(("a",), 2, "partitions")]
    rest = batcher.drain()
    assert [(b.partition, b.records) for b in rest] == [(("b",), 1), (("c",), 1)]
    seal_all(evicted + rest)


def test_first_and_last_time(tmp_path: Path) -> None:
    batcher = make_batcher(tmp_path, Limits(), BodySpec("ndjson", "none"), Clock())
    for t in (50, 10, 90, 30):
        batcher.add((), t, line(t))
    (batch,) = batcher.drain()
    assert (batch.first_ms, batch.last_ms) == (10, 90)
    seal_all([batch])


@pytest.mark.parametrize("max_bytes", [20_000, 64 << 20])
def test_blocks_fill_objects_as_records_one_by_one_do(tmp_path: Path, max_bytes: int) -> None:
    """The sink's whole-chunk path: `add_block` takes a group only when no record of it could
    seal the batch, else the caller adds them one by one — so the objects hold the same records."""
    spec = BodySpec("ndjson", "gzip")
    limits = Limits(max_records=250, max_bytes=max_bytes)
    one = make_batcher(tmp_path / "one", limits, spec, Clock())
    blocks = make_batcher(tmp_path / "blocks", limits, spec, Clock())
    (tmp_path / "one").mkdir()
    (tmp_path / "blocks").mkdir()
    expected, got, refused = [], [], 0
    for start in range(0, 2000, 40):
        group = [line(i) for i in range(start, start + 40)]
        for i, record in enumerate(group):
            expected += one.add((), start + i, record)
        if blocks.add_block((), start, start + 39, b"\n".join(group), len(group)):
            continue
        refused += 1
        for i, record in enumerate(group):
            got += blocks.add((), start + i, record)
    expected += one.drain()
    got += blocks.drain()

    def contents(batches) -> list[tuple[list[int], int, int, str]]:
        out = []
        for batch in batches:
            batch.body.finish()
            ids = [orjson.loads(r)["i"] for r in read_records(batch.body.path, spec)]
            out.append((ids, batch.first_ms, batch.last_ms, batch.reason))
        return out

    assert contents(got) == contents(expected)
    assert 0 < refused < 50  # a new batch, or one that could fill: one by one; else one block


def test_a_block_is_refused_where_a_record_could_seal_the_batch(tmp_path: Path) -> None:
    batcher = make_batcher(tmp_path, Limits(max_records=10), BodySpec("ndjson", "none"), Clock())
    block = b"\n".join(line(i) for i in range(4))
    assert not batcher.add_block((), 0, 3, block, 4)  # no open batch yet
    assert not batcher.add((), 0, line(0))
    assert batcher.add_block((), 1, 4, block, 4)
    assert not batcher.add_block((), 5, 9, block + b"\n" + line(9), 5)  # would reach 10: sealed one by one
    assert batcher.open[()].records == 5
