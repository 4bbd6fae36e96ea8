"""State on disk: a locked directory of atomically written, versioned files.

Cursors, dedupe keys and spools live in `--state-dir`. Each file is written to a temp file,
fsynced, renamed over the old one and the directory fsynced, so a kill -9 leaves either the old
or the new version, never half of one. Files are 0600 and directories 0700 — every level we
create, whatever the umask — because state can reveal tenant names. An exclusive `flock` on
`.lock` stops two instances sharing one directory, and `.owner` names the command a directory
belongs to, so one command never runs on another's state (a directory without it, from an
older version, is adopted).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, PipesError, RuntimeFailure

FILE_MODE = 0o600
DIR_MODE = 0o700
OWNER_FILE = ".owner"
SHARED_ROOT_HINT = "HARMONY_PIPES_STATE_DIR"


def ensure_private_dir(path: Path) -> Path:
    """`path` as a 0700 directory; every parent it creates is 0700 too (`mkdir(parents=True)`
    would give them the umask's mode, e.g. 0755). Existing parents are left as they are."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another process
            directory.mkdir(mode=DIR_MODE)
        with contextlib.suppress(OSError):  # mkdir's mode is cut by the umask; chmod is exact
            os.chmod(directory, DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    with contextlib.suppress(OSError):
        os.chmod(path, DIR_MODE)
    return path


def claim_dir(path: Path, owner: str) -> None:
    """Make sure `path` is `owner`'s state directory: refuse one that names another command,
    adopt one that names none (created by an older version, or by `owner` just now)."""
    marker = path / OWNER_FILE
    try:
        found = marker.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        found = ""
    except OSError as exc:
        raise ConfigError(
            f"cannot read {marker}: {exc.strerror}", "make the state directory readable by this user"
        ) from None
    if found and found != owner:
        raise ConfigError(
            f"state directory {path} belongs to {found}, not {owner}",
            f"give {owner} its own --state-dir (with {SHARED_ROOT_HINT} each command uses its own subfolder)",
        )
    if not found:
        # not fatal: a full disk must not stop a start that would free space (the check is
        # repeated on the next start)
        with contextlib.suppress(PipesError):
            atomic_write_bytes(marker, f"{owner}\n".encode())


def check_writable(path: Path) -> None:
    """Create and remove a probe file, so a read-only directory fails at start, in one line."""
    probe = path / f".probe.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError as exc:
        raise ConfigError(
            f"state directory {path} is not writable ({exc.strerror})",
            "make it writable by this user, or choose another --state-dir",
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()


def claim_state_dir(path: Path, owner: str) -> Path:
    """A state directory that holds other state dirs (s3-batch's --state-dir holds its spool):
    created 0700, writable, and `owner`'s. No lock: the directories inside hold one each."""
    try:
        ensure_private_dir(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot create state directory {path}: {exc.strerror}",
            "choose a writable --state-dir (env HARMONY_PIPES_STATE_DIR)",
        ) from None
    check_writable(path)
    claim_dir(path, owner)
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


def read_versioned_file(path: Path) -> tuple[Any, Any] | None:
    """`(format_version, data)` of a versioned state file, or None when it does not exist.

    Needs no lock and creates nothing, so a read-only reader (a report) can look at the state of
    a running command. A file that is not a versioned JSON document is a ConfigError with the fix.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read state file {path}: {exc.strerror or exc}",
            "run as the user that owns the state directory, or fix its permissions",
        ) from exc
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            f"state file {path} is corrupt", "move it away to start fresh (state will be rebuilt)"
        ) from exc
    if not isinstance(doc, dict) or "format_version" not in doc:
        raise ConfigError(
            f"state file {path} is corrupt (not a versioned state document)",
            "move it away to start fresh (state will be rebuilt)",
        )
    return doc.get("format_version"), doc.get("data")


class StateDir:
    """A private, locked directory holding one command's state files."""

    def __init__(self, path: str | os.PathLike[str], *, lock: bool = True, owner: str | None = None) -> None:
        self.path = Path(path)
        try:
            ensure_private_dir(self.path)
        except OSError as exc:
            raise ConfigError(
                f"cannot create state directory {self.path}: {exc.strerror}",
                "choose a writable --state-dir (env HARMONY_PIPES_STATE_DIR)",
            ) from exc
        check_writable(self.path)
        self._lock_fd: int | None = None
        if lock:
            self._acquire_lock()
        if owner is not None:
            try:
                claim_dir(self.path, owner)
            except ConfigError:
                self.close()
                raise

    def _acquire_lock(self) -> None:
        lock_path = self.path / ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise ConfigError(
                f"state directory {self.path} is not usable: cannot open {lock_path.name} ({exc.strerror})",
                "make it writable by this user, or choose another --state-dir",
            ) from None
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
        found = self.read_versioned(name)
        if found is None:
            return None
        version, data = found
        if version != format_version:
            raise ConfigError(
                f"state file {self.file(name)} has format version {version}, this version reads {format_version}",
                "use the matching harmony-pipes version or move the file away",
            )
        return data

    def read_versioned(self, name: str) -> tuple[Any, Any] | None:
        """`(format_version, data)` of a state file, None when there is none yet; for a command
        that migrates older formats itself instead of refusing them."""
        return read_versioned_file(self.file(name))

    def read_json_any(self, name: str, format_versions: tuple[int, ...]) -> tuple[int, Any] | None:
        """(format_version, data) of a state file written in one of `format_versions` (so the
        caller can migrate an older one), or None when there is none yet; any other version is
        refused (exit 2) rather than misread."""
        found = self.read_versioned(name)
        if found is None:
            return None
        version, data = found
        if version not in format_versions:
            raise ConfigError(
                f"state file {self.file(name)} has format version {version}, this version reads {max(format_versions)}",
                "use the matching harmony-pipes version or move the file away",
            )
        return version, data

    def write_json(self, name: str, data: Any, format_version: int) -> None:
        payload = orjson.dumps({"format_version": format_version, "data": data})
        atomic_write_bytes(self.file(name), payload)

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
