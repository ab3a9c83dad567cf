"""The command line: a real (tiny) run, re-evaluation, and the error contract."""
import json
import os
import subprocess
import sys

import pytest

from spikessm.cli import main
from spikessm.models import all_models, get_model_spec

TINY = ["--epochs", "1", "--set", "model.d_model=8", "--set", "model.n_layers=1",
        "--set", "model.d_state=4", "--quiet"]
CONTRACT_KEYS = {"task", "model", "test_accuracy", "firing_rate", "firing_rates", "energy", "params",
                 "train_seconds", "epochs"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--model", "s4d", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_the_contract_files(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert CONTRACT_KEYS <= set(summary)
    assert summary["task"] == "sdigits" and summary["epochs"] == 1
    assert 0 <= summary["test_accuracy"] <= 1
    assert set(summary["energy"]) >= {"mac", "ac", "energy_j", "ann_energy_j"}
    assert summary["energy"]["mac"] > 0
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and {"train_loss", "val_accuracy", "lr", "seconds"} <= set(json.loads(lines[0]))
    assert (run_dir / "config.yaml").is_file() and (run_dir / "best.pt").is_file()


def test_eval_reproduces_the_test_accuracy(run_dir, capsys):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert main(["eval", str(run_dir / "best.pt")]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {summary['test_accuracy']:.4f}" in out


def test_saved_config_reruns_as_a_preset(run_dir, tmp_path):
    assert main(["train", "--preset", str(run_dir / "config.yaml"), "--out", str(tmp_path), "--quiet"]) == 0
    first = json.loads((run_dir / "summary.json").read_text())
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["test_accuracy"] == first["test_accuracy"]  # CPU runs are deterministic


@pytest.mark.parametrize("argv,needle", [
    (["train", "--task", "nope"], "unknown task 'nope'"),
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--set", "model.nope=1"], "unknown config key 'model.nope'"),
    (["train", "--set", "train.lr=-1"], "train.lr"),
    (["train", "--set", "model.d_model=abc"], "model.d_model"),
    (["train", "--epochs", "-3"], "--epochs"),
    (["eval", "/no/such/file.pt"], "does not exist"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_exit_2_with_one_line(argv, needle):
    result = subprocess.run([sys.executable, "-m", "spikessm", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_lists(capsys):
    assert main(["tasks"]) == 0 and "sdigits" in capsys.readouterr().out
    assert main(["models"]) == 0 and "s4d" in capsys.readouterr().out


def test_stream_matches_the_parallel_pass(run_dir, capsys):
    assert main(["stream", str(run_dir / "best.pt"), "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("matches the parallel pass") == 2 and "per-step latency" in out


def every_model():

    return list(all_models())


@pytest.mark.parametrize("model", every_model())
def test_every_model_trains_and_reports(model, tmp_path):
    assert main(["train", "--model", model, "--task", "sdigits", "--epochs", "2", "--out", str(tmp_path),
                 *TINY[2:]]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["model"] == model
    if not get_model_spec(model).spiking:  # s4d, transformer: every operation a MAC
        assert summary["firing_rate"] is None and summary["energy"]["ac"] == 0
        assert summary["energy"]["energy_j"] == pytest.approx(summary["energy"]["ann_energy_j"])
    else:
        assert 0 < summary["firing_rate"] < 1 and summary["firing_rates"]
        assert summary["energy"]["energy_j"] < summary["energy"]["ann_energy_j"]


def test_a_closed_pipe_ends_a_listing_quietly():
    """`spikessm tasks | head -1`: no traceback when the reader has gone (here: before the first line)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "spikessm", "tasks"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == ""


def test_tasks_says_when_the_users_file_decides_the_shape(capsys):
    assert main(["tasks"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "L=file" in lines["tensors"] and "[your file]" in lines["tensors"] and "L=0" not in lines["tensors"]
    assert "L=64" in lines["sdigits"] and "classify" in lines["sdigits"]
