"""Interrupting and resuming a run ends exactly where the uninterrupted run ends; a diverging run stops.

The model draws from the RNG on every step (Bernoulli spikes and dropout), so a resume that restored
the wrong RNG state, data position or running sums would end with different weights.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from spikessm.cli import main
from spikessm.train import loop
from spikessm.train.checkpoint import load_checkpoint

RUN = ["--model", "binary-s4d", "--epochs", "2", "--quiet",
       *[f"--set={kv}" for kv in ("model.spike=bernoulli", "model.dropout=0.1", "model.d_model=8",
                                  "model.n_layers=1", "model.d_state=4", "train.threads=1",
                                  "train.batch_size=16", "train.checkpoint_every=3")]]
VOLATILE = {"seconds", "train_seconds", "best_checkpoint"}  # wall-clock times and paths


def results(run_dir):
    """The run's summary, metrics rows and final weights, without the wall-clock fields."""
    summary = {k: v for k, v in json.loads((run_dir / "summary.json").read_text()).items() if k not in VOLATILE}
    rows = [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, rows, load_checkpoint(run_dir / "last.pt")["model"]


def assert_same_run(a, b):
    (summary_a, rows_a, weights_a), (summary_b, rows_b, weights_b) = a, b
    assert summary_a == summary_b  # test accuracy, test loss, firing rates, energy: bit for bit
    assert rows_a == rows_b
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert main(["train", *RUN, "--out", str(out)]) == 0
    return results(out)


def test_sigint_then_resume_ends_like_the_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "spikessm", "train", *RUN, "--out", str(out)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    last_line = stderr.strip().splitlines()[-1]
    assert "interrupted by SIGINT" in last_line and f"spikessm train --resume {out}" in last_line
    assert "Traceback" not in stderr
    assert not (out / "summary.json").exists()

    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_run(results(out), uninterrupted)


def test_sigterm_mid_epoch_then_resume_ends_like_the_uninterrupted_run(uninterrupted, tmp_path, monkeypatch,
                                                                       capsys):
    """In-process, the signal arrives at a known micro-batch (the 7th), so the checkpoint lands mid-epoch."""
    calls, forward_backward = [], loop.forward_backward

    def signalled_on_the_7th(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return forward_backward(*args, **kwargs)

    monkeypatch.setattr(loop, "forward_backward", signalled_on_the_7th)
    assert main(["train", *RUN, "--out", str(tmp_path)]) == 143
    assert f"after step 7/79 of epoch 1; checkpoint saved; resume with: spikessm train --resume {tmp_path}" \
        in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "last.pt")["position"]["batches_done"] == 7
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 0
    assert_same_run(results(tmp_path), uninterrupted)


def test_resume_refuses_to_change_the_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--set", "train.lr=1"]) == 2
    assert "--resume continues a run exactly as it was configured, so --set" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "holds no last.pt" in capsys.readouterr().err


def nan_on_call(n):
    """A loss_and_hits whose ``n``-th call (and only it) returns a NaN loss."""
    calls, real = [], loop.loss_and_hits

    def patched(*args):
        calls.append(1)
        loss, hits, count = real(*args)
        return (loss * math.nan if len(calls) == n else loss), hits, count

    return patched


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "loss_and_hits", nan_on_call(5))
    assert main(["train", *RUN, "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("spikessm: non-finite training loss at epoch 1, step 5/79")
    assert load_checkpoint(tmp_path / "last.pt")["position"]["batches_done"] == 3  # the step-3 checkpoint


def test_skip_nonfinite_skips_and_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "loss_and_hits", nan_on_call(5))
    assert main(["train", *RUN, "--set", "train.skip_nonfinite=true", "--epochs", "1", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row["nonfinite_batches"] == 1 and math.isfinite(row["train_loss"])
    assert all(torch.isfinite(w).all() for w in load_checkpoint(tmp_path / "last.pt")["model"].values())
