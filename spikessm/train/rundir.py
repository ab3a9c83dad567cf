"""A run directory belongs to one run: a lock while it trains, and no silent overwriting.

- :class:`RunLock` takes ``<out>/.spikessm.lock`` with ``flock``: a second run into the same folder
  (``train --out D`` twice, or ``--resume D`` while D trains) stops at once with exit 2. The kernel
  drops the lock when the process ends however it ends (SIGKILL included), so a lock left by a dead
  process is stale and taken over without a word; a clean end also removes the file.
- :func:`claim` is what a new run calls: a folder holding another run's files (:data:`RUN_FILES`) is
  refused unless ``overwrite``; then :func:`replace` removes them (saying which) once the new run is
  built, just before its first write, so that a run that fails to start loses nothing.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from spikessm.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None

LOCK_NAME = ".spikessm.lock"
# what `spikessm train` (and `spikessm report`) write into a run directory
RUN_FILES = ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json", "tensorboard", "report")


def _cannot_write(out: Path, error: OSError) -> UserError:
    return UserError(f"cannot write the run directory {out}: {error.strerror or error} "
                     f"({error.filename or out}); choose another --out")


class RunLock:
    """An exclusive lock on a run directory, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.fd: int | None = None
        self.created = False  # the folder did not exist: removed again by release() if left empty

    def acquire(self) -> "RunLock":
        try:
            self.created = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # an existing file, a path under a file, a read-only parent
            raise _cannot_write(self.out, e) from None
        if not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file, not a directory; choose another --out")
        if fcntl is None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:  # read-only folder
                raise _cannot_write(self.out, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UserError(f"{self.out} is in use by another spikessm run (process {holder}); wait for "
                                "it to end, or choose another --out") from None
            try:  # the holder may have removed the file between our open and our lock: lock the new one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before unlocking: see the inode check in acquire
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None
        if self.created:  # a run that failed to start leaves no empty folder behind
            try:
                self.out.rmdir()
            except OSError:  # not empty: the run wrote into it
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_files(out: Path) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``out``."""
    return [name for name in RUN_FILES if (out / name).exists() or (out / name).is_symlink()]


def claim(out: Path, overwrite: bool) -> list[str]:
    """Check that ``out`` (locked by the caller) may take a new run: a :class:`UserError` when it holds
    another run's files, unless ``overwrite``. Returns the files :func:`replace` must remove."""
    found = run_files(out)
    if found and not overwrite:
        raise UserError(f"--out {out} holds another run's files ({', '.join(found)}); continue that run with "
                        f"--resume {out}, choose another --out, or replace it with --overwrite")
    return found


def replace(out: Path, found: list[str]) -> None:
    """Remove the previous run's ``found`` files (from :func:`claim`), saying so on stderr; called once
    the new run has loaded its data and built its model, just before it writes its first file."""
    if not found:
        return
    print(f"spikessm: --overwrite: removing the previous run's {', '.join(found)} from {out}", file=sys.stderr)
    for name in found:
        path = out / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as e:
            raise _cannot_write(out, e) from None
