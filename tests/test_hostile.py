"""Hostile inputs and faults (issue 13): no NaN model kept as good, no file read outside the data,
no clobbered runs, and exit 2 (one line, no traceback) instead of a traceback.

Each group names the case of the issue it covers.
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from spikessm.cli import main
from spikessm.train import loop
from spikessm.train.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--quiet", *[f"--set={kv}" for kv in ("model.d_model=8", "model.n_layers=1", "model.d_state=4",
                                              "train.threads=1", "train.batch_size=16")]]


def strict_json(text):
    """json.loads that refuses the bare NaN / Infinity that Python's json writes by default."""
    def refuse(name):
        raise AssertionError(f"bare {name} in JSON")
    return json.loads(text, parse_constant=refuse)


def all_finite(path):
    return all(torch.isfinite(t).all() for t in load_checkpoint(path)["model"].values() if t.is_floating_point())


def last_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    return err[-1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    return out


# ---------------------------------------------------------------- case 1: no NaN model kept as good

@pytest.mark.parametrize("extra", [[], ["--set", "train.skip_nonfinite=true", "--set", "train.warmup_epochs=0"]])
def test_a_huge_learning_rate_never_saves_nan_weights(tmp_path, capsys, extra):
    out = tmp_path / "run"
    code = main(["train", "--epochs", "2", "--set", "train.lr=1e6", "--set", "train.checkpoint_every=1",
                 "--out", str(out), *TINY, *extra])
    assert code == 3
    assert "non-finite" in last_line(capsys)
    for name in ("last.pt", "best.pt"):
        if (out / name).exists():
            assert all_finite(out / name), name
    for line in (out / "metrics.jsonl").read_text().splitlines():
        strict_json(line)


def test_the_divergence_message_says_when_no_checkpoint_exists(tmp_path, monkeypatch, capsys):
    real = loop.loss_and_hits
    monkeypatch.setattr(loop, "loss_and_hits", lambda *a: (lambda r: (r[0] * math.nan, r[1], r[2]))(real(*a)))
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), *TINY]) == 3
    line = last_line(capsys)
    assert "no checkpoint was saved" in line and "untouched" not in line
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_nan_validation_loss_is_never_best_and_is_logged_as_null(tmp_path, monkeypatch, capsys):
    real = loop.evaluate

    def nan_loss(*args, **kwargs):
        return {**real(*args, **kwargs), "loss": math.nan}

    monkeypatch.setattr(loop, "evaluate", nan_loss)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 3
    assert "no epoch had a finite validation loss" in last_line(capsys)
    assert not (out / "best.pt").exists() and not (out / "summary.json").exists()
    row = strict_json((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["val_loss"] is None
    assert all_finite(out / "last.pt")


def test_summary_json_has_no_bare_nan(tmp_path, monkeypatch):
    real = loop.evaluate_with_metrics
    monkeypatch.setattr(loop, "evaluate_with_metrics", lambda *a, **k: {**real(*a, **k), "loss": math.inf})
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert strict_json((out / "summary.json").read_text())["test_loss"] is None


@pytest.mark.parametrize("command", ["eval", "stream", "export"])
def test_eval_and_stream_refuse_nan_weights(finished_run, tmp_path, command):
    ckpt = load_checkpoint(finished_run / "best.pt")
    name = next(iter(k for k, v in ckpt["model"].items() if v.is_floating_point()))
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], math.nan)
    run = tmp_path / "nan"
    run.mkdir()
    save_checkpoint(run / "best.pt", ckpt)
    argv = [command, str(run if command == "export" else run / "best.pt")]
    if command == "export":
        argv += ["--out", str(tmp_path / "exported")]
    result = subprocess.run([sys.executable, "-m", "spikessm", *argv], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "non-finite" in lines[0] and name in lines[0]


# ---------------------------------------------------------------- case 7: no file read outside the data

def write_pathfinder(data_dir, n=8):
    """A pathfinder32/curv_contour_length_14 folder of ``n`` random images; returns the folder."""
    import numpy as np
    from PIL import Image

    folder = data_dir / "pathfinder32" / "curv_contour_length_14"
    (folder / "imgs" / "0").mkdir(parents=True)
    (folder / "metadata").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(1, 256, (32, 32), dtype=np.uint8)).save(folder / "imgs" / "0" / f"sample_{i}.png")
    (folder / "metadata" / "0.npy").write_text("".join(f"imgs/0 sample_{i}.png {i} {i % 2}\n" for i in range(n)))
    return folder


