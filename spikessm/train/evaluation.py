"""Evaluation: loss, accuracy (perplexity, bits per character), firing rates and energy of a model
over a loader, and of a saved checkpoint on its task's test split."""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from spikessm.data.loading import load_data, make_loader, require_samples
from spikessm.errors import UserError
from spikessm.metrics.energy import energy_summary, layer_operations
from spikessm.metrics.firing import FiringRecorder
from spikessm.pretrained import load_model
from spikessm.train import distributed
from spikessm.train.distributed import Context


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str, ctx: Context = Context()) -> torch.device:
    """``train.device`` as a torch device; each process of a multi-GPU run takes GPU ``LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r} but no CUDA device is available; use cpu or auto")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps"):  # meta holds no data and cannot train
        raise UserError(f"train.device={name!r}: use auto, cpu, cuda, cuda:N or mps")
    return torch.device("cuda", ctx.local_rank) if ctx.enabled and device.type == "cuda" else device


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on ``device``'s type when ``train.bf16`` is on (CPU included)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def loss_and_hits(model: nn.Module, kind: str, x, y, lengths) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed loss and number of correct predictions (tokens for LM), and how many were scored.

    A language model scores its own targets (the tokens within ``lengths``): with an adaptive
    softmax the loss is its NLL, never a softmax over the whole vocabulary.
    """
    if kind == "lm":
        nll, correct = model(x, lengths, targets=y)
        return nll.sum(), correct.sum(), nll.numel()
    logits = model(x, lengths)
    loss = F.cross_entropy(logits, y, reduction="sum")  # float32 under autocast too
    return loss, (logits.argmax(-1) == y).sum(), y.numel()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, kind: str, device: torch.device, ctx: Context = Context(),
             bf16: bool = False, char_level: bool = False) -> dict[str, Any]:
    """Mean loss, accuracy (and perplexity for LM; bits per character for a ``char_level`` task) and
    firing rates over a loader, in eval mode.

    In a multi-process run each process evaluates its shard and the sums are added up.
    """
    model.eval()
    distributed.broadcast_from_main(ctx, model.buffers())  # BatchNorm running statistics of rank 0
    total_loss, total_hits, total = 0.0, 0, 0
    with FiringRecorder(model) as recorder:
        for x, y, lengths in loader:
            with autocast(device, bf16):
                loss, hits, n = loss_and_hits(model, kind, x.to(device), y.to(device), lengths)
            total_loss, total_hits, total = total_loss + loss.item(), total_hits + hits.item(), total + n
    total_loss, total_hits, total = distributed.sum_across(ctx, [total_loss, total_hits, total], device)
    recorder.sum_across_processes(device)
    result = {"loss": total_loss / total, "accuracy": total_hits / total,
              "firing_rate": recorder.mean_rate(), "firing_rates": recorder.rates()}
    if kind == "lm":
        result["ppl"] = math.exp(min(result["loss"], 50.0))
        if char_level:  # the loss is the mean NLL per character, in nats
            result["bpc"] = result["loss"] / math.log(2)
    return result


def evaluate_with_metrics(model: nn.Module, loader: DataLoader, kind: str, seq_len: int, device: torch.device,
                          ctx: Context = Context(), bf16: bool = False, char_level: bool = False) -> dict[str, Any]:
    """:func:`evaluate` plus the per-layer operation counts and energy, as summary.json reports them."""
    result = evaluate(model, loader, kind, device, ctx, bf16, char_level)
    rows = layer_operations(model, seq_len, result["firing_rates"])
    return {**result, "energy": energy_summary(rows), "layers": rows}


def evaluate_checkpoint(path: str | Path, data_dir: str | None = None, device: str = "auto") -> dict[str, Any]:
    """Re-run the test split of the task a checkpoint (or run directory) was trained on. The model
    comes from the checkpoint alone; only the test split is read."""
    model = load_model(path)
    cfg = model.info["config"]
    if not cfg:
        raise UserError(f"{path} holds no training config, so its task's test split is unknown")
    if data_dir:
        cfg["data"]["dir"] = data_dir
    seed_everything(cfg["seed"])
    dev = resolve_device(device)
    task, splits = load_data(cfg)
    require_samples(cfg["task"], splits, ("test",))
    loader = make_loader(splits.test, splits, cfg["train"]["eval_batch_size"], cfg["train"]["num_workers"])
    return {"task": cfg["task"], "model": cfg["model"]["name"],
            **evaluate_with_metrics(model.to(dev), loader, task.kind, task.seq_len, dev,
                                    bf16=cfg["train"].get("bf16", False), char_level=task.char_level)}
