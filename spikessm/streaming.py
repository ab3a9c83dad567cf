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
    """Run ``count`` test sequences from ``index`` on through the model one step at a time, on the CPU.

    Classification: per sample the label, the streamed and the parallel prediction and the largest
    logit difference. Language modelling: per sample the share of steps whose streamed next-token
    prediction is the target and the share that agree with the parallel pass, and the largest score
    difference over all steps. Both: per-step latencies in microseconds.
    """
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    if data_dir:
        cfg["data"]["dir"] = data_dir
    task, splits = load_data(cfg)
    if task.kind not in ("classify", "lm"):
        raise UserError(f"spikessm stream runs classification and language models; task {task.name!r} is {task.kind}")
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
        x, y = splits.test[i]
        x = x.unsqueeze(0)
        state, outputs = model.initial_state(1), []
        for t in range(x.shape[1]):
            start = time.perf_counter()
            out, state = model.step(x[:, t], state)
            latencies.append((time.perf_counter() - start) * 1e6)
            outputs.append(out)
        with torch.no_grad():
            parallel = model(x)
        if task.kind == "lm":  # every step's output is a prediction: compare them all
            streamed = torch.stack(outputs, dim=1)  # (1, L, vocab), like the parallel scores
            predicted = streamed.argmax(-1)[0]
            samples.append({"index": i, "accuracy": float((predicted == y).float().mean()),
                            "agreement": float((predicted == parallel.argmax(-1)[0]).float().mean()),
                            "max_abs_diff": float((streamed - parallel).abs().max())})
        else:
            samples.append({"index": i, "label": int(y), "prediction": int(out.argmax(-1)),
                            "parallel_prediction": int(parallel.argmax(-1)),
                            "max_abs_diff": float((out - parallel).abs().max())})
    return {"task": task.name, "kind": task.kind, "model": cfg["model"]["name"], "steps": x.shape[1],
            "samples": samples,
            "latency_us": {"median": statistics.median(latencies), "max": max(latencies),
                           "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))]}}
