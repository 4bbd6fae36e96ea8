"""Issue 11, case 6: a property test over hostile time and partition values (hypothesis).

Each example is a batch of ~500 NDJSON lines whose time fields (`timestamp`, `eventCreated`,
`auditEventTime`) and partition field (`{field:t}`) hold values drawn by hypothesis: huge and
negative integers, floats up to 1e308, ISO strings with years 0..99999 and offsets up to ±99:59,
"Infinity", "NaN", "1e400", dot names, slashes, control characters, nested values, and raw
tokens that are not JSON at all (`NaN`, `Infinity`, `1e400`, `-`). One s3-batch process (file://,
partitioned by {field:t} and {date}) and one harmony-alerts process take each batch.

The property: every line is either stored / emitted exactly once or dead-lettered exactly once —
never both, never neither — and the process exits 0. The oracle for "good" is the stream
contract: a line that parses as a JSON object. Across the run at least 10,000 lines go through
each command.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.helpers.s3 import all_records, read_file_store

pytestmark = pytest.mark.integration

EXAMPLES = 20
LINES_PER_EXAMPLE = 520
MIN_LINES_TOTAL = 10_000
TEMPLATE = "{prefix}t={field:t}/dt={date}/{t1}_{t2}_{hash}{ext}"


def _json(value: object) -> bytes:
    return orjson.dumps(value)


iso_strings = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{off}",
    st.integers(0, 99999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".5", ".123456", ".1234567890"]),
    st.sampled_from(["", "Z", "+00:00", "-14:00", "+14:00", "+23:59", "-99:59", "+1400"]),
)

# JSON texts of time values: valid JSON of every kind, and raw tokens that are not JSON
time_texts = st.one_of(
    st.integers().map(lambda n: str(n).encode()),
    st.integers(-(10**30), 10**30).map(lambda n: str(n).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
    st.sampled_from([b"1e308", b"-1e306", b"1e25", b"1.7976931348623157e308", b"5e-324", b"0", b"-0.0"]),
    iso_strings.map(_json),
    st.sampled_from(["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "", " ", "now", "9" * 40]).map(_json),
    st.text(max_size=40).map(_json),
    st.sampled_from([b"true", b"null", b"[]", b"{}", b'{"a":[1e308]}', b"[1,2,3]"]),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-", b"01", b"0x10", b"'x'"]),  # not JSON
)

# JSON texts of partition values (`{field:t}`)
partition_texts = st.one_of(
    st.sampled_from([".s3-batch-tmp", "..", ".", "...", "../../etc", "/abs", "a/b", ".hidden", "", " ", "\x00"]).map(
        _json
    ),
    st.text(max_size=200).map(_json),
    st.integers().map(lambda n: str(n).encode()),
    st.sampled_from([b"null", b"true", b"[1,[2]]", b'{"x":"../y"}', b"1e308", b"-0.0"]),
)

pools = st.tuples(
    st.lists(time_texts, min_size=5, max_size=30),
    st.lists(partition_texts, min_size=3, max_size=12),
    st.integers(0, 2**32 - 1),
)

seen = Counter()


def build_lines(time_pool: list[bytes], partition_pool: list[bytes], seed: int, kind: str) -> list[bytes]:
    """LINES_PER_EXAMPLE lines mixing values from the pools (hypothesis shrinks the pools)."""
    rng = random.Random(seed)
    lines = []
    for i in range(LINES_PER_EXAMPLE):
        when = rng.choice(time_pool)
        if kind == "s3":
            field = rng.choice([b"timestamp", b"eventCreated", b"auditEventTime"])
            lines.append(b'{"i":%d,"%s":%s,"t":%s}' % (i, field, when, rng.choice(partition_pool)))
        else:
            severity = rng.choice([b'"5"', b"4", b'"High"', b"null", b"1e308", b"-1", rng.choice(partition_pool)])
            lines.append(
                b'{"eventId":"e%d","type":"phishing","severity":%s,"eventCreated":%s,"customerId":%s}'
                % (i, severity, when, rng.choice(partition_pool))
            )
    return lines


def is_good(line: bytes) -> bool:
    try:
        return type(orjson.loads(line)) is dict
    except orjson.JSONDecodeError:
        return False


def dead_lettered(path: Path) -> Counter:
    if not path.exists():
        return Counter()
    return Counter(orjson.loads(line)["line_no"] for line in path.read_bytes().splitlines() if line)


def check_once(lines: list[bytes], stored: Counter, dead: Counter) -> None:
    """Line k (1-based) is good → stored once, dead-lettered never; bad → the reverse."""
    for k, line in enumerate(lines, start=1):
        index = k - 1
        if is_good(line):
            assert (stored[index], dead[k]) == (1, 0), (
                f"good line {k} stored {stored[index]}x, dead {dead[k]}x: {line!r}"
            )
        else:
            assert (stored[index], dead[k]) == (0, 1), (
                f"bad line {k} stored {stored[index]}x, dead {dead[k]}x: {line!r}"
            )
    assert sum(stored.values()) + sum(dead.values()) == len(lines)


def run_s3_batch(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args = [
            "s3-batch",
            "--dest",
            f"file://{root}/store/",
            "--spool-dir",
            str(root / "spool"),
            "--dead-letter",
            str(root / "dead.ndjson"),
            "--key-template",
            TEMPLATE,
            "--max-open-batches",
            "64",
        ]
        result = run_cli(args, b"\n".join(lines) + b"\n", timeout_secs=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "internal error" not in result.stderr
        objects = read_file_store(root / "store")
        for key in objects:
            assert not any(part in ("", ".", "..") or part.startswith(".") for part in key.split("/")), key
        stored = Counter(record["i"] for record in all_records(objects))
        check_once(lines, stored, dead_lettered(root / "dead.ndjson"))
        assert result.stats["records_accepted"] == sum(stored.values())


def run_alerts(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args = ["harmony-alerts", "--all", "--dead-letter", str(root / "dead.ndjson"), "--state-dir", str(root / "st")]
        for output_format in ("native", "ecs"):
            result = run_cli([*args, "--format", output_format, "--no-dedupe"], b"\n".join(lines) + b"\n")
            assert result.returncode == 0, result.stderr[-2000:]
            assert "internal error" not in result.stderr
            alerts = [orjson.loads(line) for line in result.stdout_lines]
            ids = [a["event_id"] if output_format == "native" else a["event"]["id"] for a in alerts]
            stored = Counter(int(event_id[1:]) for event_id in ids)
            check_once(lines, stored, dead_lettered(root / "dead.ndjson"))
            (root / "dead.ndjson").unlink(missing_ok=True)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(pools)
def check_s3_batch(pool: tuple[list[bytes], list[bytes], int]) -> None:
    lines = build_lines(pool[0], pool[1], pool[2], "s3")
    run_s3_batch(lines)
    seen["s3-batch"] += len(lines)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(pools)
def check_alerts(pool: tuple[list[bytes], list[bytes], int]) -> None:
    lines = build_lines(pool[0], pool[1], pool[2], "alerts")
    run_alerts(lines)
    seen["harmony-alerts"] += len(lines)


def test_s3_batch_stores_or_dead_letters_every_hostile_record_once() -> None:
    seen["s3-batch"] = 0
    check_s3_batch()
    assert seen["s3-batch"] >= MIN_LINES_TOTAL, seen


def test_harmony_alerts_emits_or_dead_letters_every_hostile_record_once() -> None:
    seen["harmony-alerts"] = 0
    check_alerts()
    assert seen["harmony-alerts"] >= MIN_LINES_TOTAL, seen
