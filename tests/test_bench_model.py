"""`spikessm bench model` at tiny sizes: rows, the Markdown section, and its one-line errors."""
import pytest

from spikessm.cli import main
from spikessm.train.benchmark import ann_twin, measure_step, ratio, run_model_benchmark, sequence_length
from spikessm.train.config import build_config

TINY = ["model.d_model=8", "model.n_layers=1", "model.d_state=4"]


def test_a_case_and_its_ann_twin_are_measured_in_child_processes(tmp_path):
    out = tmp_path / "BENCH.md"
    out.write_text("# Benchmarks\n\n## Neurons\n\nkept\n")
    rows = run_model_benchmark(task="sdigits", sets=TINY, batch=2, length=16, repeats=1, out_md=out,
                               progress=False)
    (row,) = rows
    assert row["model"] == "spikingssm" and row["length"] == 16 and row["batch"] == 2
    for prefix in ("", "ann_"):
        assert row[prefix + "seconds"] > 0 and row[prefix + "peak_bytes"] > 1e7  # torch alone is ~0.3 GB
    assert row["params"] > row["ann_params"]  # the twin lacks the learnable thresholds
    text = out.read_text()
    assert "## Neurons\n\nkept" in text and "## Models" in text
    assert "spikessm bench model --task sdigits --batch 2 --length 16 --repeats 1" in text
    assert "| --task sdigits --model spikingssm | 2 | 16 |" in text
    assert row["cpu_seconds"] > 0 and float(ratio(row)) > 0


def test_the_twin_keeps_backbone_and_ssm_and_drops_block_options():
    cfg = build_config(preset="spikingssm/listops")
    twin = ann_twin(cfg)
    assert twin["model"]["name"] == "s4d" and "tau" not in twin["model"]
    for key in ("d_model", "n_layers", "d_state", "bidirectional", "norm", "prenorm"):
        assert twin["model"][key] == cfg["model"][key]
    assert sequence_length(cfg) == 2048
    assert sequence_length(build_config(preset="spikingssm/wikitext103")) == 8192


@pytest.mark.parametrize("task", ["sdigits", "listops", "retrieval", "chars"])
def test_a_step_runs_for_every_task_kind(task):
    cfg = build_config(task=task, sets=TINY)
    result = measure_step(cfg, batch=2, length=8, repeats=1, device="cpu", threads=1)
    assert result["seconds"] > 0 and result["params"] > 0


@pytest.mark.parametrize("argv,message", [
    (["--preset", "spikingssm/nope"], "unknown preset 'spikingssm/nope'"),
    (["--batch", "0"], "--batch: must be >= 1"),
    (["--length", "-3"], "--length: must be >= 1"),
    (["--all", "--preset", "spikingssm/listops"], "give --all or --preset, not both"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    try:
        code = main(["bench", "model", *argv, "--out", ""])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
