"""Checkpoints: plain dicts of tensors and builtins, written atomically, loaded without running code.

``torch.load(weights_only=True)`` refuses any pickle that would import or call something, so a
checkpoint from a stranger cannot run code here; the file is written to a temporary name and
renamed into place, so a crash mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from spikessm.errors import UserError

FORMAT = "spikessm-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint dict, or a one-line :class:`UserError` saying why the file is unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # the weights-only unpickler met an import: code or foreign objects
            raise UserError(f"checkpoint {path} refused: it holds pickled objects other than plain "
                            "data (possibly code), so it was not loaded") from None
        raise UserError(f"checkpoint {path} is corrupt or not a checkpoint file") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise UserError(f"checkpoint {path} is truncated or not a checkpoint file ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} was not written by spikessm")
    return ckpt


def rng_state() -> dict:
    """The torch, numpy and Python RNG states as checkpoint-safe values (tensors, tuples, ints)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        # the current GPU's only: each process of a multi-GPU run owns one (and touching the
        # others would create a CUDA context on each)
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
