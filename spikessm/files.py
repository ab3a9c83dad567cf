"""Files that must survive crashes and strangers: atomic writes, and tensor files loaded without code.

Every file spikessm saves (checkpoints, caches, SDN weights, run logs) is written to a temporary name
in the same folder, flushed to disk and renamed into place, so a crash mid-save leaves the previous
file intact. Every tensor file it reads goes through ``torch.load(weights_only=True)``, whose
unpickler refuses anything that would import or call code.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from spikessm.errors import UserError


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes; never leaves half a file.

    The parent folder is created if needed; on failure the temporary file is removed and the error
    propagates (the old file, if any, is untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file for its owner alone (0600); give it the mode open() would (0666
        # less the umask), so that others read a checkpoint or run log as they would any other file.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # (a full disk, a read-only folder): name the file meant, not the temporary one
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_dir(folder: str | Path, option: str = "--out") -> Path:
    """Create ``folder`` if needed and check that files can be created in it, before any long work
    whose result would go there: an existing file, a path under a file, a read-only folder or a full
    disk is a one-line :class:`UserError` naming ``option`` and the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(20, "not a directory", str(folder))
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".spikessm-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{option} {folder}: cannot write there ({e.strerror or e})") from None
    return folder


def save_tensors(obj, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path``, atomically."""
    write_atomically(path, lambda f: torch.save(obj, f))


def load_tensors(path: str | Path, what: str = "tensor", map_location="cpu"):
    """What ``torch.save`` wrote to ``path``, loaded without running code, or a one-line UserError.

    ``what`` names the kind of file in the messages ("checkpoint", "Surrogate Dynamic Network weights").
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # the weights-only unpickler met an import: code or foreign objects
            raise UserError(f"{what} {path} refused: it holds pickled objects other than plain "
                            "data (possibly code), so it was not loaded") from None
        raise UserError(f"{what} {path} is corrupt or not a {what} file") from None
    except Exception as e:  # noqa: BLE001 - arbitrary bytes make the unpickler fail in arbitrary ways
        raise UserError(f"{what} {path} is truncated or not a {what} file ({type(e).__name__})") from None
