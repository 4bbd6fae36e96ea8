"""The helper process of pool.py: renders chunks of events into alerts until its parent ends.

Started by spawn.py (`HELPER_CODE`: stop signals ignored before anything is imported, then
`main(TASK_FD, RESULT_FD, SLOT_FD...)`), a fresh interpreter that imports only rendering
(orjson, the normalizer, the formats): about 15 MB, where a fork of the parent would carry its
30 MB into the peak memory of the pair. The parent's stop signals are not ours: the parent
drains, then closes the task pipe, and end of file ends us.

Each slot is a shared-memory file: the chunk's lines at offset 0, the rendered chunk at
`IN_BYTES` (chunks.Chunk.pack_into). The task pipe carries the render spec first (`SPEC`: it may
be started before its parent has parsed its options, spawn.py), then `TASK` messages; the result
pipe carries `RESULT` messages, the first of them (status `READY`) once the imports are done and
the spec read, so the parent renders everything itself until then instead of waiting ~0.1 s for a
helper that is still starting up.
"""

from __future__ import annotations

import mmap
import os

import orjson

from .chunks import Render, render_chunk
from .render import make_render
from .spawn import FAILED, IN_BYTES, OK, OUT_BYTES, READY, RESULT, SLOT_BYTES, SPEC, TASK, TOO_BIG, read_exact


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
    task_fd, result_fd, *slot_fds = map(int, argv)
    slots = [mmap.mmap(fd, SLOT_BYTES) for fd in slot_fds]
    try:
        head = read_exact(task_fd, SPEC.size)
        spec = None if head is None else read_exact(task_fd, SPEC.unpack(head)[0])
        if spec is None:  # the parent ended (or chose no pool) before it configured us
            return
        serve(task_fd, result_fd, make_render(orjson.loads(spec)), slots)
    except OSError:  # the parent went away mid-answer
        pass
