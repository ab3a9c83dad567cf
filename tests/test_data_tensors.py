"""Task tensors: one's own .npz/.pt file from the command line, parsed exactly, bad files refused."""
import numpy as np
import pytest
import torch

from spikessm.cli import main
from spikessm.data.loading import load_data
from spikessm.errors import UserError
from spikessm.train.config import build_config


def splits_of(path, *sets):
    return load_data(build_config(task="tensors", sets=[f"data.path={path}", *sets]))


def test_ready_made_splits_and_lengths_are_taken_as_given(tmp_path):
    x = np.arange(5 * 4 * 2, dtype=np.float32).reshape(5, 4, 2)
    y = np.array([2, 0, 1, 0, 2])
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, lengths=np.array([4, 1, 2, 3, 4]), split=np.array([0, 2, 0, 1, 0]))
    task, splits = splits_of(path)
    assert (task.kind, task.seq_len, splits.n_classes, splits.d_input, splits.vocab_size) == ("classify", 4, 3, 2, None)
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [3, 1, 1]
    xs, label = splits.train[1]  # the file's sample 2, its first 2 steps
    assert torch.equal(xs, torch.tensor(x[2, :2])) and int(label) == 1
    xs, label = splits.test[0]  # sample 1, one step
    assert torch.equal(xs, torch.tensor(x[1, :1])) and int(label) == 0
    batch_x, batch_y, lengths = splits.collate([splits.train[i] for i in range(3)])
    assert batch_x.shape == (3, 4, 2) and lengths.tolist() == [4, 2, 4] and batch_y.tolist() == [2, 1, 2]
    assert torch.equal(batch_x[1, 2:], torch.zeros(2, 2))


def test_a_seeded_split_of_token_ids_for_language_modelling(tmp_path):
    ids = np.random.default_rng(0).integers(0, 9, size=(40, 7))
    path = tmp_path / "lm.pt"
    torch.save({"x": torch.tensor(ids[:, :-1]), "y": torch.tensor(ids[:, 1:]), "vocab_size": 12}, path)
    task, splits = splits_of(path, "data.val_fraction=0.25", "data.test_fraction=0.25")
    assert (task.kind, splits.vocab_size, splits.n_classes, splits.d_input) == ("lm", 12, 12, None)
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [20, 10, 10]
    rows = sorted(tuple(splits.train[i][0].tolist()) + tuple(splits.train[i][1].tolist()[-1:]) for i in range(20))
    rows += [tuple(s[i][0].tolist()) + tuple(s[i][1].tolist()[-1:]) for s in (splits.val, splits.test)
             for i in range(10)]
    assert sorted(rows) == sorted(tuple(r) for r in ids.tolist())  # every sample once, targets aligned
    again = splits_of(path, "data.val_fraction=0.25", "data.test_fraction=0.25")[1]
    assert torch.equal(again.test[0][0], splits.test[0][0])  # the split does not depend on anything else


def write(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


X = np.zeros((4, 3, 1), np.float32)
Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("arrays, needle", [
    ({"y": Y}, "missing key 'x'"),
    ({"x": X}, "missing key 'y'"),
    ({"x": X, "y": Y, "z": Y}, "unknown key 'z'"),
    ({"x": X.astype(np.float64)[..., 0].astype(np.float32), "y": Y}, "key 'x': expected integers"),
    ({"x": np.zeros((4, 3, 1, 1), np.float32), "y": Y}, "key 'x': expected (N, L, D) floats"),
    ({"x": X, "y": Y[:3]}, "key 'y': expected (4,) labels"),
    ({"x": X, "y": Y.astype(np.float32)}, "key 'y': expected integers"),
    ({"x": X, "y": Y - 1}, "key 'y': labels must be >= 0"),
    ({"x": X, "y": Y, "n_classes": np.array(1)}, "key 'y': label 1 out of range"),
    ({"x": np.where(np.arange(12).reshape(4, 3, 1) == 5, np.nan, 0).astype(np.float32), "y": Y}, "key 'x': holds NaN"),
    ({"x": X, "y": Y, "lengths": np.array([1, 2, 3, 4])}, "key 'lengths': values must lie in [1, 3]"),
    ({"x": X, "y": Y, "split": np.array([0, 0, 1, 1])}, "key 'split': no sample is marked 2"),
    ({"x": X, "y": Y, "split": np.array([0, 1, 2, 3])}, "key 'split': values must be"),
])
def test_bad_files_exit_2_naming_the_file_and_the_key(tmp_path, capsys, arrays, needle):
    path = write(tmp_path, **arrays)
    assert main(["train", "--task", "tensors", "--set", f"data.path={path}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and needle in err[0], err


def test_object_arrays_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=Y)
    with pytest.raises(UserError, match="unreadable .npz"):
        splits_of(path)
    with pytest.raises(UserError, match="no file at"):
        splits_of(tmp_path / "none.npz")


def test_a_tensors_run_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 16, 1)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", x=x, y=(x.mean((1, 2)) > 0).astype(np.int64))
    assert main(["train", "--task", "tensors", "--set", f"data.path={tmp_path / 'mine.npz'}", "--epochs", "1",
                 "--set", "model.d_model=8", "--set", "model.n_layers=1", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert '"task": "tensors"' in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "run")]) == 0
