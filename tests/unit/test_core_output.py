"""The batched writer: batches, stale flushes and a quiet closed pipe."""

from __future__ import annotations

import os

import pytest

from harmony_pipes._core.errors import OutputClosed
from harmony_pipes._core.output import BatchWriter


def test_lines_are_held_until_a_flush_then_written_in_one_batch() -> None:
    read_fd, write_fd = os.pipe()
    writer = BatchWriter(write_fd, max_buffer_bytes=1 << 20)
    writer.write(b'{"a":1}')
    writer.write(b'{"b":2}')
    assert writer.pending_lines == 2
    writer.flush()
    os.close(write_fd)
    assert os.read(read_fd, 100) == b'{"a":1}\n{"b":2}\n'
    assert (writer.lines_written, writer.bytes_written) == (2, 16)
    os.close(read_fd)


def test_buffer_limit_forces_a_flush() -> None:
    read_fd, write_fd = os.pipe()
    writer = BatchWriter(write_fd, max_buffer_bytes=20)
    writer.write(b"x" * 25)
    assert writer.pending_lines == 0
    os.close(write_fd)
    assert os.read(read_fd, 100) == b"x" * 25 + b"\n"
    os.close(read_fd)


def test_stale_lines_are_flushed_by_time() -> None:
    now = [0.0]
    read_fd, write_fd = os.pipe()
    writer = BatchWriter(write_fd, clock=lambda: now[0])
    writer.write(b"{}")
    writer.flush_if_stale(0.2)
    assert writer.pending_lines == 1
    now[0] = 0.25
    writer.flush_if_stale(0.2)
    assert writer.pending_lines == 0
    os.close(write_fd)
    os.close(read_fd)


def test_closed_reader_becomes_output_closed() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    writer = BatchWriter(write_fd)
    writer.write(b"{}")
    with pytest.raises(OutputClosed):
        writer.flush()
    os.close(write_fd)
