"""Helpers every file-backed task shares: finding the data, reporting bad lines, splitting, tokens.

One of each, so that every loader searches, fails, splits and tokenises the same way:

- :func:`find_data` looks for a data set under the data directory in each accepted layout and, if none
  holds it, raises one :class:`UserError` saying what was searched and where the data comes from.
- :func:`bad_line` is the error for a malformed line: ``FILE:LINE: problem``.
- :func:`split_sizes`, :func:`random_split`, :func:`hold_out_val` make splits; the random ones have
  their own seed, so the test set does not change with the training seed.
- :class:`Vocab` maps tokens to ids with ``<pad>`` = 0; byte-level tasks store raw bytes and shift them
  by :data:`BYTE_OFFSET`; :class:`TokenSequences` holds variable-length id sequences back to back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from spikessm.data.base import require_data_dir
from spikessm.errors import UserError

PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)  # pad id 0: pad_collate pads with 0
BYTE_OFFSET = len(SPECIALS)  # byte b has id b + 2, as LRA's ByteTextEncoder (2 reserved ids)
BYTE_VOCAB_SIZE = BYTE_OFFSET + 256
BYTE_VOCAB_NOTE = "<pad>=0, <unk>=1, byte b -> b+2"  # Splits.info["vocab"] of byte-level tasks
LRA_SOURCE = ("Get lra_release.gz (linked from https://github.com/google-research/long-range-arena) "
              "and extract it into the data directory.")


def find_data(task: str, data_dir: Path | None, layouts: Sequence[tuple[str | Path, Sequence[str]]],
              source: str) -> Path:
    """The first folder of ``layouts`` that holds every one of its required entries.

    ``layouts`` lists ``(folder, required)`` in search order: ``folder`` relative to ``data_dir`` (or
    absolute, e.g. a system-wide install), ``required`` glob patterns that must each match something in
    it. ``source`` says where to get the data; it ends the error raised when no folder qualifies.
    """
    if data_dir is not None:
        require_data_dir(data_dir, task, "")  # only checks that the directory exists
    searched = []
    for folder, required in layouts:
        folder = Path(folder)
        if not folder.is_absolute():
            if data_dir is None:
                searched.append(f"{', '.join(required)} in DATA_DIR/{folder}")
                continue
            folder = data_dir / folder
        if all(any(folder.glob(pattern)) for pattern in required):
            return folder
        searched.append(f"{', '.join(required)} in {folder}")
    hint = "" if data_dir is not None else " (no data directory given: pass --data-dir DIR or set SPIKESSM_DATA)"
    raise UserError(f"task {task!r}: data not found{hint}; looked for {' or '.join(searched)}. {source}")


def bad_line(path: Path, line: int, problem: str) -> UserError:
    """The error for a malformed line of a data file (1-based line number)."""
    return UserError(f"{path}:{line}: {problem}")


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of parts of n items in the given fractions; rounded, the first part takes the remainder."""
    sizes = [round(f * n) for f in fractions[1:]]
    return [n - sum(sizes), *sizes]


def random_split(n: int, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into index tensors of :func:`split_sizes`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.split(order, split_sizes(n, fractions)))


def hold_out_val(train: Dataset, test: Dataset, val_fraction: float, seed: int
                 ) -> tuple[Dataset, Dataset, str]:
    """``(train, val, how)`` for data released with only train and test splits.

    ``val_fraction > 0``: a seeded random part of train becomes val (the rest stays train).
    ``val_fraction == 0``: val is the test set, as LRA and S4 do for IMDb (model selection on test;
    comparable with published numbers but optimistic). ``how`` describes the choice for ``Splits.info``.
    """
    if not 0 <= val_fraction < 1:
        raise UserError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return train, test, "the test set (LRA/S4 protocol)"
    keep, val = random_split(len(train), (1 - val_fraction, val_fraction), seed)
    return Subset(train, keep), Subset(train, val), f"random {val_fraction:g} of train (seed {seed})"


