"""Task ``tensors``: your own data from one file, no code needed (``--set data.path=FILE``).

The file is a NumPy ``.npz`` (read without pickle) or a ``.pt`` dict of tensors (read with
``torch.load(weights_only=True)``) holding:

- ``x``: ``(N, L, D)`` floats (D features per step) or ``(N, L)`` integer token ids >= 0;
- ``y``: ``(N,)`` integer class labels (classification), or ``(N, L)`` integer next-token targets
  with ``x`` ids (language modelling; ``y[i, t]`` is the token after ``x[i, t]``);
- optional ``lengths``: ``(N,)`` integers in [1, L], the valid steps of each sequence (the rest is
  padding: never pooled, never scored);
- optional ``split``: ``(N,)`` integers, 0 train, 1 validation, 2 test; without it a seeded random
  split (``data.val_fraction``, ``data.test_fraction``, ``data.split_seed``) that does not change
  with the training seed;
- optional ``n_classes`` (classes; default max(y) + 1) and ``vocab_size`` (ids; default the largest
  id + 1), scalars.

Anything else in the file, a missing key, a wrong dtype or shape, sizes that disagree, labels out of
range or non-finite values is a one-line error naming the file and the key.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from spikessm.data.base import Splits, Task, builtin
from spikessm.data.common import random_split
from spikessm.errors import UserError
from spikessm.files import load_tensors

KEYS = ("x", "y", "lengths", "split", "n_classes", "vocab_size")
SPLIT_NAMES = ("train", "val", "test")


def _read(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".pt":
        data = load_tensors(path, "tensors file")
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise UserError(f"{path}: a .pt file for task tensors must hold a dict of named tensors")
        out = {}
        for key, value in data.items():
            if isinstance(value, torch.Tensor):
                out[key] = value.detach().cpu().numpy()
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = np.asarray(value)
            else:
                raise UserError(f"{path}: key {key!r}: expected a tensor, got {type(value).__name__}")
        return out
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as e:  # object arrays need pickle, which is refused
        raise UserError(f"{path}: unreadable .npz ({str(e).splitlines()[0]})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz file ({type(e).__name__})") from None


def _scalar(path: Path, arrays: dict, key: str) -> int | None:
    if key not in arrays:
        return None
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in "iu" or int(value) < 1:
        raise UserError(f"{path}: key {key!r}: expected a positive integer scalar, got {value.dtype} of shape "
                        f"{value.shape}")
    return int(value)


def _integers(path: Path, key: str, value: np.ndarray) -> np.ndarray:
    if value.dtype.kind not in "iu":
        raise UserError(f"{path}: key {key!r}: expected integers, got {value.dtype}")
    return value.astype(np.int64)


def read_tensors_file(path: Path) -> dict[str, Any]:
    """The validated contents of a ``tensors`` file: x, y (torch), lengths, split (or None), and
    kind, n_classes, d_input, vocab_size."""
    arrays = _read(path)
    unknown = sorted(set(arrays) - set(KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; a tensors file holds {', '.join(KEYS)}")
    for key in ("x", "y"):
        if key not in arrays:
            raise UserError(f"{path}: missing key {key!r} (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 3 and x.dtype.kind == "f":
        ids = False
        if not np.isfinite(x).all():
            raise UserError(f"{path}: key 'x': holds NaN or infinite values")
    elif x.ndim == 2:
        x, ids = _integers(path, "x", x), True
        if x.size and x.min() < 0:
            raise UserError(f"{path}: key 'x': token ids must be >= 0; found {x.min()}")
    else:
        raise UserError(f"{path}: key 'x': expected (N, L, D) floats or (N, L) integer ids, got {x.dtype} of "
                        f"shape {x.shape}")
    n, length = x.shape[0], x.shape[1]
    if n == 0 or length == 0:
        raise UserError(f"{path}: key 'x': no data (shape {x.shape})")
    y = _integers(path, "y", y)
    if y.shape == (n,):
        kind = "classify"
    elif y.shape == (n, length) and ids:
        kind = "lm"
    else:
        want = f"({n},) labels" + (f" or ({n}, {length}) next-token targets" if ids else "")
        raise UserError(f"{path}: key 'y': expected {want}, got shape {y.shape}")
    if y.min() < 0:
        raise UserError(f"{path}: key 'y': labels must be >= 0; found {y.min()}")
    vocab_size = None
    if ids:
        largest = int(max(x.max(), y.max() if kind == "lm" else 0))
        vocab_size = _scalar(path, arrays, "vocab_size") or largest + 1
        if largest >= vocab_size:
            raise UserError(f"{path}: key 'vocab_size': {vocab_size}, but the file holds id {largest}")
    elif "vocab_size" in arrays:
        raise UserError(f"{path}: key 'vocab_size': only for token ids; this x holds real-valued features")
    if kind == "lm":
        n_classes = vocab_size
    else:
        n_classes = _scalar(path, arrays, "n_classes") or int(y.max()) + 1
        if y.max() >= n_classes:
            raise UserError(f"{path}: key 'y': label {y.max()} out of range for n_classes={n_classes}")
    lengths = split = None
    if "lengths" in arrays:
        lengths = _integers(path, "lengths", arrays["lengths"])
        if lengths.shape != (n,):
            raise UserError(f"{path}: key 'lengths': expected shape ({n},), got {lengths.shape}")
        if lengths.min() < 1 or lengths.max() > length:
            raise UserError(f"{path}: key 'lengths': values must lie in [1, {length}]; found {lengths.min()} to "
                            f"{lengths.max()}")
    if "split" in arrays:
        split = _integers(path, "split", arrays["split"])
        if split.shape != (n,):
            raise UserError(f"{path}: key 'split': expected shape ({n},), got {split.shape}")
        if not np.isin(split, (0, 1, 2)).all():
            raise UserError(f"{path}: key 'split': values must be 0 (train), 1 (val) or 2 (test)")
        for code, name in enumerate(SPLIT_NAMES):
            if not (split == code).any():
                raise UserError(f"{path}: key 'split': no sample is marked {code} ({name})")
    x_t = torch.from_numpy(x) if ids else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return {"x": x_t, "y": torch.from_numpy(y), "lengths": None if lengths is None else torch.from_numpy(lengths),
            "split": split, "kind": kind, "n_classes": n_classes, "d_input": None if ids else x.shape[2],
            "vocab_size": vocab_size}


class TrimmedSequences(Dataset):
    """Sample i is ``(x[i, :lengths[i]], y[i])`` (y trimmed too when it is a sequence)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor):
        self.x, self.y, self.lengths = x, y, lengths

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        n = int(self.lengths[i])
        return self.x[i, :n], (self.y[i, :n] if self.y.dim() == 2 else self.y[i])


