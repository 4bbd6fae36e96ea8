"""Starting harmony-alerts' helper processes (pool.py), and starting the first one early.

A helper is a fresh interpreter: it needs ~0.08 s to import rendering before it can take a piece,
and this process needs ~0.1 s to import its command before it reads a byte. Started at the first
large read (pool.py), a helper's start-up follows ours, and for that tenth of a second one core
renders alone. When stdin is a regular file that is large enough to start a helper anyway, the
entry point starts one here instead (`start_early`), before it imports the command — so the two
start-ups overlap — and the pool takes it over (`take_early`); the render spec reaches a helper
through its task pipe, so one can start before the options are parsed. A pipe keeps the rule of
pool.py: no helper until a read that is large enough (a trickle never starts one).

Standard library only: this module is imported before everything else.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import stat
import struct
import subprocess
import sys

IN_BYTES = 4 << 20  # a piece of input with a line of up to --max-line-bytes; larger: the parent renders it
OUT_BYTES = 32 << 20  # alerts are ~2x their event, tiny events grow more; larger: the parent renders it
SLOT_BYTES = IN_BYTES + OUT_BYTES
SLOTS_PER_HELPER = 4  # pieces handed to a helper and not yet taken back: it never idles on us
SPEC = struct.Struct("<I")  # the render spec's length; the spec (JSON) follows: the first message
TASK = struct.Struct("<BIQ")  # slot, input bytes, now_ms
RESULT = struct.Struct("<BIIIIIQ")  # status, kept, bad, filtered, good, line count, blob bytes
OK, TOO_BIG, FAILED, READY = 0, 1, 2, 3
POOL_MIN_BYTES = 48 << 10  # a read this large (or of pool.POOL_MIN_LINES lines) starts the helpers
STOP_TIMEOUT_SECS = 5.0  # a helper ends at once when its pipes close, unless inside a huge piece
# A stop signal (systemd's SIGTERM to every process of the unit, Ctrl-C) is the parent's to handle:
# it drains the helpers' pieces, then closes their pipes. The helper starts with these blocked (the
# parent blocks them around the spawn; the mask survives exec), ignores them, then unblocks them,
# so one arriving while the new interpreter starts up is discarded instead of killing it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HELPER_CODE = (
    "import signal, sys\n"
    "stop = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)\n"
    "for number in stop:\n"
    "    signal.signal(number, signal.SIG_IGN)\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)\n"
    "from harmony_pipes.harmony_alerts.helper import main\n"
    "main(sys.argv[1:])\n"
)
# options (and their environment variables) after which the entry point starts no helper early:
# they choose no helper or another count, or end before reading (a helper started for nothing
# costs ~0.08 s of CPU); pool.py then starts helpers as usual
NOT_EARLY = frozenset({"--workers", "--strict", "--help", "-h", "--version"})
NOT_EARLY_ENV = ("HARMONY_ALERTS_WORKERS", "HARMONY_PIPES_STRICT")

# where a container's CPU limit is read (cgroup v2, then v1): a Kubernetes `limits.cpu: 1` leaves
# every host CPU in the affinity mask, but only one CPU's worth of time
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_CPU = "/sys/fs/cgroup/cpu"


def available_cpus(cgroup_cpu_max: str | os.PathLike[str] = CGROUP_CPU_MAX,
                   cgroup_v1_cpu: str | os.PathLike[str] = CGROUP_V1_CPU) -> float:  # fmt: skip
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = _read_text(cgroup_cpu_max).split()[:2]
    except (OSError, ValueError):
        try:
            quota = _read_text(os.path.join(cgroup_v1_cpu, "cpu.cfs_quota_us")).strip()
            period = _read_text(os.path.join(cgroup_v1_cpu, "cpu.cfs_period_us")).strip()
        except OSError:
            return cpus
    try:
        if quota not in ("max", "-1") and int(period) > 0:
            cpus = min(cpus, int(quota) / int(period))
    except ValueError:
        pass
    return cpus


def _read_text(path: str | os.PathLike[str]) -> str:
    with open(path) as file:
        return file.read()


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


class HelperProcess:
    """A started helper process (helper.py), its two pipes and its shared-memory slots. It
    imports rendering, then waits for `configure` (the render spec) before it says READY."""

    def __init__(self) -> None:
        self.slots: list[mmap.mmap] = []
        fds: list[int] = []  # the helper's ends: closed here once it has them
        try:
            for _ in range(SLOTS_PER_HELPER):
                fd = os.memfd_create("harmony-alerts-slot", os.MFD_CLOEXEC)
                fds.append(fd)
                os.ftruncate(fd, SLOT_BYTES)  # sparse: only what pieces touch takes memory
                self.slots.append(mmap.mmap(fd, SLOT_BYTES))
            task_r, self.task_fd = os.pipe()
            self.result_fd, result_w = os.pipe()
            fds += (task_r, result_w)
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # see STOP_SIGNALS
            try:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", HELPER_CODE, str(task_r), str(result_w), *map(str, fds[:-2])],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    pass_fds=fds,
                    process_group=0,  # Ctrl-C on a terminal is the parent's to handle, not ours
                )
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # one sent meanwhile arrives now
        finally:
            for fd in fds:
                os.close(fd)  # the helper has its copies; the mappings keep the slots
        self.pid = self.process.pid

    def configure(self, spec: bytes) -> None:
        """Send the render spec (`AlertsProcessor.render_spec`, as JSON): the helper's first message."""
        message = memoryview(SPEC.pack(len(spec)) + spec)
        while message:
            message = message[os.write(self.task_fd, message) :]

    def ready(self) -> bool:
        """True when the next result (or the helper's end) can be read without waiting."""
        return bool(select.select([self.result_fd], [], [], 0)[0])

    def shut(self, kill: bool = False) -> None:
        """Close its pipes (it exits at end of input, or on its next write) and reap it; `kill`:
        end it at once (it holds no work). Its slots are unmapped once no view of them is left."""
        if kill:
            self.process.kill()
        for fd in (self.task_fd, self.result_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:  # stuck in a piece: nothing of it is wanted any more
            self.process.kill()
            self.process.wait()
        for slot in self.slots:
            try:
                slot.close()
            except BufferError:  # a view of it is still alive (an error mid-write): the GC frees it
                pass


_early: HelperProcess | None = None


def start_early(argv: list[str], stdin_fd: int = 0) -> None:
    """Start one helper now (module doc) when the options leave the helper count to the machine,
    the machine has two CPUs for us, and stdin is a regular file with at least POOL_MIN_BYTES
    left to read. Any failure here is silent: pool.py starts its helpers as usual, and reports."""
    global _early
    if any(arg.partition("=")[0] in NOT_EARLY for arg in argv) or any(os.environ.get(n) for n in NOT_EARLY_ENV):
        return
    try:
        info = os.fstat(stdin_fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size - os.lseek(stdin_fd, 0, os.SEEK_CUR) < POOL_MIN_BYTES:
            return
        if available_cpus() < 2:
            return
        _early = HelperProcess()
    except (OSError, subprocess.SubprocessError):
        return


def take_early() -> HelperProcess | None:
    """The helper `start_early` started, for the pool to configure and use (once)."""
    global _early
    started, _early = _early, None
    return started


def discard_early() -> None:
    """End the helper `start_early` started when no pool took it (an input with too few lines to
    start one after all). (On a usage error, it reads the end of its task pipe and exits.)"""
    started = take_early()
    if started is not None:
        started.shut(kill=True)
