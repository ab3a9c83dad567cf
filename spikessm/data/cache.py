"""Decoded data cached beside its source, so slow parsing (PNG decoding, tokenising) runs once.

An entry is a dict of tensors and plain values, written with ``torch.save`` to a temporary file that
is then renamed into place (a crash never leaves half an entry), and read with
``torch.load(weights_only=True)`` (reading a cache never runs code). Where it lives:

1. ``<folder>/.spikessm-cache/`` in the data set's own folder, so it travels with the data;
2. ``$XDG_CACHE_HOME/spikessm/`` (default ``~/.cache/spikessm/``) when that folder is read-only.

The file name hashes the task, the options that shape the result and the folder's resolved location
(a relative and an absolute ``--data-dir`` name the same entry). The entry records a content hash of
its sources: BLAKE2b over every source file's bytes and its path within the folder, computed once per
file per load (the time it takes is printed once, on stderr). Any edit, even one that keeps size and
modification time (``cp -p``, ``rsync -t``, tar), changes the hash, and the entry is rebuilt and
overwritten. An entry is used only when its key, hash and structure all match: the caller passes a
``validate`` function that checks the loaded data (types, shapes, ranges) and raises on anything
else, so a damaged or crafted entry is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from spikessm.errors import UserError
from spikessm.files import save_tensors

log = logging.getLogger(__name__)

CACHE_DIR_NAME = ".spikessm-cache"
FORMAT = 2  # bump when a loader changes what it stores, to orphan old entries


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spikessm"


def content_hash(folder: Path, sources: Iterable[Path]) -> tuple[str, int, int]:
    """BLAKE2b of the sources' bytes, each with its path relative to ``folder`` (so the same folder
    named relatively or absolutely gives the same hash); also returns the number of files and bytes."""
    digest, files, size = hashlib.blake2b(digest_size=32), 0, 0
    for path in sorted(sources):
        try:
            with open(path, "rb") as f:
                file_digest = hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=32))
                size += f.tell()
        except FileNotFoundError:
            raise UserError(f"{path}: no such file, but the data set lists it") from None
        except IsADirectoryError:
            raise UserError(f"{path}: a directory, but the data set lists it as a file") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read it ({e.strerror})") from None
        digest.update(os.path.relpath(path, folder).encode(errors="surrogateescape") + b"\0")
        digest.update(file_digest.digest())
        files += 1
    return digest.hexdigest(), files, size


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def cached(name: str, folder: Path, sources: Iterable[Path], options: dict, build: Callable[[], Any],
           validate: Callable[[Any], None] | None = None) -> Any:
    """``build()``'s result, from the cache when ``sources`` are unchanged since it was stored.

    ``name`` names the task, ``folder`` is the data set's folder (the cache goes beside it), ``options``
    are the settings that change what ``build`` returns (they must be JSON-serialisable). ``validate``
    raises (any exception) when a loaded entry's data is not what ``build`` would return: such an
    entry is rebuilt.
    """
    key = json.dumps([name, FORMAT, str(folder.resolve()), options], sort_keys=True)
    filename = f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    started = time.perf_counter()
    stamp, files, size = content_hash(folder, sources)
    hashing = f"hashed {files} data file(s), {size / 1e6:.1f} MB, in {time.perf_counter() - started:.2f}s"
    places = [folder / CACHE_DIR_NAME / filename, user_cache_dir() / filename]
    for path in places:
        entry = _read(path)
        if entry is None or entry.get("fingerprint") != stamp or entry.get("key") != key:
            continue
        try:
            if validate is not None:
                validate(entry["data"])
        except Exception as error:  # noqa: BLE001 - whatever is wrong with it, it is rebuilt
            log.warning("ignoring cache %s: not the structure %s stores (%s); rebuilding", path, name,
                        str(error).splitlines()[0] if str(error) else type(error).__name__)
            continue
        _report(f"spikessm: {name}: read from the cache ({hashing} to check it)")
        return entry["data"]
    data = build()  # (an error in the data stops here: its one line is all the user sees)
    _report(f"spikessm: {name}: decoded and cached ({hashing} to key the cache)")
    for path in places:
        if _write(path, {"fingerprint": stamp, "key": key, "data": data}):
            log.info("cached %s in %s", name, path)
            break
    else:
        log.warning("could not write a cache for %s in %s; it will be rebuilt next time",
                    name, " or ".join(str(p.parent) for p in places))
    return data


def _report(line: str) -> None:
    """The one line a load prints about the cache, with the hashing time (rank 0 of torchrun only)."""
    if _is_rank0():
        print(line, file=sys.stderr, flush=True)


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, weights_only=True)
    except Exception as error:  # a damaged entry is rebuilt, not fatal
        log.warning("ignoring unreadable cache %s (%s)", path, error)
        return None
    if not isinstance(entry, dict) or "data" not in entry:
        log.warning("ignoring cache %s: not a cache entry", path)
        return None
    return entry


def _write(path: Path, entry: dict) -> bool:
    """Save atomically; False when the folder cannot be written."""
    try:
        save_tensors(entry, path)
        return True
    except OSError:
        return False
