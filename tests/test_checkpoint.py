"""Checkpoint files from strangers, broken files, and a save killed half-way."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from spikessm.cli import main
from spikessm.train.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint


class CreatesFile:
    """Unpickling this object opens (so creates) ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def hostile(tmp_path):
    """A run directory whose last.pt (a copy of the checkpoint) would create ``pwned`` when loaded."""
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": FORMAT, "version": VERSION, "config": {}, "model": CreatesFile(marker)}, run / "last.pt")
    return run / "last.pt", marker


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(hostile, capsys):
    path, marker = hostile
    assert main(["eval", str(path)]) == 2
    assert "refused" in one_error_line(capsys) and not marker.exists()
    assert main(["train", "--resume", str(path.parent)]) == 2
    assert "refused" in one_error_line(capsys) and not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load does run it
    assert marker.exists()


@pytest.mark.parametrize("damage", ["random", "truncated", "text"])
def test_random_and_truncated_checkpoints_exit_2(damage, tmp_path, capsys):
    path = tmp_path / "last.pt"
    if damage == "random":
        path.write_bytes(os.urandom(4096))
    elif damage == "text":  # the weights-only unpickler fails on this one with an IndexError
        path.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    else:
        save_checkpoint(path, {"config": {}, "model": {"w": torch.randn(64, 64)}})
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["eval", str(path)]) == 2
    assert "not a checkpoint file" in one_error_line(capsys)
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a checkpoint file" in one_error_line(capsys)


def test_a_save_killed_before_the_rename_leaves_the_previous_checkpoint(tmp_path):
    """kill -9 lands after the new file is fully written and before it replaces the old one."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    script = textwrap.dedent(f"""
        import os, signal, torch
        from spikessm import files
        from spikessm.train import checkpoint
        files.os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.save_checkpoint({str(path)!r}, {{"model": {{"w": torch.ones(3)}}}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9, result.stderr
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(3))
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1  # the new checkpoint, complete but never renamed into place
