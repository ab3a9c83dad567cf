"""The training run: data -> model -> AdamW + cosine -> best-on-validation -> test -> summary.json.

Files written to the output directory:
  config.yaml     the resolved config (``spikessm train --preset DIR/config.yaml`` reruns it)
  metrics.jsonl   one line per epoch: losses, accuracies, lr, seconds, firing rate
  best.pt         the best-on-validation weights and the config (what ``spikessm eval`` reads)
  last.pt         the full training state after the latest epoch (what ``--resume`` reads)
  summary.json    the contract fields (see DESIGN): task, model, test metric, firing, energy, ...
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from spikessm.data.collate import stack_collate
from spikessm.data.registry import get_task, resolve_data_dir
from spikessm.errors import UserError
from spikessm.metrics.energy import energy_summary, layer_operations
from spikessm.metrics.firing import FiringRecorder
from spikessm.models.registry import build_model
from spikessm.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from spikessm.train.optim import cosine_with_warmup, make_optimizer


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r} but no CUDA device is available; use cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load_data(cfg: dict):
    """(task, splits) for a config."""
    task = get_task(cfg["task"])
    options = {k: v for k, v in cfg["data"].items() if k != "dir"}
    return task, task.load(options, resolve_data_dir(cfg["data"]["dir"]))


def make_loader(dataset, splits, batch_size: int, shuffle: bool, cfg: dict, seed: int = 0):
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=splits.collate or stack_collate,
                      num_workers=cfg["train"]["num_workers"])


def loss_and_hits(model, kind: str, x, y, lengths):
    """Summed loss and number of correct predictions (tokens for LM), and how many were scored."""
    logits = model(x, lengths)
    if kind == "lm":
        mask = torch.arange(y.shape[1], device=y.device) < lengths.to(y.device).unsqueeze(-1)
        flat_logits, flat_y = logits[mask], y[mask]
    else:
        flat_logits, flat_y = logits, y
    loss = F.cross_entropy(flat_logits, flat_y, reduction="sum")
    hits = (flat_logits.argmax(-1) == flat_y).sum()
    return loss, hits, flat_y.numel()


@torch.no_grad()
def evaluate(model, loader, kind: str, device) -> dict:
    """Mean loss and accuracy (and perplexity for LM) over a loader, in eval mode."""
    model.eval()
    total_loss, total_hits, total = 0.0, 0, 0
    for x, y, lengths in loader:
        loss, hits, n = loss_and_hits(model, kind, x.to(device), y.to(device), lengths)
        total_loss += loss.item()
        total_hits += hits.item()
        total += n
    result = {"loss": total_loss / total, "accuracy": total_hits / total}
    if kind == "lm":
        result["ppl"] = math.exp(min(result["loss"], 50.0))
    return result


def evaluate_with_metrics(model, loader, kind: str, seq_len: int, device) -> dict:
    """:func:`evaluate` plus firing rates and the energy count, as summary.json reports them."""
    with FiringRecorder(model) as recorder:
        result = evaluate(model, loader, kind, device)
    rates = recorder.rates()
    rows = layer_operations(model, seq_len, rates)
    return {**result, "firing_rate": recorder.mean_rate(), "firing_rates": rates,
            "energy": energy_summary(rows), "layers": rows}


def train(cfg: dict, out_dir: str | Path, progress: bool = True) -> dict:
    """Run the experiment ``cfg`` into ``out_dir``; returns the summary dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tcfg = cfg["train"]
    if tcfg["threads"]:
        torch.set_num_threads(tcfg["threads"])
    seed_everything(cfg["seed"])
    device = resolve_device(tcfg["device"])
    task, splits = load_data(cfg)
    model = build_model(cfg["model"], splits, task.kind).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    write_text_atomic(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    log(f"spikessm: training {cfg['model']['name']} on {cfg['task']} "
        f"({len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test, "
        f"{n_params:,} parameters, {device}) -> {out}")

    train_loader = make_loader(splits.train, splits, tcfg["batch_size"], True, cfg, cfg["seed"])
    val_loader = make_loader(splits.val, splits, tcfg["eval_batch_size"], False, cfg)
    test_loader = make_loader(splits.test, splits, tcfg["eval_batch_size"], False, cfg)
    optimizer = make_optimizer(model, tcfg["lr"], tcfg["weight_decay"], tcfg["ssm_lr"])
    steps_per_epoch = len(train_loader)
    scheduler = cosine_with_warmup(optimizer, round(tcfg["warmup_epochs"] * steps_per_epoch),
                                   tcfg["epochs"] * steps_per_epoch)

    best_val, start = -math.inf, time.time()
    metrics_file = (out / "metrics.jsonl").open("w")
    for epoch in range(1, tcfg["epochs"] + 1):
        model.train()
        epoch_start, run_loss, run_hits, run_n = time.time(), 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{tcfg['epochs']}", leave=False,
                   disable=None if progress else True, unit="batch")
        for x, y, lengths in bar:
            loss, hits, n = loss_and_hits(model, task.kind, x.to(device), y.to(device), lengths)
            optimizer.zero_grad(set_to_none=True)
            (loss / n).backward()
            if tcfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            optimizer.step()
            scheduler.step()
            run_loss, run_hits, run_n = run_loss + loss.item(), run_hits + hits.item(), run_n + n
            bar.set_postfix(loss=f"{run_loss / run_n:.4f}", acc=f"{run_hits / run_n:.3f}")
        with FiringRecorder(model) as recorder:
            val = evaluate(model, val_loader, task.kind, device)
        row = {"epoch": epoch, "train_loss": run_loss / run_n, "train_accuracy": run_hits / run_n,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"],
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - epoch_start,
               "firing_rate": recorder.mean_rate(), "firing_rates": recorder.rates()}
        if "ppl" in val:
            row["val_ppl"] = val["ppl"]
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        score = -val["loss"] if task.kind == "lm" else val["accuracy"]
        improved = score > best_val
        if improved:
            best_val = score
            save_checkpoint(out / "best.pt", {"config": cfg, "model": model.state_dict(), "epoch": epoch})
        save_checkpoint(out / "last.pt", {
            "config": cfg, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch, "best_val": best_val,
            "rng": rng_state()})
        fr = f" firing {row['firing_rate']:.3f}" if row["firing_rate"] is not None else ""
        log(f"epoch {epoch:3d}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
            f"  val loss {val['loss']:.4f} acc {val['accuracy']:.3f}{fr}"
            f"  {row['seconds']:.1f}s{'  *best' if improved else ''}")
    metrics_file.close()
    train_seconds = time.time() - start

    model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
    test = evaluate_with_metrics(model, test_loader, task.kind, task.seq_len, device)
    summary = {
        "task": cfg["task"], "model": cfg["model"]["name"],
        **({"test_ppl": test["ppl"]} if task.kind == "lm" else {"test_accuracy": test["accuracy"]}),
        "test_loss": test["loss"],
        "firing_rate": test["firing_rate"], "firing_rates": test["firing_rates"],
        "energy": test["energy"], "layers": test["layers"],
        "params": n_params, "train_seconds": train_seconds, "epochs": tcfg["epochs"],
        "seed": cfg["seed"], "best_checkpoint": str(out / "best.pt"),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    metric = f"test ppl {test['ppl']:.2f}" if task.kind == "lm" else f"test accuracy {test['accuracy']:.4f}"
    fr = f", firing rate {test['firing_rate']:.3f}" if test["firing_rate"] is not None else ""
    log(f"spikessm: {metric}{fr}, {train_seconds:.0f}s; summary in {out / 'summary.json'}")
    return summary


def evaluate_checkpoint(path: str | Path, data_dir: str | None = None, device: str = "auto") -> dict:
    """Re-run the test split of the task a checkpoint was trained on."""
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    if data_dir:
        cfg["data"]["dir"] = data_dir
    seed_everything(cfg["seed"])
    dev = resolve_device(device)
    task, splits = load_data(cfg)
    model = build_model(cfg["model"], splits, task.kind).to(dev)
    model.load_state_dict(ckpt["model"])
    loader = make_loader(splits.test, splits, cfg["train"]["eval_batch_size"], False, cfg)
    return {"task": cfg["task"], "model": cfg["model"]["name"],
            **evaluate_with_metrics(model, loader, task.kind, task.seq_len, dev)}
