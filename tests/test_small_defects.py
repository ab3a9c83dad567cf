"""Small defects found while reading the code (issue: spikessm as a library, item 7)."""
import os

import torch

from spikessm.files import write_atomically
from spikessm.neurons import lif


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomically(tmp_path / "a.txt", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    write_atomically(tmp_path / "b.txt", lambda f: f.write(b"x"))
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o666 & ~old


def test_sdn_takes_a_threshold_tensor_of_another_dtype():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 64)
    spikes = lif(x, 0.125, torch.full((4,), 1.5, dtype=torch.float64), backend="sdn")
    assert spikes.dtype == x.dtype
    assert torch.equal(spikes, lif(x, 0.125, torch.full((4,), 1.5), backend="sdn"))


def test_bench_neurons_writes_its_table_into_the_checkout_or_nowhere(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    import spikessm.neurons.benchmark as benchmark
    from spikessm.cli import benchmarks_markdown, main

    assert benchmarks_markdown("") is None
    assert benchmarks_markdown("x.md") == "x.md"
    default = benchmarks_markdown(None)  # not relative to wherever the command runs
    assert default is None or (Path(default).is_absolute() and Path(default).parent.name == "docs")
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(benchmark, "run_neuron_benchmark", fake)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "neurons", "--out", ""]) == 0
    assert seen["out_md"] is None and "no table written" in capsys.readouterr().out
