"""The helper process of pool.py: renders chunks of events into alerts until its parent ends.

Started by pool.py (`HELPER_CODE`: stop signals ignored before anything is imported, then
`main(SPEC, TASK_FD, RESULT_FD, SLOT_FD...)`), a fresh interpreter that imports only rendering
(orjson, the normalizer, the formats): about 15 MB, where a fork of the parent would carry its
30 MB into the peak memory of the pair. The parent's stop signals are not ours: the parent
drains, then closes the task pipe, and end of file ends us.

Each slot is a shared-memory file: the chunk's lines at offset 0, the rendered chunk at
`IN_BYTES` (chunks.Chunk.pack_into). The pipes carry only `TASK` and `RESULT` messages; the
first `RESULT` (status `READY`) says the imports are done, so the parent renders everything
itself until then instead of waiting ~0.1 s for a helper that is still starting up.
"""

from __future__ import annotations

import mmap
import os
import struct

import orjson

from .chunks import Render, render_chunk
from .render import make_render

IN_BYTES = 4 << 20  # a piece of input with a line of up to --max-line-bytes; larger: the parent renders it
OUT_BYTES = 32 << 20  # alerts are ~2x their event, tiny events grow more; larger: the parent renders it
SLOT_BYTES = IN_BYTES + OUT_BYTES
TASK = struct.Struct("<BIQ")  # slot, input bytes, now_ms
RESULT = struct.Struct("<BIIIIIQ")  # status, kept, bad, filtered, good, line count, blob bytes
OK, TOO_BIG, FAILED, READY = 0, 1, 2, 3


def read_exact(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at end of file (a short message only from a dead writer)."""
    data = b""
    while len(data) < size:
        try:
            part = os.read(fd, size - len(data))
        except InterruptedError:
            continue
        if not part:
            return None
        data += part
    return data


def serve(task_fd: int, result_fd: int, render: Render, slots: list[mmap.mmap]) -> None:
    """Render chunks until the parent closes the task pipe."""
    outputs = [memoryview(slot)[IN_BYTES:] for slot in slots]
    os.write(result_fd, RESULT.pack(READY, 0, 0, 0, 0, 0, 0))
    while True:
        head = read_exact(task_fd, TASK.size)
        if head is None:
            return
        slot, size, now_ms = TASK.unpack(head)
        try:
            chunk = render_chunk(slots[slot][:size].split(b"\n"), render, now_ms)
            if chunk.packed_bytes() > OUT_BYTES:
                answer = RESULT.pack(TOO_BIG, 0, 0, 0, 0, 0, 0)
            else:
                answer = RESULT.pack(OK, *chunk.pack_into(outputs[slot]))
        except Exception:  # the parent renders this chunk itself and reports what it meets
            answer = RESULT.pack(FAILED, 0, 0, 0, 0, 0, 0)
        os.write(result_fd, answer)


def main(argv: list[str]) -> None:
    spec, task_fd, result_fd, *slot_fds = argv
    slots = [mmap.mmap(int(fd), SLOT_BYTES) for fd in slot_fds]
    try:
        serve(int(task_fd), int(result_fd), make_render(orjson.loads(spec)), slots)
    except OSError:  # the parent went away mid-answer
        pass
