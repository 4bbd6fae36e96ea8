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
    spool.commit()  # the open batch is durable (committed), its gzip stream unfinished
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


def crash(spool: Spool) -> None:
    """kill -9: drop the spool without closing anything (what was written to files stays)."""
    os.close(spool.state._lock_fd)  # type: ignore[arg-type]
    spool.state._lock_fd = None


def stored_numbers(spool: Spool) -> list[int]:
    return sorted(orjson.loads(r)["i"] for e in spool.entries.values() for r in read_records(e.body_path, SPEC))


def test_recovery_keeps_only_committed_records_of_each_open_body(tmp_path: Path) -> None:
    """A hot partition writes its slices to disk on its own; only the commit counts after a crash."""
    spool = open_spool(tmp_path / "s", dests=("a",))
    batcher = Batcher(Limits(), spool.new_body, lambda: 0.0)
    pad = "x" * 200
    i = 0

    def add(n: int) -> None:
        nonlocal i
        for _ in range(n):
            partition = ("rare",) if i % 50 == 0 else ("hot",)
            assert not batcher.add(partition, T0 + i, orjson.dumps({"i": i, "ts": T0 + i, "pad": pad}))
            i += 1

    add(1000)
    assert spool.commit() == 1000 and spool.accepted == 1000
    add(3000)  # > 256 KiB of hot records: slices reach the hot body's file, the rare ones stay in memory
    hot = batcher.open[("hot",)].body
    assert hot.written_bytes > 0 and hot.flushed_records == hot.committed_records == 980
    crash(spool)

    again = open_spool(tmp_path / "s", dests=("a",))
    assert again.recover(TimeExtractor("ts")) == (2, 1000)
    assert stored_numbers(again) == list(range(1000)), "the hot body's uncommitted records are dropped"
    assert again.read_commits() == {}, "the recovered run starts a new commit log"
    again.close()


def test_sealing_one_partition_commits_the_others_first(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s", dests=("a",))
    batcher = Batcher(Limits(max_records=100), spool.new_body, lambda: 0.0)
    sealed = []
    for i in range(250):  # rare gets every 10th record, hot seals at 100 and 200
        partition = ("rare",) if i % 10 == 0 else ("hot",)
        for batch in batcher.add(partition, T0 + i, orjson.dumps({"i": i, "ts": T0 + i})):
            sealed.append(spool.seal(batch))
    assert [e.manifest["records"] for e in sealed] == [100, 100]
    rare = batcher.open[("rare",)].body
    commits = spool.read_commits()
    assert commits is not None and commits[rare.seq] == 23, "rare's records before the 2nd hot seal"
    assert spool.accepted == 223  # 200 sealed + 23 committed (i <= 222); the 27 after it not yet
    crash(spool)

    again = open_spool(tmp_path / "s", dests=("a",))
    again.recover(TimeExtractor("ts"))
    found = stored_numbers(again)
    assert found == list(range(len(found))) and len(found) >= 223, "a gap-free prefix across partitions"
    again.close()


def test_a_seal_with_nothing_else_to_commit_writes_no_commit(tmp_path: Path) -> None:
    """One partition (the common case): the seal alone makes its records durable, no extra fsync."""
    spool = open_spool(tmp_path / "s", dests=("a",))
    spool.recover(TimeExtractor())
    batcher = Batcher(Limits(max_records=10), spool.new_body, lambda: 0.0)
    for i in range(30):
        for batch in batcher.add((), T0 + i, orjson.dumps({"i": i})):
            spool.seal(batch)
    assert spool.accepted == 30 and spool.commit_path.read_bytes() == b""
    spool.close()


def test_torn_commit_line_is_ignored_and_old_spools_recover_everything(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "s", dests=("a",))
    batcher = fill(spool, [{"i": i, "ts": T0 + i} for i in range(10)])
    spool.commit()
    fill_more = batcher.add(("t1",), T0 + 10, orjson.dumps({"i": 10, "ts": T0 + 10}))
    assert not fill_more
    body = batcher.open[("t1",)].body
    body.sync()  # on disk, but the commit line for it is torn by the crash
    with open(spool.commit_path, "ab") as log:
        log.write(b'{"' + body.seq.encode() + b'": 1')
    crash(spool)
    again = open_spool(tmp_path / "s", dests=("a",))
    assert again.read_commits() == {body.seq: 10}
    assert again.recover(TimeExtractor("ts")) == (1, 10)
    again.close()

    # a spool written before commits.log existed: every complete record is recovered
    old = open_spool(tmp_path / "old", dests=("a",))
    batcher = fill(old, [{"i": i, "ts": T0 + i} for i in range(7)])
    batcher.open[("t1",)].body.sync()
    crash(old)
    (tmp_path / "old" / "commits.log").unlink()
    again = open_spool(tmp_path / "old", dests=("a",))
    assert again.recover(TimeExtractor("ts")) == (1, 7)
    again.close()


def test_commit_log_is_rewritten_when_it_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harmony_pipes.s3_batch.spool.COMMIT_LOG_MAX_BYTES", 200)
    spool = open_spool(tmp_path / "s", dests=("a",))
    batcher = Batcher(Limits(), spool.new_body, lambda: 0.0)
    for i in range(300):
        batcher.add((f"p{i % 3}",), T0 + i, orjson.dumps({"i": i, "ts": T0 + i}))
        spool.commit()
        if i % 10 == 9:
            spool.sync()  # the log is compacted at a sync, after the bodies' fsync
    assert spool.commit_path.stat().st_size < 400
    assert set(spool.read_commits().values()) == {100}  # type: ignore[union-attr]
    crash(spool)
    again = open_spool(tmp_path / "s", dests=("a",))
    assert again.recover(TimeExtractor("ts")) == (3, 300)
    assert stored_numbers(again) == list(range(300))
    again.close()


def test_power_loss_recovery_keeps_a_commit_state_every_body_covers(tmp_path: Path) -> None:
    """Commits after the last sync may be on disk in the log but not in a body (page cache lost
    out of order): recovery keeps the newest logged state all bodies still hold — a gap-free
    prefix covering at least every record synced."""
    spool = open_spool(tmp_path / "s", dests=("a",))
    batcher = Batcher(Limits(), spool.new_body, lambda: 0.0)
    i = 0

    def chunk(count: int, partitions: tuple[str, ...] = ("a", "b")) -> None:
        nonlocal i
        for _ in range(count):
            partition = (partitions[i % len(partitions)],)
            assert not batcher.add(partition, T0 + i, orjson.dumps({"i": i, "ts": T0 + i, "pad": "x" * 80}))
            i += 1
        spool.commit()  # what the sink does after every input chunk

    chunk(40)
    spool.sync()
    synced = i
    body_a = Path(batcher.open[("a",)].body.path)
    size_at_sync = body_a.stat().st_size
    chunk(40)
    chunk(40, ("a", "b", "c"))  # "c" opens after the sync: its body file was never fsynced
    body_c = Path(batcher.open[("c",)].body.path)
    assert spool.accepted == i == 120
    crash(spool)
    # the power loss: a's bytes written since the sync and c's whole body never reached the disk,
    # while the commit log and b's body did
    with open(body_a, "r+b") as handle:
        handle.truncate(size_at_sync)
    body_c.unlink()

    again = open_spool(tmp_path / "s", dests=("a",))
    again.recover(TimeExtractor("ts"))
    found = stored_numbers(again)
    assert found == list(range(len(found))), "a gap-free prefix across partitions"
    assert len(found) >= synced, f"the {synced} records synced before the power loss are kept"
    assert not list((tmp_path / "s" / "open").iterdir())
    again.close()