def load_pathfinder(data_dir):
    from spikessm.data.registry import get_task

    task = get_task("pathfinder")
    return task.load(dict(task.options), data_dir)


def outside_image(tmp_path):
    import numpy as np
    from PIL import Image

    path = tmp_path / "secret.png"
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("row", ["../../../secret.png", "/ABS", "imgs/0/../../../../secret.png", "imgs/0 ../x.png"])
def test_a_metadata_row_naming_a_path_outside_the_data_is_refused(tmp_path, capsys, row):
    secret = outside_image(tmp_path)
    data = tmp_path / "data"
    folder = write_pathfinder(data)
    row = row.replace("/ABS", str(secret))
    fields = row.split() if " " in row else [os.path.dirname(row) or ".", os.path.basename(row)]
    with open(folder / "metadata" / "0.npy", "a") as f:
        f.write(f"{fields[0]} {fields[1]} 8 1\n")
    assert main(["train", "--task", "pathfinder", "--data-dir", str(data), "--out", str(tmp_path / "run"), *TINY]) == 2
    line = last_line(capsys)
    assert f"{folder / 'metadata' / '0.npy'}:9:" in line and "outside" in line
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_symlinks_inside_the_data_may_not_lead_out_of_it(tmp_path):
    from spikessm.errors import UserError

    secret = outside_image(tmp_path)
    data = tmp_path / "data"
    folder = write_pathfinder(data)
    link = folder / "imgs" / "0" / "sample_3.png"
    link.unlink()
    link.symlink_to(secret)  # a crafted archive's link to a file outside
    with pytest.raises(UserError, match=r"0\.npy:4: the image path 'imgs/0/sample_3.png' leads outside"):
        load_pathfinder(data)
    link.unlink()
    link.symlink_to(folder / "imgs" / "0" / "sample_2.png")  # a link inside the folder is allowed
    assert len(load_pathfinder(data).train) > 0
    (tmp_path / "elsewhere").mkdir()
    (folder / "imgs" / "0").rename(tmp_path / "elsewhere" / "0")
    (folder / "imgs" / "0").symlink_to(tmp_path / "elsewhere" / "0")  # a linked image folder leads out
    with pytest.raises(UserError, match=r"0\.npy:1: .* leads outside"):
        load_pathfinder(data)


def test_a_data_directory_that_is_a_symlink_is_allowed(tmp_path):
    real = tmp_path / "disk"
    write_pathfinder(real)
    (tmp_path / "data").symlink_to(real)
    assert len(load_pathfinder(tmp_path / "data").train) > 0


