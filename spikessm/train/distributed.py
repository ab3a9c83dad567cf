"""Data-parallel training over several processes with torch.distributed, launched by torchrun.

``torchrun --nproc_per_node N -m spikessm train ...`` starts N copies of the command with RANK,
WORLD_SIZE and LOCAL_RANK in their environment. Each process trains the same model on its own
share of every batch (``train.batch_size`` samples per process, so the global batch is N times
that); DistributedDataParallel averages the gradients, so all copies take the same optimizer step.
Without those variables (or with WORLD_SIZE=1) everything here is a no-op and training is the plain
single-process loop: the code path is the same, with a world of one.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Subset


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job; ``Context()`` is a single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank within this machine: which GPU to use

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and logs."""
        return self.rank == 0


def context_from_env() -> Context:
    """The torchrun environment of this process, or a single-process context without one."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Context()
    return Context(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                   int(os.environ.get("LOCAL_RANK", 0)))


def init(ctx: Context, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if ctx.enabled:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=ctx.rank, world_size=ctx.world_size)


def barrier(ctx: Context) -> None:
    """Wait for every process. Called before a clean exit: a process that tears the group down
    while another is still in a collective makes gloo abort the job."""
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """The module the training steps call: ``model`` itself, or its DDP wrapper.

    BatchNorm: on GPUs it becomes SyncBatchNorm, so batch statistics are those of the global
    batch, as in a single-process run. On CPU (gloo, which SyncBatchNorm does not support) each
    process normalises with its own share's statistics; running statistics follow rank 0 (DDP
    broadcasts its buffers before every forward, and :func:`broadcast_from_main` before evaluation).
    """
    if not ctx.enabled:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # An adaptive softmax runs a tail cluster only for batches with targets in it, so some
    # parameters may get no gradient in a step; DDP must be told to expect that.
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                               find_unused_parameters=getattr(model, "adaptive_softmax", False))


def broadcast_from_main(ctx: Context, tensors) -> None:
    """Overwrite ``tensors`` (in place) with rank 0's: BatchNorm running statistics before
    evaluating, the best weights before testing."""
    if ctx.enabled:
        for t in tensors:
            dist.broadcast(t, 0)


def sum_across(ctx: Context, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over all processes (float64, so counts stay exact)."""
    if not ctx.enabled or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather(ctx: Context, obj) -> list:
    """Every process's ``obj``, in rank order (e.g. the RNG states, one per process)."""
    if not ctx.enabled:
        return [obj]
    objects = [None] * ctx.world_size
    dist.all_gather_object(objects, obj)
    return objects


def shard(dataset: Dataset, ctx: Context) -> Dataset:
    """This process's share of an evaluation set: every world_size-th sample, no padding, so the
    summed metrics count each sample exactly once."""
    return Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size)) if ctx.enabled else dataset


class EpochSampler(DistributedSampler):
    """This process's share of a fresh permutation of the training set each epoch.

    Epoch e's order depends only on (seed, e), so a resumed run sees the same batches; ``start``
    skips the samples an interrupted epoch already used. Process r takes positions r, r+N, r+2N, ...
    of the permutation, so step i of N processes with batch B covers the same samples as step i of
    one process with batch N*B. When N does not divide the training set, DistributedSampler repeats
    a few samples to give every process the same number of steps.
    """

    def __init__(self, dataset: Dataset, ctx: Context, seed: int):
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Iterate epoch ``epoch``'s order from this process's ``start``-th sample on."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start