class Vocab:
    """Tokens and their ids: the specials first (``<pad>`` = 0), then ``tokens`` in the given order."""

    def __init__(self, tokens: Iterable[str], specials: Sequence[str] = SPECIALS):
        self.itos = list(specials)
        self.itos += [t for t in dict.fromkeys(tokens) if t not in set(specials)]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unk = self.stoi.get(UNK)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown tokens become ``<unk>`` (a KeyError if the vocabulary has none)."""
        if self.unk is None:
            return [self.stoi[t] for t in tokens]
        return [self.stoi.get(t, self.unk) for t in tokens]


def pack(sequences: Sequence[np.ndarray], labels: Sequence[int]) -> dict:
    """Store variable-length sequences back to back: ``tokens`` (sum L,) uint8, ``offsets`` (n+1,), ``labels``.

    One byte per token is enough for every packed task (bytes, ListOps' 17 ids) and keeps the AAN
    training set (about 1.2 G tokens at 4K per document) in memory.
    """
    lengths = np.fromiter((len(s) for s in sequences), np.int64, len(sequences))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.concatenate(sequences).astype(np.uint8) if sequences else np.zeros(0, np.uint8)
    return {"tokens": torch.from_numpy(tokens), "offsets": torch.from_numpy(offsets),
            "labels": torch.tensor(list(labels), dtype=torch.long)}


def check_tensor(value, name: str, dtype: torch.dtype, ndim: int) -> torch.Tensor:
    """``value`` if it is a ``dtype`` tensor of ``ndim`` dimensions, else a ValueError naming ``name``
    (the check a cache entry passes before it is used)."""
    if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.dim() != ndim:
        what = f"{value.dtype} {value.dim()}-d" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a {dtype} {ndim}-d tensor, got {what}")
    return value


def check_packed(packed, n_classes: int, docs_per_sample: int = 1, vocab_size: int = 256) -> None:
    """A ValueError unless ``packed`` is what :func:`pack` returns: consistent offsets into the tokens,
    tokens below ``vocab_size``, labels in ``[0, n_classes)``, ``docs_per_sample`` sequences per label."""
    if not isinstance(packed, dict):
        raise ValueError(f"a packed split must be a dict, got {type(packed).__name__}")
    tokens = check_tensor(packed.get("tokens"), "tokens", torch.uint8, 1)
    offsets = check_tensor(packed.get("offsets"), "offsets", torch.int64, 1)
    labels = check_tensor(packed.get("labels"), "labels", torch.int64, 1)
    if len(offsets) != len(labels) * docs_per_sample + 1 or offsets[0] != 0 or offsets[-1] != len(tokens) \
            or bool((offsets.diff() < 0).any()):
        raise ValueError("offsets do not index the tokens")
    if len(tokens) and int(tokens.max()) >= vocab_size:
        raise ValueError(f"token ids outside [0, {vocab_size})")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels outside [0, {n_classes})")


class TokenSequences(Dataset):
    """Variable-length token sequences from :func:`pack`, one byte per token in memory.

    Sample i is ``(ids, label)`` with ids a LongTensor ``(L_i,)``, or with ``docs_per_sample=2`` (retrieval)
    ``((ids_a, ids_b), label)``, document j of sample i being packed sequence ``2i + j``.
    ``id_offset`` is added on access (byte-level tasks store raw bytes; see :data:`BYTE_OFFSET`).
    """

    def __init__(self, packed: dict, docs_per_sample: int = 1, id_offset: int = 0):
        self.tokens, self.offsets, self.labels = packed["tokens"], packed["offsets"], packed["labels"]
        self.docs_per_sample, self.id_offset = docs_per_sample, id_offset

    def __len__(self) -> int:
        return len(self.labels)

    def _doc(self, j: int) -> torch.Tensor:
        return self.tokens[self.offsets[j]:self.offsets[j + 1]].long() + self.id_offset

    def __getitem__(self, i: int):
        docs = tuple(self._doc(i * self.docs_per_sample + j) for j in range(self.docs_per_sample))
        return (docs[0] if self.docs_per_sample == 1 else docs), self.labels[i]

    def lengths(self) -> torch.Tensor:
        """Sample lengths: ``(N,)``, or ``(N, docs_per_sample)`` for pairs."""
        lengths = self.offsets.diff()
        return lengths if self.docs_per_sample == 1 else lengths.view(-1, self.docs_per_sample)
