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
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


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
    assert err.count("hashed 3 data file(s)") == 1 and "decoded and cached" in err
    load_listops(tmp_path)
    err = capsys.readouterr().err
    assert err.count("hashed 3 data file(s)") == 1 and "read from the cache" in err


# ---------------------------------------------------------------- cases 3, 8, 9, 10: exit 2 and one line, never a traceback

def run_cli(argv, capsys):
    """(exit code, stderr lines) of an in-process `spikessm ARGV`; a traceback would raise here."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def preset(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


A_FILE = "{tmp}/a_file"  # a plain file made by the test: outputs "in" or "under" it cannot be written

CASES = [
    # case 3: sdn train learning rates
    (["sdn", "train", "--out", "{tmp}/sdn.pt", "--lr", "inf"], "--lr"),
    (["sdn", "train", "--out", "{tmp}/sdn.pt", "--lr", "0"], "--lr"),
    (["sdn", "train", "--out", "{tmp}/sdn.pt", "--lr", "-1"], "--lr"),
    (["sdn", "train", "--out", "{tmp}/sdn.pt", "--lr", "nan"], "--lr"),
    # case 8: output that cannot be written (checked before any long work)
    (["train", "--out", A_FILE, *TINY], "cannot write the run directory"),
    (["train", "--out", A_FILE + "/run", *TINY], "cannot write the run directory"),
    (["report", "{run}", "--out", A_FILE], "--out"),
    (["report", "{run}", "--out", A_FILE + "/x"], "--out"),
    (["data", "generate", "listops", "--out", A_FILE + "/x"], "cannot write"),
    (["data", "generate", "pathfinder", "--out", A_FILE, "--count", "2"], "cannot write"),
    (["sdn", "train", "--out", A_FILE + "/x.pt"], "cannot write"),
    (["sdn", "train", "--out", "{tmp}"], "is a directory"),
    (["bench", "neurons", "--out", A_FILE + "/x.md"], "cannot write"),
    (["bench", "model", "--out", A_FILE + "/x.md"], "cannot write"),
    # case 9: values
    (["train", "--seed", "-1", *TINY], "--seed"),
    (["train", "--seed", str(2 ** 32), *TINY], "--seed"),
    (["train", "--preset", "@seed: -3\n", *TINY], "seed=-3"),
    (["data", "generate", "listops", "--seed", "-1", "--out", "{tmp}/gen"], "--seed"),
    (["sdn", "eval", "--seed", str(2 ** 70)], "--seed"),
    (["train", "--set", "model=5", *TINY], "config key model: expected a mapping"),
    (["train", "--set", "model.name=[1,2]", *TINY], "config key model.name"),
    (["train", "--set", "task=[1]", *TINY], "config key task"),
    (["train", "--set", "model.d_model=", *TINY], "model.d_model"),
    (["train", "--preset", "@model: [1, 2]\n", *TINY], "config key model: expected a mapping"),
    (["train", "--preset", "@model: spikingssm\n", *TINY], "config key model: expected a mapping"),
    (["train", "--preset", "@task: [sdigits]\n", *TINY], "config key task"),
    (["train", "--preset", b"@task: \xff\xfe\n", *TINY], "not UTF-8"),
    (["train", "--set", "train.warmup_epochs=inf", *TINY], "train.warmup_epochs=inf must be a finite number"),
    (["train", "--set", "train.lr=nan", *TINY], "train.lr"),
    (["train", "--set", "train.device=meta", *TINY], "train.device='meta'"),
    (["eval", "{run}/best.pt", "--device", "meta"], "'meta'"),
    (["bench", "neurons", "--loop-limit", "nan", "--out", ""], "--loop-limit"),
    (["train", "--task", "listops", "--set", "data.l_max=0", *TINY], "data.l_max=0 must be > 0"),
    (["train", "--task", "listops", "--set", "data.l_max=-1", *TINY], "data.l_max=-1 must be > 0"),
    (["train", "--task", "", *TINY], "config key task"),
    (["train", "--model", "s4d-gsu", "--set", "model.gsu_threshold=-inf", *TINY], "gsu_threshold=-inf"),
]


@pytest.mark.parametrize("argv,needle", CASES, ids=[" ".join(map(str, a))[:60] for a, _ in CASES])
def test_user_errors_are_one_line_and_exit_2(argv, needle, tmp_path, finished_run, capsys):
    (tmp_path / "a_file").write_text("not a directory")
    argv = [preset(tmp_path, a[1:] if isinstance(a, str) else a[1:]) if isinstance(a, (str, bytes)) and
            a[:1] in ("@", b"@") else a.format(tmp=tmp_path, run=finished_run) for a in argv]
    before = snapshot(finished_run)
    code, lines = run_cli(argv, capsys)
    assert code == 2, lines
    assert len(lines) == 1 and needle in lines[0], lines
    assert snapshot(finished_run) == before
    assert not (tmp_path / "sdn.pt").exists() and not (tmp_path / "gen").exists()


def test_a_full_disk_mid_run_is_exit_2_and_the_last_checkpoint_survives(tmp_path, monkeypatch, capsys):
    import errno

    import spikessm.files as files

    out = tmp_path / "run"
    real, calls = files.os.fsync, []

    def fsync(fd):
        calls.append(1)
        if len(calls) > 4:  # config.yaml, metrics.jsonl and two checkpoints fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")  # as a full disk fails the flush
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    code, lines = run_cli(["train", "--epochs", "1", "--set", "train.checkpoint_every=2", "--out", str(out), *TINY],
                          capsys)
    assert code == 2, lines
    assert "No space left on device" in lines[-1] and str(out / "last.pt") in lines[-1]
    # the checkpoint of step 4 (config.yaml, metrics.jsonl, steps 2 and 4 were written; step 6 was not)
    assert all_finite(out / "last.pt") and load_checkpoint(out / "last.pt")["position"]["batches_done"] == 4
    assert not list(out.glob(".*.tmp")) and not (out / ".spikessm.lock").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folders_are_exit_2(tmp_path, finished_run, capsys):
    import shutil

    locked = tmp_path / "locked"
    locked.mkdir()
    run = tmp_path / "ro-run"
    shutil.copytree(finished_run, run)
    locked.chmod(0o555)
    run.chmod(0o555)
    try:
        for argv in (["train", "--out", str(locked / "run"), *TINY], ["train", "--resume", str(run), "--quiet"],
                     ["data", "generate", "listops", "--out", str(locked / "x")],
                     ["sdn", "train", "--out", str(locked / "x.pt")]):
            code, lines = run_cli(argv, capsys)
            assert code == 2 and len(lines) == 1, (argv, lines)
    finally:
        locked.chmod(0o755)
        run.chmod(0o755)


def test_sdn_training_that_diverges_writes_nothing(tmp_path, capsys, monkeypatch):
    import spikessm.neurons.sdn as sdn

    out = tmp_path / "sdn.pt"
    out.write_bytes(b"an earlier network")
    real = sdn.train_sdn

    def diverging(path, **kwargs):  # as --lr 1e30 does: a network of NaNs
        from spikessm.files import save_tensors

        save_tensors({"tau": torch.tensor(0.125), "w": torch.full((2,), math.nan)}, path)
        return {"path": str(path)}

    monkeypatch.setattr(sdn, "train_sdn", diverging)
    code, lines = run_cli(["sdn", "train", "--out", str(out)], capsys)
    assert code == 3 and "diverged" in lines[-1] and "nothing written" in lines[-1]
    assert out.read_bytes() == b"an earlier network" and sorted(p.name for p in tmp_path.iterdir()) == ["sdn.pt"]
    monkeypatch.setattr(sdn, "train_sdn", real)


# ---------------------------------------------------------------- cases 4, 6, 10: hostile data and checkpoint files

def write_cifar_python(folder, data, labels):
    import pickle

    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)


def good_pixels():
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (4, 3072)).astype(np.uint8)


@pytest.mark.parametrize("craft,needle", [
    (lambda d, l: (d.astype("float64") + 0.7, l), "pixels must be integers 0-255; got float64"),
    (lambda d, l: (d.astype("int64") + 300, l), "pixels must be integers 0-255; got int64 from 300"),
    (lambda d, l: (d, [3.7, 1.0, 2.0, 0.0]), "labels must be integers"),
])
def test_cifar_batches_are_never_cast_silently(tmp_path, craft, needle):
    from spikessm.data.registry import get_task
    from spikessm.errors import UserError

    data, labels = craft(good_pixels(), [3, 1, 2, 0])
    write_cifar_python(tmp_path / "cifar-10-batches-py", data, labels)
    task = get_task("scifar")
    with pytest.raises(UserError, match=needle):
        task.load(dict(task.options), tmp_path)


def test_empty_sequences_train_without_reading_as_divergence(tmp_path, capsys):
    folder = tmp_path / "listops-1000"
    folder.mkdir()
    rows = "".join(f"( ( [MAX {i % 10} ) ] )\t{i % 10}\n" for i in range(40))
    for split in ("train", "val", "test"):
        (folder / f"basic_{split}.tsv").write_text("Source\tTarget\n\t0\n" + rows)  # an empty expression first
    code, lines = run_cli(["train", "--task", "listops", "--data-dir", str(tmp_path), "--epochs", "1",
                           "--out", str(tmp_path / "run"), *TINY], capsys)
    assert code == 0, lines


def write_aan(data_dir, rows: str) -> None:
    """The three AAN splits under data_dir/tsv_data, each holding ``rows``."""
    folder = data_dir / "tsv_data"
    folder.mkdir()
    for split in ("train", "eval", "test"):
        (folder / f"new_aan_pairs.{split}.tsv").write_text(rows)


def test_an_empty_aan_document_is_read(tmp_path):
    from spikessm.data.collate import pad_collate
    from spikessm.data.registry import get_task

    write_aan(tmp_path, "1\tp1\tp2\t\t\n0\tp3\tp4\tab\tc\n")
    task = get_task("retrieval")
    splits = task.load(dict(task.options), tmp_path)
    x, y, lengths = pad_collate([splits.train[0], splits.train[1]])
    assert x.shape == (2, 2, 2) and lengths.tolist() == [[1, 1], [2, 1]]


def test_an_empty_split_is_exit_2(tmp_path, capsys):
    folder = tmp_path / "listops-1000"
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"basic_{split}.tsv").write_text("Source\tTarget\n" + ("( ( [MAX 2 ) ] )\t2\n" if split != "val" else ""))
    code, lines = run_cli(["train", "--task", "listops", "--data-dir", str(tmp_path), "--out",
                           str(tmp_path / "run"), *TINY], capsys)
    assert code == 2 and "spikessm: error: task listops: the val split holds no sample" == lines[-1].split(";")[0], lines


@pytest.mark.parametrize("craft,needle", [
    (lambda folder: (folder / "basic_val.tsv").write_bytes(b"Source\tTarget\n( [MAX 2 ] )\t2\n\xff\xfe\t1\n"),
     r"basic_val.tsv:3: not UTF-8"),
    (lambda folder: ((folder / "basic_val.tsv").unlink(), (folder / "basic_val.tsv").mkdir()),
     r"basic_val.tsv: a directory"),
])
def test_listops_files_that_are_not_text_are_one_line(tmp_path, craft, needle):
    from spikessm.errors import UserError

    write_listops(tmp_path / "listops-1000")
    craft(tmp_path / "listops-1000")
    with pytest.raises(UserError, match=needle):
        load_listops(tmp_path)


def test_an_aan_label_of_inf_is_a_bad_line(tmp_path):
    from spikessm.data.registry import get_task
    from spikessm.errors import UserError

    write_aan(tmp_path, "1\tp1\tp2\tab\tcd\ninf\tp3\tp4\tab\tc\n")
    task = get_task("retrieval")
    with pytest.raises(UserError, match=r"new_aan_pairs.train.tsv:2: label must be 0 or 1"):
        task.load(dict(task.options), tmp_path)


def test_idx_dims_whose_product_overflows_are_refused(tmp_path):
    import struct

    from spikessm.data.images import read_idx
    from spikessm.errors import UserError

    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1) + b"\0" * 16)
    with pytest.raises(UserError, match="header says"):
        read_idx(path, 3)
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2 ** 21, 2 ** 21, 2 ** 22))  # 2**64: wraps to 0 in int64
    with pytest.raises(UserError, match="header says"):
        read_idx(path, 3)


@pytest.mark.parametrize("command", ["eval", "stream", "report"])
@pytest.mark.parametrize("craft,needle", [
    (lambda c: c.update(config={"task": 5}), "training config is invalid"),
    (lambda c: c.update(config=["not", "a", "dict"]), "training config is a list"),
    (lambda c: c["config"]["train"].update(eval_batch_size=-4), "training config is invalid"),
    (lambda c: c["model"].pop(next(iter(c["model"]))), "missing tensor"),
])
def test_a_checkpoint_with_a_bad_config_or_weights_is_exit_2(tmp_path, finished_run, capsys, command, craft, needle):
    import shutil

    run = tmp_path / "bad"
    shutil.copytree(finished_run, run)
    ckpt = load_checkpoint(run / "best.pt")
    craft(ckpt)
    save_checkpoint(run / "best.pt", ckpt)
    code, lines = run_cli([command, str(run if command == "report" else run / "best.pt")], capsys)
    if command == "report":  # the report comes from summary.json and metrics.jsonl; only the raster needs the model
        assert code == 0 and needle in (run / "report" / "report.md").read_text(), lines
        return
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines


# ---------------------------------------------------------------- case 11: signals

def test_sigint_during_start_up_is_one_line_130(tmp_path):
    import signal
    import time

    for delay in (0.3, 1.5):  # while importing torch, then while loading the data or building the model
        proc = subprocess.Popen([sys.executable, "-m", "spikessm", "train", "--out", str(tmp_path / f"r{delay}"),
                                 *TINY], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        assert err.strip().splitlines()[-1].startswith("spikessm: interrupted by SIGINT")


def test_sigterm_then_sigint_reports_143(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "spikessm", "train", "--epochs", "2", "--out", str(out),
                             "--set", "train.checkpoint_every=3", *TINY],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    for _ in range(10):  # SIGINTs while it saves, and after it has said why it stops
        time.sleep(0.03)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted by SIGTERM" in err.strip().splitlines()[-1]


# ---------------------------------------------------------------- several processes: workers and torchrun

def write_listops_rows(folder, n=60):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        (folder / f"basic_{split}.tsv").write_text(
            "Source\tTarget\n" + "".join(f"( ( ( [MAX {i % 10} ) {i % 7} ) ] )\t{max(i % 10, i % 7)}\n"
                                         for i in range(n)))


def test_dataloader_workers_on_a_file_backed_task(tmp_path, capsys):
    write_listops_rows(tmp_path / "data" / "listops-1000")
    code, lines = run_cli(["train", "--task", "listops", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                           "--set", "train.num_workers=2", "--out", str(tmp_path / "run"), *TINY], capsys)
    assert code == 0, lines
    assert strict_json((tmp_path / "run" / "summary.json").read_text())["task"] == "listops"


def test_torchrun_with_a_bad_data_file_is_one_line_and_no_hang(tmp_path):
    folder = tmp_path / "data" / "listops-1000"
    write_listops_rows(folder)
    (folder / "basic_val.tsv").write_text("Source\tTarget\n( [MAX 1 ] )\tX\n")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "spikessm", "train", "--task", "listops", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
         "--out", str(tmp_path / "run"), *TINY], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0  # torchrun reports the failed processes itself
    errors = [line for line in result.stderr.splitlines() if line.startswith("spikessm: error:")]
    assert errors == [f"spikessm: error: {folder / 'basic_val.tsv'}:2: expected '<expression><TAB><digit 0-9>'"]
    assert "exitcode: 2" in result.stderr.replace("exitcode  : 2", "exitcode: 2")
    assert not (tmp_path / "run" / "config.yaml").exists()
