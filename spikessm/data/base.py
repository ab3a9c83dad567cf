"""What a task is (:class:`Task`) and what loading it gives (:class:`Splits`); the helpers every task
module shares. A leaf of the data package: the task modules list their tasks with :func:`builtin`, and
:mod:`spikessm.data.registry` imports them all and registers those.

A task knows its nominal shape (for ``spikessm tasks``) and how to load its three splits. Loading
returns :class:`Splits`, whose datasets yield ``(x, y)`` pairs:

- ``kind="classify"``:  x float ``(L, d_input)`` or token ids ``(L,)``; y a class index.
- ``kind="retrieval"``: x a pair (tuple) of 1-D token-id tensors (the two documents); y a class index.
- ``kind="lm"``:        x token ids ``(L,)``; y the next tokens ``(L,)``.

Batches are ``(x, y, lengths)`` (see :mod:`spikessm.data.collate`), so that models can ignore padding.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset, Subset

from spikessm.errors import UserError

KINDS = ("classify", "retrieval", "lm")


@dataclass
class Splits:
    """What a task's loader returns."""

    train: Dataset
    val: Dataset
    test: Dataset
    n_classes: int  # classes, or the vocabulary size for language modelling
    d_input: int | None = None  # features per step for real-valued input
    vocab_size: int | None = None  # set when x holds token ids
    collate: Callable | None = None  # None: the default fixed-length collate
    info: dict[str, Any] = field(default_factory=dict)  # e.g. the vocabulary, for the docs and logs
    # Set by tasks whose data decides them (``tensors``): they replace the task's nominal kind and length.
    kind: str | None = None
    seq_len: int | None = None


@dataclass(frozen=True)
class Task:
    """A named data set. ``load(options, data_dir)`` builds its splits.

    ``options`` are the task's own settings with their defaults (they become ``data.<key>`` in the
    config and can be changed with ``--set data.<key>=value``).
    """

    name: str
    description: str
    seq_len: int
    n_classes: int
    kind: str
    load: Callable[[dict, Path | None], Splits]
    options: dict[str, Any] = field(default_factory=dict)
    needs_data_dir: bool = False
    # The nominal input, so a model can be built without the data (e.g. to check a preset):
    # real-valued features per step, or, for token ids, the vocabulary size (including specials;
    # for data-dependent vocabularies a typical size).
    d_input: int | None = 1
    vocab_size: int | None = None
    # Language modelling over characters: results also give bits per character (NLL / ln 2).
    char_level: bool = False
    # Options that take a name: their valid values (checked when the config is built).
    choices: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: kind must be one of {KINDS}")
        if self.vocab_size is not None:
            object.__setattr__(self, "d_input", None)

    def nominal_splits(self) -> "Splits":
        """Empty splits with this task's nominal shapes: enough to build a model."""
        return Splits(train=None, val=None, test=None, n_classes=self.n_classes or (self.vocab_size or 1),
                      d_input=self.d_input, vocab_size=self.vocab_size)


BUILTIN_TASKS: list[Task] = []  # filled by the task modules as they are imported


def builtin(task: Task) -> Task:
    """Add a task of spikessm's own (task modules call this; users call the registry's ``register``)."""
    BUILTIN_TASKS.append(task)
    return task


# Config keys every task has (``data.<key>``), beside the task's own options. 0 = the whole split.
COMMON_DATA_OPTIONS = {"dir": None, "train_samples": 0, "eval_samples": 0}


def subsample(splits: Splits, train_samples: int, eval_samples: int) -> Splits:
    """``splits`` with train cut to ``train_samples`` and val and test each to ``eval_samples`` (0 = all).

    The subset is a fixed random draw (seed 0, independent of the run's seed), sorted, so every model
    and seed trained with the same numbers sees the same examples: equal budgets on a small machine.
    """
    def cut(dataset: Dataset, n: int) -> Dataset:
        if not n or n >= len(dataset):
            return dataset
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].sort().values
        return Subset(dataset, keep.tolist())

    return replace(splits, train=cut(splits.train, train_samples), val=cut(splits.val, eval_samples),
                   test=cut(splits.test, eval_samples))


def resolve_data_dir(configured: str | None) -> Path | None:
    """``data.dir`` from the config, else ``$SPIKESSM_DATA``, else None."""
    value = configured or os.environ.get("SPIKESSM_DATA")
    return Path(value).expanduser() if value else None


def require_data_dir(data_dir: Path | None, task: str, layout: str) -> Path:
    """The data directory, or a one-line error telling the user what to pass."""
    if data_dir is None:
        raise UserError(
            f"task {task!r} reads data from disk: pass --data-dir DIR (or set SPIKESSM_DATA) "
            f"where DIR holds {layout}"
        )
    if not data_dir.is_dir():
        raise UserError(f"data directory {data_dir} does not exist")
    return data_dir
