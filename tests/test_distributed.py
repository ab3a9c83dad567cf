"""Batch arithmetic: 2 processes x batch B, and 2 accumulated micro-batches of B, both take the
same optimizer steps as 1 process with batch 2B. Plus bf16 autocast on the CPU.

The task is character-level language modelling on a small text, cut so that the training set
(112 chunks of 16 characters) divides into batches evenly: every step then holds 2B samples and the
same number of tokens on each side, so the updates agree to rounding. Layer norm and no dropout:
BatchNorm statistics over B differ from those over 2B, and dropout masks come from per-process RNGs.
"""
import json
import subprocess
import sys

import pytest
import torch

from spikessm.cli import main
from spikessm.train.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def lm_args(tmp_path_factory):
    words = "the quick brown fox jumps over a lazy dog while seven wizards box and hum".split()
    text = " ".join(words[(i * 7) % len(words)] for i in range(500))[:2000]
    assert len(text) == 2000  # 90% trains: 1800 characters, 112 chunks of 16 + 1
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(text)
    return ["--task", "chars", "--model", "s4d", "--epochs", "1", "--quiet",
            *[f"--set={kv}" for kv in (f"data.path={path}", "data.seq_len=16", "model.d_model=8",
                                       "model.n_layers=1", "model.d_state=4", "model.norm=layer",
                                       "model.dropout=0", "train.threads=1")]]


@pytest.fixture(scope="module")
def one_process_batch_8(lm_args, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    assert main(["train", *lm_args, "--set", "train.batch_size=8", "--out", str(out)]) == 0
    return out


def assert_same_weights(dir_a, dir_b, atol=1e-5):
    a, b = load_checkpoint(dir_a / "last.pt")["model"], load_checkpoint(dir_b / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_two_processes_with_batch_4_match_one_with_batch_8(lm_args, one_process_batch_8, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "spikessm", "train", *lm_args, "--set", "train.batch_size=4", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout.strip().splitlines()) == 1  # rank 0 alone reports
    assert "Grad strides do not match" not in result.stderr  # every gradient fits DDP's buckets
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert_same_weights(tmp_path, one_process_batch_8)
    single = json.loads((one_process_batch_8 / "summary.json").read_text())
    assert summary["test_ppl"] == pytest.approx(single["test_ppl"], rel=1e-5)


def test_two_accumulated_batches_of_4_match_one_batch_of_8(lm_args, one_process_batch_8, tmp_path):
    assert main(["train", *lm_args, "--set", "train.batch_size=4", "--set", "train.accumulate=2",
                 "--out", str(tmp_path)]) == 0
    assert_same_weights(tmp_path, one_process_batch_8)
    # the schedule counts optimizer steps: both runs end the epoch at the same learning rate
    assert load_checkpoint(tmp_path / "last.pt")["scheduler"]["last_epoch"] == 112 // 8


def test_bf16_autocast_trains_on_the_cpu(lm_args, one_process_batch_8, tmp_path):
    assert main(["train", *lm_args, "--set", "train.batch_size=8", "--set", "train.bf16=true",
                 "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    fp32 = json.loads((one_process_batch_8 / "metrics.jsonl").read_text())
    assert row["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.05)  # close, but in bf16:
    assert row["train_loss"] != fp32["train_loss"]
