"""One writer at a time per index folder: an advisory ``flock`` that the
kernel releases when the holder dies, so a killed ingest never leaves a stale
lock behind."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from rag.errors import IndexLockedError

LOCK_FILE = ".write.lock"


class WriteLock:
    def __init__(self, folder: Path, timeout: float = 0.0) -> None:
        self.path = folder / LOCK_FILE
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> WriteLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise IndexLockedError(
                        f"index {self.path.parent} is locked by PID {holder} (another ingest or delete "
                        f"is running); try again when it has finished") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
