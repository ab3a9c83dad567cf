"""From a config to data: a task's splits (:func:`load_data`) and their batches (:func:`make_loader`)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from spikessm.data.collate import stack_collate
from spikessm.data.registry import COMMON_DATA_OPTIONS, Splits, Task, get_task, resolve_data_dir, subsample
from spikessm.errors import UserError


def load_data(cfg: dict[str, Any]) -> tuple[Task, Splits]:
    """(task, splits) for a training config (its ``task`` and ``data`` sections)."""
    task = get_task(cfg["task"])
    data = cfg["data"]
    options = {k: v for k, v in data.items() if k not in COMMON_DATA_OPTIONS}
    splits = task.load(options, resolve_data_dir(data["dir"]))
    if splits.kind or splits.seq_len:  # the data decides them (task tensors)
        task = replace(task, kind=splits.kind or task.kind, seq_len=splits.seq_len or task.seq_len)
    return task, subsample(splits, data.get("train_samples", 0), data.get("eval_samples", 0))


def require_samples(task: str, splits: Splits, names: tuple[str, ...] = ("train", "val", "test")) -> None:
    """A one-line UserError when one of the splits ``names`` holds no sample (an empty data file, or
    ``data.train_samples`` left none): training or testing on nothing would divide by zero."""
    for name in names:
        if len(getattr(splits, name)) == 0:
            raise UserError(f"task {task}: the {name} split holds no sample; check its data file")


def make_loader(dataset: Dataset, splits: Splits, batch_size: int, num_workers: int = 0,
                sampler: Sampler | None = None) -> DataLoader:
    """Batches ``(x, y, lengths)`` of ``dataset`` with the task's collate function."""
    # A private generator: iterating a DataLoader otherwise draws its base seed from the global
    # RNG, which a resumed run would then replay out of step with dropout and Bernoulli spikes.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=torch.Generator(),
                      collate_fn=splits.collate or stack_collate, num_workers=num_workers)