def pad_collate_xy(samples):
    """Right-pad x (and sequence targets y) with zeros to the longest sample; lengths ``(B,)``."""
    xs, ys = zip(*samples)
    x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
    y = torch.nn.utils.rnn.pad_sequence(ys, batch_first=True) if ys[0].dim() else torch.stack(ys)
    return x, y, torch.tensor([len(s) for s in xs])


def load_tensors_task(options: dict, data_dir: Path | None) -> Splits:
    if not options.get("path"):
        raise UserError("task 'tensors' needs a file: --set data.path=FILE.npz (or .pt) with keys x and y")
    path = Path(options["path"]).expanduser()
    if not path.is_absolute() and data_dir is not None and (data_dir / path).is_file():
        path = data_dir / path
    if not path.is_file():
        raise UserError(f"task 'tensors': no file at {path}")
    if path.suffix not in (".npz", ".pt"):
        raise UserError(f"task 'tensors': {path} must be a .npz or .pt file")
    data = read_tensors_file(path)
    n = len(data["x"])
    if data["split"] is not None:
        parts = [torch.from_numpy(np.flatnonzero(data["split"] == code)) for code in range(3)]
        how = "the file's split key"
    else:
        val, test = float(options["val_fraction"]), float(options["test_fraction"])
        if not (0 < val and 0 < test and val + test < 1):
            raise UserError(f"data.val_fraction={val} and data.test_fraction={test} must be > 0 with a sum below 1")
        seed = int(options["split_seed"])
        parts = random_split(n, (1 - val - test, val, test), seed)
        if any(len(p) == 0 for p in parts):
            raise UserError(f"{path}: {n} samples are too few for a train/val/test split of "
                            f"{1 - val - test:g}/{val:g}/{test:g}; add a split key or more samples")
        how = f"random {1 - val - test:g}/{val:g}/{test:g} (seed {seed})"
    x, y, lengths = data["x"], data["y"], data["lengths"]
    if lengths is None:
        datasets = [TensorDataset(x[p], y[p]) for p in parts]
        collate = None
    else:
        datasets = [TrimmedSequences(x[p], y[p], lengths[p]) for p in parts]
        collate = pad_collate_xy
    return Splits(*datasets, n_classes=data["n_classes"], d_input=data["d_input"], vocab_size=data["vocab_size"],
                  collate=collate, kind=data["kind"], seq_len=x.shape[1],
                  info={"source": str(path), "split": how})


# Nominal length and classes 0: the file decides them, and whether it is classification or an LM.
builtin(Task("tensors", "your own .npz/.pt file with x, y (--set data.path=FILE); classify or lm, shapes "
             "from the file", 0, 0,
             "classify", load_tensors_task, options={"path": "", "val_fraction": 0.1, "test_fraction": 0.1,
                                                     "split_seed": 0}))
