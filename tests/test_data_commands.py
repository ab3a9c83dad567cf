"""`spikessm data generate|info`, through an argparse parser built the way the CLI builds it."""
import argparse

import pytest

from spikessm.data.commands import add_data_commands, parse_options
from spikessm.data.registry import get_task
from spikessm.errors import UserError


def run(*argv) -> int:
    parser = argparse.ArgumentParser(prog="spikessm")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_generate_listops_then_info(tmp_path, capsys):
    assert run("generate", "listops", "--out", str(tmp_path), "--train", "40", "--val", "5", "--test", "5",
               "--min-length", "10", "--max-length", "60", "--seed", "3") == 0
    assert (tmp_path / "listops-1000" / "basic_test.tsv").is_file()
    assert run("info", "listops", "--data-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "splits    train 40, val 5, test 5" in out and "vocab     17 token ids: <pad>, <unk>, [MIN" in out
    assert "classes   10" in out and "max" in out


def test_generate_pathfinder_then_info_with_options(tmp_path, capsys):
    assert run("generate", "pathfinder", "--out", str(tmp_path), "--count", "20", "--contour-length", "9") == 0
    assert (tmp_path / "pathfinder32" / "curv_contour_length_9" / "metadata" / "0.npy").is_file()
    assert run("info", "pathfinder", "--data-dir", str(tmp_path), "--set", "data.difficulty=curv_contour_length_9") == 0
    out = capsys.readouterr().out
    assert "splits    train 16, val 2, test 2" in out and "x (1024, 1) float32" in out and "classes   2" in out


def test_info_on_an_embedded_task(capsys):
    assert run("info", "sdigits") == 0
    assert "x (64, 1)" in capsys.readouterr().out


def test_parse_options_converts_and_rejects():
    task = get_task("pathfinder")
    options = parse_options(task, ["resolution=64", "data.split_seed=7"])
    assert options["resolution"] == 64 and options["split_seed"] == 7
    assert options["difficulty"] == "curv_contour_length_14"
    with pytest.raises(UserError, match="KEY one of resolution, difficulty, split_seed"):
        parse_options(task, ["colour=red"])
    with pytest.raises(UserError, match="resolution expects a value of type int"):
        parse_options(task, ["resolution=big"])


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="data not found"):
        run("info", "listops", "--data-dir", str(tmp_path))
    with pytest.raises(UserError, match="unknown task"):
        run("info", "nosuchtask")
    with pytest.raises(UserError, match="must not be negative"):
        run("generate", "listops", "--out", str(tmp_path), "--train", "-1")


def test_info_of_a_tensors_file_names_the_kind_the_file_decides(tmp_path, capsys):
    import numpy as np

    ids = np.random.default_rng(0).integers(0, 5, size=(20, 9))
    np.savez(tmp_path / "lm.npz", x=ids[:, :-1], y=ids[:, 1:], vocab_size=np.array(5))
    assert run("info", "tensors", "--set", f"data.path={tmp_path / 'lm.npz'}") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("(lm)") and "classes" not in out
