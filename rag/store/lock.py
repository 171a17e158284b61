"""One writer at a time per index folder: an advisory lock (``flock`` on POSIX, ``msvcrt``
on Windows) that the operating system releases when the holder dies, so a killed ingest
never leaves a stale lock behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import TracebackType

from rag.errors import IndexLockedError, IndexWriteError

LOCK_FILE = ".write.lock"

if sys.platform == "win32":  # no fcntl there; imported here so `import rag` works on Windows
    import msvcrt

    def _try_lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError from None

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _read_holder(fd: int) -> str:
        return "unknown"  # the locked byte cannot be read on Windows

    def _write_holder(fd: int) -> None:
        pass
else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _read_holder(fd: int) -> str:
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"

    def _write_holder(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)


class WriteLock:
    """Held while a generation is written; ``IndexLockedError`` (naming the holder's PID)
    when another process holds it for longer than ``timeout`` seconds."""

    def __init__(self, folder: Path, timeout: float = 0.0) -> None:
        self.path = folder / LOCK_FILE
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> WriteLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IndexWriteError(f"cannot write to the index folder {self.path.parent} "
                                  f"({exc.strerror or exc})") from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                _try_lock(fd)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise IndexLockedError(
                        f"index {self.path.parent} is locked by PID {holder} (another ingest or delete "
                        f"is running); try again when it has finished") from None
                time.sleep(0.1)
        _write_holder(fd)
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


def remove_if_only_lock(folder: Path) -> None:
    """Remove ``folder`` if a writer created it and left nothing in it but the lock file
    (every input failed, or the write was cancelled): no empty index stays behind."""
    try:
        if [p.name for p in folder.iterdir()] == [LOCK_FILE]:
            (folder / LOCK_FILE).unlink()
            folder.rmdir()
    except OSError:
        pass  # another writer arrived meanwhile; the folder is theirs now
