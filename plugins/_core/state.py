"""State on disk: a locked directory of atomically written, versioned files.

Cursors, dedupe keys and spools live in `--state-dir`. Each file is written to a temp file,
fsynced, renamed over the old one and the directory fsynced, so a kill -9 leaves either the old
or the new version, never half of one. Files are 0600 and directories 0700 because state can
reveal tenant names. An exclusive `flock` on `.lock` stops two instances sharing one directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, RuntimeFailure

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        os.chmod(path, DIR_MODE)
    except OSError:
        pass
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: a short write (nearly full disk, file size limit) is continued, so the
    next write reports the real error (ENOSPC, EFBIG) instead of bytes vanishing."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")  # concurrent writers never share
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, exc) from exc


def disk_error(path: Path, exc: OSError) -> RuntimeFailure:
    """One readable line for the disk failures users hit: full disk, permissions, read-only fs."""
    if exc.errno == errno.ENOSPC:
        return RuntimeFailure(f"cannot write {path}: disk full", "free space or point --state-dir elsewhere")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RuntimeFailure(f"cannot write {path}: {exc.strerror}", "make the state directory writable by this user")
    return RuntimeFailure(f"cannot write {path}: {exc.strerror or exc}", "check the state directory")


class StateDir:
    """A private, locked directory holding one command's state files."""

    def __init__(self, path: str | os.PathLike[str], *, lock: bool = True) -> None:
        self.path = Path(path)
        try:
            ensure_private_dir(self.path)
        except OSError as exc:
            raise ConfigError(
                f"cannot create state directory {self.path}: {exc.strerror}",
                "choose a writable --state-dir (env HARMONY_PIPES_STATE_DIR)",
            ) from exc
        self._lock_fd: int | None = None
        if lock:
            self._acquire_lock()

    def _acquire_lock(self) -> None:
        lock_path = self.path / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"state directory {self.path} is in use by another running instance",
                "give each instance its own --state-dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def file(self, name: str) -> Path:
        return self.path / name

    def subdir(self, name: str) -> Path:
        return ensure_private_dir(self.path / name)

    def read_json(self, name: str, format_version: int) -> Any | None:
        """The `data` of a versioned state file, or None when there is none yet.

        A file from a newer format is refused (exit 2) rather than silently misread.
        """
        found = self.read_json_any(name, (format_version,))
        return None if found is None else found[1]

    def read_json_any(self, name: str, format_versions: tuple[int, ...]) -> tuple[int, Any] | None:
        """(format_version, data) of a state file written in one of `format_versions` (so the
        caller can migrate an older one), or None when there is none yet."""
        path = self.file(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"state file {path} is corrupt", "move it away to start fresh (state will be rebuilt)"
            ) from exc
        found = doc.get("format_version") if isinstance(doc, dict) else None
        if found not in format_versions:
            raise ConfigError(
                f"state file {path} has format version {found}, this version reads {max(format_versions)}",
                "use the matching harmony-pipes version or move the file away",
            )
        return found, doc.get("data")

    def write_json(self, name: str, data: Any, format_version: int) -> None:
        payload = orjson.dumps({"format_version": format_version, "data": data})
        atomic_write_bytes(self.file(name), payload)

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