def test_pathfinder_metadata_not_utf8_is_one_line(tmp_path, capsys):
    folder = write_pathfinder(tmp_path / "data")
    with open(folder / "metadata" / "0.npy", "ab") as f:
        f.write(b"imgs/0 sample_\xff.png 9 1\n")
    assert main(["train", "--task", "pathfinder", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run"), *TINY]) == 2
    line = last_line(capsys)
    assert "0.npy:9: not UTF-8" in line


# ---------------------------------------------------------------- case 2: a run directory belongs to one run

def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_new_run_into_a_finished_runs_folder_is_refused(finished_run, capsys):
    before = snapshot(finished_run)
    assert main(["train", "--epochs", "1", "--out", str(finished_run), *TINY]) == 2
    line = last_line(capsys)
    assert "holds another run's files (config.yaml, metrics.jsonl, best.pt, last.pt, summary.json)" in line
    assert "--overwrite" in line and "--resume" in line
    assert snapshot(finished_run) == before


def test_overwrite_says_what_it_replaces(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    (out / "report").mkdir()
    first = (out / "summary.json").read_text()
    capsys.readouterr()
    assert main(["train", "--epochs", "1", "--seed", "7", "--out", str(out), "--overwrite", *TINY]) == 0
    err = capsys.readouterr().err
    assert "--overwrite: removing the previous run's config.yaml, metrics.jsonl, best.pt, last.pt, summary.json, " \
           "report from" in err
    assert not (out / "report").exists() and json.loads((out / "summary.json").read_text())["seed"] == 7
    assert first != (out / "summary.json").read_text()


def test_overwrite_loses_nothing_when_the_new_run_cannot_start(finished_run, capsys):
    before = snapshot(finished_run)
    assert main(["train", "--epochs", "1", "--task", "pathfinder", "--data-dir", str(finished_run),
                 "--out", str(finished_run), "--overwrite", *TINY]) == 2
    assert "data not found" in last_line(capsys)
    assert snapshot(finished_run) == before


def test_a_folder_in_use_by_a_running_run_is_refused(tmp_path, finished_run, capsys):
    from spikessm.train.rundir import RunLock

    out = tmp_path / "run"
    with RunLock(out):  # as a run training into it holds it
        assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 2
        assert f"{out} is in use by another spikessm run (process {os.getpid()})" in last_line(capsys)
        assert snapshot(out) == {".spikessm.lock": f"{os.getpid()}\n".encode()}
    assert not (out / ".spikessm.lock").exists()
    run, _ = resume_fixture(tmp_path, finished_run)
    before = snapshot(run)
    with RunLock(run):
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
        assert "is in use by another spikessm run" in last_line(capsys)
    assert snapshot(run) == before


def test_two_runs_at_once_one_is_refused(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "spikessm", "train", "--epochs", "1", "--out", str(out), *TINY]
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert ("in use by another spikessm run" in refused or "holds another run's files" in refused), refused
    assert "Traceback" not in refused


def test_a_stale_lock_is_taken_over_and_every_exit_releases_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".spikessm.lock").write_text("999999\n")  # left by a process killed with SIGKILL
    real = loop.loss_and_hits
    monkeypatch.setattr(loop, "loss_and_hits", lambda *a: (lambda r: (r[0] * math.nan, r[1], r[2]))(real(*a)))
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 3  # diverged: still released
    assert not (out / ".spikessm.lock").exists()


def resume_fixture(tmp_path, finished_run):
    """A copy of the finished run, to resume with a doctored last.pt."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    return run, load_checkpoint(run / "last.pt")


def test_resume_with_a_foreign_last_pt_changes_nothing(tmp_path, finished_run, capsys):
    other = tmp_path / "other"
    assert main(["train", "--epochs", "1", "--seed", "5", "--out", str(other), *TINY]) == 0
    run, _ = resume_fixture(tmp_path, finished_run)
    (run / "last.pt").write_bytes((other / "last.pt").read_bytes())
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    assert "belongs to another run: its config differs from" in last_line(capsys)
    assert snapshot(run) == before


def nan_weights(ckpt):
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = torch.zeros(3)
    return ckpt


@pytest.mark.parametrize("doctor,needle", [
    (lambda c: c.pop("rng"), "no valid 'rng' entry"),                    # case 10: no RNG state
    (lambda c: c.update(rng=[]), "RNG states or metrics are malformed"),
    (lambda c: c.update(position={"epochs_done": -1}), "training position"),
    (nan_weights, "has shape (3,)"),                                     # weights that do not fit the model
    (lambda c: c["optimizer"]["state"][0].update(exp_avg=torch.zeros(2, 2)), "do not fit this run"),  # foreign optimizer
    (lambda c: c["optimizer"].update(param_groups=[]), "do not fit this run"),
    (lambda c: c.update(scheduler={"last_epoch": "x"}), "do not fit this run"),
])
def test_resume_with_a_doctored_last_pt_exits_2_and_changes_nothing(tmp_path, finished_run, capsys, doctor, needle):
    run, ckpt = resume_fixture(tmp_path, finished_run)
    doctor(ckpt)
    save_checkpoint(run / "last.pt", ckpt)
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2  # a traceback would raise here
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert snapshot(run) == before


# ---------------------------------------------------------------- case 5: the data cache trusts nothing but content

def write_listops(folder, label=3):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        (folder / f"basic_{split}.tsv").write_text(f"Source\tTarget\n( ( [MAX {label} ) ] )\t{label}\n"
                                                   f"( ( [MIN 4 ) ] )\t4\n")


def load_listops(data_dir):
    from spikessm.data.registry import get_task

    task = get_task("listops")
    return task.load(dict(task.options), data_dir)


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def test_an_edit_keeping_size_and_mtime_is_noticed(tmp_path, user_cache):
    write_listops(tmp_path / "listops-1000", label=3)
    assert int(load_listops(tmp_path).train[0][1]) == 3
    for path in (tmp_path / "listops-1000").glob("*.tsv"):
        stat = path.stat()
        path.write_text(path.read_text().replace("3", "7"))  # same size
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: as cp -p, rsync -t, tar
    assert int(load_listops(tmp_path).train[0][1]) == 7


def test_a_crafted_or_misshapen_cache_entry_is_rebuilt(tmp_path, user_cache, caplog):
    from spikessm.data.cache import CACHE_DIR_NAME

    write_listops(tmp_path / "listops-1000")
    load_listops(tmp_path)
    entry_path, = (tmp_path / "listops-1000" / CACHE_DIR_NAME).glob("listops-*.pt")
    entry = torch.load(entry_path, weights_only=True)
    for craft in (lambda d: d["train"].update(offsets=torch.tensor([0, 999, 1000])),  # reads past the tokens
                  lambda d: d["train"].update(tokens=torch.full_like(d["train"]["tokens"], 250)),  # ids off the vocabulary
                  lambda d: d["train"].update(labels=torch.tensor([42, 1])),
                  lambda d: d.pop("test"),
                  lambda d: d.clear() or d.update(train="not a split")):
        data = {split: dict(part) for split, part in entry["data"].items()}
        craft(data)
        torch.save({**entry, "data": data}, entry_path)  # the right key and fingerprint
        caplog.clear()
        with caplog.at_level("WARNING"):
            splits = load_listops(tmp_path)
        assert "not the structure listops stores" in caplog.text
        assert [int(splits.train[i][1]) for i in range(2)] == [3, 4]
    torch.save(["not", "an", "entry"], entry_path)
    assert [int(load_listops(tmp_path).train[i][1]) for i in range(2)] == [3, 4]


def test_a_relative_and_an_absolute_data_dir_share_the_cache(tmp_path, user_cache, monkeypatch):
    from spikessm.data.cache import cached

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("abc")
    calls = []

    def build():
        calls.append(1)
        return {"n": torch.tensor(3)}

    cached("demo", folder, [folder / "a.txt"], {}, build)
    monkeypatch.chdir(tmp_path)
    relative = folder.relative_to(tmp_path)
    cached("demo", relative, [relative / "a.txt"], {}, build)
    assert len(calls) == 1


def test_the_hashing_time_is_printed_once(tmp_path, user_cache, capsys):
    write_listops(tmp_path / "listops-1000")
    load_listops(tmp_path)
    err = capsys.readouterr().err
    assert err.count("hashed 3 data file(s)") == 1 and "to check the cache" in err
