"""The spool on disk: sealing order, crash recovery, delivery state, pause flags, status."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from harmony_pipes._core.errors import ConfigError
from harmony_pipes.s3_batch.batcher import Batcher, Limits
from harmony_pipes.s3_batch.body import BodySpec, read_records
from harmony_pipes.s3_batch.control import is_paused, read_control, scan_backlog, write_control
from harmony_pipes.s3_batch.keys import KeyTemplate, TimeExtractor
from harmony_pipes.s3_batch.spool import Spool

TEMPLATE = KeyTemplate.parse("{prefix}{field:tenant}/{t1}_{t2}_{t3}_{hash}{ext}")
SPEC = BodySpec("ndjson", "gzip")
T0 = 1_714_521_600_000


def open_spool(path: Path, dests=("a", "b"), now=lambda: 1_000) -> Spool:
    return Spool(
        path,
        spec=SPEC,
        template=TEMPLATE,
        destinations={d: f"file:///{d}/" for d in dests},
        prefixes={d: f"{d}/" for d in dests},
        wall_ms=now,
    )


def fill(spool: Spool, records: list[dict], partition=("t1",)) -> Batcher:
    batcher = Batcher(Limits(), spool.new_body, lambda: 0.0)
    for record in records:
        assert not batcher.add(partition, record["ts"], orjson.dumps(record))
    return batcher


def test_seal_fixes_key_and_bytes_before_delivery(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s")
    batcher = fill(spool, [{"i": i, "ts": 100 + i} for i in range(10)])
    (batch,) = batcher.drain()
    entry = spool.seal(batch)
    m = entry.manifest
    assert m["keys"]["a"].startswith("a/t1/100_109_1000_") and m["keys"]["a"].endswith(".ndjson.gz")
    assert m["keys"]["b"] == "b/" + m["keys"]["a"][2:]
    assert entry.body_path.read_bytes() and m["records"] == 10
    assert not list((tmp_path / "s" / "open").iterdir())
    assert spool.next_for("a") is entry and spool.backlog("a") == (1, m["bytes"], 1000)
    spool.mark_done(entry, "a")
    assert spool.next_for("a") is None and entry.body_path.exists(), "b has not confirmed yet"
    spool.mark_done(entry, "b")
    assert not entry.body_path.exists() and not list((tmp_path / "s" / "objects").iterdir())
    spool.close()


def test_recover_after_a_crash_with_open_and_sealed_batches(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s")
    records = [{"i": i, "ts": T0 + 500 + i} for i in range(2000)]
    batcher = fill(spool, records[:1000])
    (first,) = batcher.drain()
    sealed = spool.seal(first)
    spool.mark_done(sealed, "a")
    batcher = fill(spool, records[1000:], partition=("t2",))
    spool.sync(batcher.open.values())  # the open batch is durable, its gzip stream unfinished
    # simulate kill -9: drop the spool without closing anything
    os.close(spool.state._lock_fd)  # type: ignore[arg-type]
    spool.state._lock_fd = None

    again = open_spool(tmp_path / "s", now=lambda: 2_000)
    objects, recovered = again.recover(TimeExtractor("ts"))
    assert (objects, recovered) == (1, 1000)
    entries = list(again.entries.values())
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert entries[0].done == {"a"} and entries[0].manifest == sealed.manifest, "a sealed object never changes"
    new = entries[1].manifest
    assert new["reason"] == "recovered" and new["records"] == 1000
    assert (new["first_ms"], new["last_ms"]) == (T0 + 1500, T0 + 2499)
    assert new["keys"]["b"].startswith(f"b/t2/{T0 + 1500}_{T0 + 2499}_2000_")
    got = [orjson.loads(r)["i"] for r in read_records(entries[1].body_path, SPEC)]
    assert got == list(range(1000, 2000))
    again.close()


def test_recover_finishes_a_seal_interrupted_after_the_manifest(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s")
    batcher = fill(spool, [{"i": 1, "ts": 1}])
    (batch,) = batcher.drain()
    entry = spool.seal(batch)
    os.replace(entry.body_path, tmp_path / "s" / "open" / f"{entry.seq}.body")  # as if the rename never ran
    spool.close()
    again = open_spool(tmp_path / "s")
    assert again.recover(TimeExtractor()) == (0, 0)
    assert again.entries[entry.seq].manifest == entry.manifest and again.entries[entry.seq].body_path.exists()
    again.close()


def test_a_second_instance_cannot_share_the_spool(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s")
    with pytest.raises(ConfigError, match="in use"):
        open_spool(tmp_path / "s")
    spool.close()


def test_pause_flags_and_status(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s")
    batcher = fill(spool, [{"i": 1, "ts": 1}, {"i": 2, "ts": 2}])
    spool.seal(batcher.drain()[0])
    write_control(tmp_path / "s", {"paused": ["a"]})
    assert is_paused(spool.control(), "a") and not is_paused(spool.control(), "b")
    assert is_paused({"paused": ["*"]}, "b")
    assert read_control(tmp_path / "nothing") == {"paused": []}
    rows = scan_backlog(tmp_path / "s", ["a", "b"], now_ms=4_000)
    assert [(r["destination"], r["paused"], r["backlog_objects"], r["backlog_records"]) for r in rows] == [
        ("a", True, 1, 2),
        ("b", False, 1, 2),
    ]
    assert rows[0]["oldest_age_secs"] == 3.0
    spool.close()


def test_sequence_ids_stay_above_the_spooled_ones(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s")
    batcher = fill(spool, [{"i": 1, "ts": 1}])
    spool.seal(batcher.drain()[0])
    spool.close()
    future = f"{time.time_ns() * 2:020d}"  # as if the previous run's clock was far ahead
    for path in (tmp_path / "s" / "objects").iterdir():
        path.rename(path.with_name(future + path.name[20:]))
    again = open_spool(tmp_path / "s")
    again.recover(TimeExtractor())
    assert again.new_body(()).seq > future
    again.close()
