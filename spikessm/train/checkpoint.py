"""Checkpoints: plain dicts of tensors and builtins, written atomically, loaded without running code.

Saved and loaded through :mod:`spikessm.files`: a checkpoint from a stranger cannot run code here, and
a crash mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from spikessm.errors import UserError
from spikessm.files import load_tensors, save_tensors

FORMAT = "spikessm-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict) -> None:
    save_tensors({"format": FORMAT, "version": VERSION, **payload}, path)


def first_nonfinite(tensors: dict) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` (a state dict) holding a NaN or an
    infinity, or None when all are finite: no checkpoint is written with such weights."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()) and not torch.isfinite(t).all():
            return name
    return None


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint dict, or a one-line :class:`UserError` saying why the file is unusable."""
    ckpt = load_tensors(path, "checkpoint", map_location)
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
