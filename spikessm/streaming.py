"""Streaming (recurrent) inference: run a trained model one time step at a time.

This is how neuromorphic hardware would run it: the state is the S4D recurrence (N/2 complex modes
per channel) plus one membrane per spiking neuron, and each step costs the same whatever the
sequence length. After the last step the output equals the parallel forward pass.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from spikessm.errors import UserError
from spikessm.models.registry import build_model
from spikessm.train.checkpoint import load_checkpoint
from spikessm.train.loop import load_data


def stream_checkpoint(path: str | Path, index: int = 0, count: int = 1, data_dir: str | None = None) -> dict:
    """Classify ``count`` test sequences from ``index`` on, one step at a time, on the CPU.

    Returns per-sample predictions, labels, whether the streamed output matches the parallel pass,
    and per-step latencies in microseconds.
    """
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    if data_dir:
        cfg["data"]["dir"] = data_dir
    task, splits = load_data(cfg)
    if task.kind != "classify":
        raise UserError(f"spikessm stream classifies sequences; task {task.name!r} is {task.kind}")
    if cfg["model"]["bidirectional"]:
        raise UserError(f"{path} holds a bidirectional model, which needs the whole sequence: "
                        "train with --set model.bidirectional=false to stream")
    if not 0 <= index < len(splits.test) or count < 1:
        raise UserError(f"--index must lie in [0, {len(splits.test) - 1}] and --count be >= 1")
    model = build_model(cfg["model"], splits, task.kind)
    model.load_state_dict(ckpt["model"])
    model.eval()
    samples, latencies = [], []
    for i in range(index, min(index + count, len(splits.test))):
        x, label = splits.test[i]
        x = x.unsqueeze(0)
        state = model.initial_state(1)
        for t in range(x.shape[1]):
            start = time.perf_counter()
            out, state = model.step(x[:, t], state)
            latencies.append((time.perf_counter() - start) * 1e6)
        with torch.no_grad():
            parallel = model(x)
        samples.append({"index": i, "label": int(label), "prediction": int(out.argmax(-1)),
                        "parallel_prediction": int(parallel.argmax(-1)),
                        "max_abs_diff": float((out - parallel).abs().max())})
    return {"task": task.name, "model": cfg["model"]["name"], "steps": x.shape[1], "samples": samples,
            "latency_us": {"median": statistics.median(latencies), "max": max(latencies),
                           "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))]}}
