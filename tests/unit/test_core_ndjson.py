"""The chunked line reader: line numbers, blank lines, oversized lines, idle callbacks."""

from __future__ import annotations

import os
import threading
import time

from harmony_pipes._core.ndjson import LineReader, OversizedLine


def read_all(data: bytes, **kwargs) -> list[tuple[int, bytes | OversizedLine]]:
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        os.write(write_fd, data)
        os.close(write_fd)

    threading.Thread(target=feed).start()
    out = []
    for first, lines in LineReader(read_fd, **kwargs).batches():
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
