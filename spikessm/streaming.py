"""Streaming (recurrent) inference: run a trained model one time step at a time.

This is how neuromorphic hardware would run it: the state is the S4D recurrence (N/2 complex modes
per channel) plus one membrane per spiking neuron, and each step costs the same whatever the
sequence length. After the last step the output equals the parallel forward pass.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from spikessm.data.loading import load_data
from spikessm.errors import UserError
from spikessm.models.backbone import SequenceModel
from spikessm.pretrained import from_pretrained, load_model


def stream_samples(model: SequenceModel, samples: Sequence[tuple[torch.Tensor, Any]], first_index: int = 0) -> dict:
    """Run ``(x, y)`` samples through ``model`` one step at a time, on the CPU, and compare with the
    parallel pass.

    Classification: per sample the label, the streamed and the parallel prediction and the largest
    logit difference. Language modelling: per sample the share of steps whose streamed next-token
    prediction is the target and the share that agree with the parallel pass, and the largest score
    difference over all steps. Both: per-step latencies in microseconds.
    """
    if model.kind not in ("classify", "lm"):
        raise UserError(f"streaming runs classification and language models; this model is for {model.kind}")
    if model.config is not None and model.config.bidirectional:
        raise UserError("a bidirectional model needs the whole sequence: train with --set model.bidirectional=false "
                        "to stream")
    model.eval()
    results, latencies, steps = [], [], 0
    for i, (x, y) in enumerate(samples, start=first_index):
        x = x.unsqueeze(0)
        steps = x.shape[1]
        state, outputs = model.initial_state(1), []
        for t in range(steps):
            start = time.perf_counter()
            out, state = model.step(x[:, t], state)
            latencies.append((time.perf_counter() - start) * 1e6)
            outputs.append(out)
        with torch.no_grad():
            parallel = model(x)
        if model.kind == "lm":  # every step's output is a prediction: compare them all
            streamed = torch.stack(outputs, dim=1)  # (1, L, vocab), like the parallel scores
            predicted = streamed.argmax(-1)[0]
            results.append({"index": i, "accuracy": float((predicted == y).float().mean()),
                            "agreement": float((predicted == parallel.argmax(-1)[0]).float().mean()),
                            "max_abs_diff": float((streamed - parallel).abs().max())})
        else:
            results.append({"index": i, "label": int(y), "prediction": int(out.argmax(-1)),
                            "parallel_prediction": int(parallel.argmax(-1)),
                            "max_abs_diff": float((out - parallel).abs().max())})
    return {"kind": model.kind, "steps": steps, "samples": results,
            "latency_us": {"median": statistics.median(latencies), "max": max(latencies),
                           "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))]}}


def _test_samples(cfg: dict, index: int, count: int, splits=None) -> list:
    if splits is None:
        _, splits = load_data(cfg)
    if not 0 <= index < len(splits.test) or count < 1:
        raise UserError(f"--index must lie in [0, {len(splits.test) - 1}] and --count be >= 1")
    return [splits.test[i] for i in range(index, min(index + count, len(splits.test)))]


def stream_checkpoint(path: str | Path, index: int = 0, count: int = 1, data_dir: str | None = None) -> dict:
    """Stream ``count`` test sequences from ``index`` on through a checkpoint's model (see
    :func:`stream_samples`); the test split is read from the task the checkpoint was trained on."""
    model = load_model(path)
    cfg = model.info["config"]
    if not cfg:
        raise UserError(f"{path} holds no training config, so its task's test split is unknown")
    if model.kind not in ("classify", "lm"):
        raise UserError(f"spikessm stream runs classification and language models; task {cfg['task']!r} is "
                        f"{model.kind}")
    if data_dir:
        cfg["data"]["dir"] = data_dir
    samples = _test_samples(cfg, index, count)
    return {"task": cfg["task"], "model": cfg["model"]["name"], **stream_samples(model, samples, index)}


def sample_text_ids(model: SequenceModel, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a text for a character language model with a vocabulary in ``model.info``."""
    vocab = model.info.get("vocab")
    if not vocab:
        raise UserError("this language model has no vocabulary to encode text with")
    ids = {token: i for i, token in enumerate(vocab)}
    unknown = sorted({c for c in text if c not in ids})
    if unknown:
        raise UserError(f"characters not in the model's vocabulary: {''.join(unknown)!r}")
    stream = torch.tensor([ids[c] for c in text], dtype=torch.long)
    if len(stream) < 2:
        raise UserError("the text must have at least two characters")
    return stream[:-1], stream[1:]


def stream_pretrained(name_or_dir: str | Path, index: int = 0, count: int = 1, data_dir: str | None = None) -> dict:
    """Stream test sequences through a pretrained model. Its task's test split is used when it can be
    loaded (an embedded task, or data under ``data_dir``); a language model without its data streams
    the short ``sample_text`` its ``config.json`` ships."""
    model = from_pretrained(name_or_dir)
    info = model.info
    task = info.get("task")
    cfg = {"task": task, "data": {**(info.get("data") or {}), "dir": data_dir, "train_samples": 0, "eval_samples": 0}}
    splits = None
    if task:
        try:
            _, splits = load_data(cfg)
        except UserError:  # the data is not here: a language model streams its sample text instead
            if model.kind != "lm" or not info.get("sample_text"):
                raise
    samples = _test_samples(cfg, index, count, splits) if splits is not None else None
    source = f"{task} test split"
    if samples is None:
        if not info.get("sample_text"):
            raise UserError(f"{name_or_dir}: config.json names no task and ships no sample_text to stream")
        if index != 0:
            raise UserError(f"{name_or_dir}: without its data (--data-dir) it streams the one sample text its "
                            "config.json ships: --index must be 0")
        samples, source = [sample_text_ids(model, info["sample_text"])], "the shipped sample text"
    name = model.config.name if model.config else "?"
    return {"task": task, "model": name, "source": source, **stream_samples(model, samples, index)}
