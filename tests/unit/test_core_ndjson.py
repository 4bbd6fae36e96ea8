"""The chunked line reader: line numbers, blank lines, oversized lines, idle callbacks."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from harmony_pipes._core.ndjson import OVERSIZE_HEAD_BYTES, LineReader, OversizedLine


def read_all(data: bytes, whole: bool = False, **kwargs) -> list[tuple[int, bytes | OversizedLine]]:
    """Every line with its number; `whole`: read with `batches(whole=True)`, whose unsplit
    blocks are split and every line numbered here (what harmony-alerts' pool does)."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        os.write(write_fd, data)
        os.close(write_fd)

    threading.Thread(target=feed).start()
    out = []
    for first, lines in LineReader(read_fd, **kwargs).batches(whole):
        if whole:
            assert first == 0, "whole reads leave numbering to the caller"
            first = len(out) + 1
            if type(lines) is bytes:
                lines = lines.split(b"\n")
        out.extend((first + i, line) for i, line in enumerate(lines))
    os.close(read_fd)
    return out


def test_lines_are_numbered_physically_and_last_line_needs_no_newline() -> None:
    got = read_all(b'{"a":1}\n\n{"b":2}\n{"c":3}')
    assert got == [(1, b'{"a":1}'), (2, b""), (3, b'{"b":2}'), (4, b'{"c":3}')]


def test_small_chunks_join_lines_across_reads() -> None:
    data = b"".join(b'{"n":%d}\n' % i for i in range(1000))
    got = read_all(data, chunk_bytes=7)
    assert [line for _, line in got] == [b'{"n":%d}' % i for i in range(1000)]
    assert got[-1][0] == 1000


def test_oversized_line_is_replaced_by_its_head_and_length() -> None:
    long_line = b'{"x":"' + b"a" * 5000 + b'"}'
    got = read_all(b'{"a":1}\n' + long_line + b'\n{"b":2}\n', max_line_bytes=1000, chunk_bytes=256)
    assert got[0] == (1, b'{"a":1}')
    number, marker = got[1]
    assert number == 2
    assert isinstance(marker, OversizedLine)
    assert marker.length_bytes == len(long_line)
    assert long_line.startswith(marker.head)
    assert got[2] == (3, b'{"b":2}')


def test_oversized_line_inside_one_chunk_is_detected() -> None:
    got = read_all(b"x" * 300 + b'\n{"ok":1}\n', max_line_bytes=100, chunk_bytes=4096)
    assert isinstance(got[0][1], OversizedLine) and got[0][1].length_bytes == 300
    assert got[1] == (2, b'{"ok":1}')


def test_an_idle_pipe_yields_empty_batches_so_the_caller_regains_control() -> None:
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        os.write(write_fd, b'{"a":1}\n')
        time.sleep(0.3)
        os.write(write_fd, b'{"b":2}\n')
        os.close(write_fd)

    threading.Thread(target=feed).start()
    batches = list(LineReader(read_fd, idle_secs=0.05).batches())
    os.close(read_fd)
    assert [line for _, batch in batches for line in batch] == [b'{"a":1}', b'{"b":2}']
    assert sum(1 for _, batch in batches if not batch) >= 2  # the quiet 0.3 s, in 0.05 s steps
    assert batches[-1][1] == [b'{"b":2}']


def test_the_caller_can_stop_at_an_idle_batch_without_waiting_for_eof() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"a":1}\n')
    lines = []
    for _, batch in LineReader(read_fd, idle_secs=0.05).batches():
        if not batch:
            break  # the writer never closes: only the idle batch lets us out
        lines.extend(batch)
    os.close(read_fd)
    os.close(write_fd)
    assert lines == [b'{"a":1}']


@pytest.mark.parametrize("seed", range(6))
def test_whole_reads_hold_the_same_lines_with_the_same_numbers(seed: int) -> None:
    """`batches(whole=True)` (reads left unsplit) gives the lines, numbers and oversized-line
    markers the split reads give: lines just under, at and over the limit, lines longer than a
    read, blank lines, no newline at the end. (An oversized line's head depends on where the
    pipe's reads happened to end, so only its bounds are checked.)"""
    rng = random.Random(seed)
    max_line = rng.choice([100, 257, 1000])
    lengths = [0, 1, max_line // 2, max_line - 1, max_line, max_line + 1, 3 * max_line, 40]
    lines = [bytes([97 + i % 26]) * rng.choice(lengths) for i in range(400)]
    data = b"\n".join(lines) + rng.choice([b"", b"\n"])
    chunk_bytes = rng.choice([64, 333, 4096, 1 << 16])
    if not data.endswith(b"\n") and not lines[-1]:
        lines.pop()  # an empty last line without its newline is no line
    expected = [(n, line if len(line) <= max_line else len(line)) for n, line in enumerate(lines, 1)]
    for whole in (False, True):
        got = read_all(data, whole=whole, max_line_bytes=max_line, chunk_bytes=chunk_bytes)
        assert [(n, line if type(line) is bytes else line.length_bytes) for n, line in got] == expected
        for n, line in got:
            if type(line) is OversizedLine:  # its head: what was read of it when it went over
                head = line.head
                assert len(head) >= min(OVERSIZE_HEAD_BYTES, max_line + 1) and lines[n - 1].startswith(head)


def test_a_whole_read_comes_unsplit_and_one_that_may_hold_a_long_line_comes_split() -> None:
    def batches(data: bytes, chunk_bytes: int) -> list:
        read_fd, write_fd = os.pipe()
        os.write(write_fd, data)
        os.close(write_fd)
        got = list(LineReader(read_fd, max_line_bytes=50, chunk_bytes=chunk_bytes).batches(whole=True))
        os.close(read_fd)
        return got

    # a read's complete lines come as one bytes; its last line waits for its end
    # (in this mode lines are numbered by the caller: the reader gives 0)
    first, (_, [oversized]), last = batches(b"a\n\nbb\n" + b"x" * 60 + b"\ncc", 8)
    assert first == (0, b"a\n\nbb") and last == (0, [b"cc"])
    assert oversized.length_bytes == 60
    # 25 bytes (half the limit) without a newline: looked at line by line, and found within it
    assert batches(b"a\n" + b"x" * 49 + b"\ncc\n", 64) == [(0, [b"a", b"x" * 49, b"cc"])]
    assert batches(b"a\n" + b"x" * 20 + b"\ncc\n", 64) == [(0, b"a\n" + b"x" * 20 + b"\ncc")]
