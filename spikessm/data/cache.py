"""Decoded data cached beside its source, so slow parsing (PNG decoding, tokenising) runs once.

An entry is a dict of tensors and plain values, written with ``torch.save`` to a temporary file that
is then renamed into place (a crash never leaves half an entry), and read with
``torch.load(weights_only=True)`` (reading a cache never runs code). Where it lives:

1. ``<folder>/.spikessm-cache/`` in the data set's own folder, so it travels with the data;
2. ``$XDG_CACHE_HOME/spikessm/`` (default ``~/.cache/spikessm/``) when that folder is read-only.

The file name hashes the task, the options that shape the result and the folder's location. The
entry records a fingerprint of its sources (path, size, modification time); when a source changes,
is added or removed, the entry no longer matches and is rebuilt and overwritten.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from spikessm.errors import UserError
from spikessm.files import save_tensors

log = logging.getLogger(__name__)

CACHE_DIR_NAME = ".spikessm-cache"
FORMAT = 1  # bump when a loader changes what it stores, to orphan old entries


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spikessm"


def fingerprint(sources: Iterable[Path]) -> str:
    """A digest of the sources' paths, sizes and modification times (ns)."""
    digest = hashlib.sha256()
    for path in sorted(sources):
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise UserError(f"{path}: no such file, but the data set lists it") from None
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached(name: str, folder: Path, sources: Iterable[Path], options: dict, build: Callable[[], Any]) -> Any:
    """``build()``'s result, from the cache when ``sources`` are unchanged since it was stored.

    ``name`` names the task, ``folder`` is the data set's folder (the cache goes beside it), ``options``
    are the settings that change what ``build`` returns (they must be JSON-serialisable).
    """
    key = json.dumps([name, FORMAT, str(folder.resolve()), options], sort_keys=True)
    filename = f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    stamp = fingerprint(sources)
    places = [folder / CACHE_DIR_NAME / filename, user_cache_dir() / filename]
    for path in places:
        entry = _read(path)
        if entry is not None and entry.get("fingerprint") == stamp:
            return entry["data"]
    data = build()
    for path in places:
        if _write(path, {"fingerprint": stamp, "data": data}):
            log.info("cached %s in %s", name, path)
            break
    else:
        log.warning("could not write a cache for %s in %s; it will be rebuilt next time",
                    name, " or ".join(str(p.parent) for p in places))
    return data


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as error:  # a damaged entry is rebuilt, not fatal
        log.warning("ignoring unreadable cache %s (%s)", path, error)
        return None


def _write(path: Path, entry: dict) -> bool:
    """Save atomically; False when the folder cannot be written."""
    try:
        save_tensors(entry, path)
        return True
    except OSError:
        return False
