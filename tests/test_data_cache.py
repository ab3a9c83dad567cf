"""The decoded-data cache: reuse, invalidation, read-only fallback, damaged entries; shared helpers."""
import os

import pytest
import torch

from spikessm.data.cache import CACHE_DIR_NAME, cached
from spikessm.data.common import Vocab, random_split, split_sizes
from spikessm.data.registry import get_task


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache" / "spikessm"


def make_source(tmp_path, text="abc"):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / "source.txt").write_text(text)
    return folder


def counting_build(folder, calls):
    def build():
        calls.append(1)
        return {"ids": torch.tensor([ord(c) for c in (folder / "source.txt").read_text()])}
    return build


def test_cache_reuses_and_invalidates_on_change(tmp_path):
    folder, calls = make_source(tmp_path), []
    load = lambda options={}: cached("demo", folder, [folder / "source.txt"], options,  # noqa: E731
                                     counting_build(folder, calls))
    assert load()["ids"].tolist() == [97, 98, 99] and len(calls) == 1
    assert load()["ids"].tolist() == [97, 98, 99] and len(calls) == 1  # from the cache
    assert len(list((folder / CACHE_DIR_NAME).glob("demo-*.pt"))) == 1
    (folder / "source.txt").write_text("abcd")  # size and mtime change
    assert load()["ids"].tolist() == [97, 98, 99, 100] and len(calls) == 2
    stat = (folder / "source.txt").stat()
    (folder / "source.txt").write_text("xyzw")  # same size ...
    os.utime(folder / "source.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # ... later mtime
    assert load()["ids"].tolist() == [120, 121, 122, 119] and len(calls) == 3
    load({"l_max": 3})  # other options: another entry
    assert len(calls) == 4 and len(list((folder / CACHE_DIR_NAME).glob("demo-*.pt"))) == 2
    assert not list((folder / CACHE_DIR_NAME).glob("*.tmp"))  # written atomically, nothing left over


def test_cache_falls_back_to_user_cache_when_the_data_folder_is_not_writable(tmp_path, user_cache):
    folder, calls = make_source(tmp_path), []
    (folder / CACHE_DIR_NAME).write_text("a file where the cache folder would go")  # so it cannot be made
    for _ in range(2):
        cached("demo", folder, [folder / "source.txt"], {}, counting_build(folder, calls))
    assert len(calls) == 1 and len(list(user_cache.glob("demo-*.pt"))) == 1


def test_damaged_cache_entry_is_rebuilt(tmp_path, caplog):
    folder, calls = make_source(tmp_path), []
    cached("demo", folder, [folder / "source.txt"], {}, counting_build(folder, calls))
    entry, = (folder / CACHE_DIR_NAME).glob("demo-*.pt")
    entry.write_bytes(b"truncated")
    with caplog.at_level("WARNING"):
        result = cached("demo", folder, [folder / "source.txt"], {}, counting_build(folder, calls))
    assert result["ids"].tolist() == [97, 98, 99] and len(calls) == 2 and "unreadable cache" in caplog.text


def test_loader_cache_follows_the_source_file(tmp_path):
    folder = tmp_path / "listops-1000"
    folder.mkdir()

    def write(label):
        for split in ("train", "val", "test"):
            (folder / f"basic_{split}.tsv").write_text(f"Source\tTarget\n( ( [MAX {label} ) ] )\t{label}\n")

    task = get_task("listops")
    write(3)
    assert int(task.load(task.options, tmp_path).train[0][1]) == 3
    write(7)
    assert int(task.load(task.options, tmp_path).train[0][1]) == 7


def test_split_helpers():
    assert split_sizes(10, (0.8, 0.1, 0.1)) == [8, 1, 1] and split_sizes(7, (0.9, 0.1)) == [6, 1]
    parts = random_split(20, (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [16, 2, 2]
    assert sorted(torch.cat(parts).tolist()) == list(range(20))
    assert all(torch.equal(a, b) for a, b in zip(parts, random_split(20, (0.8, 0.1, 0.1), seed=3)))


def test_vocab():
    vocab = Vocab(["b", "a", "b", "<unk>"])
    assert vocab.itos == ["<pad>", "<unk>", "b", "a"] and vocab.encode(["a", "zz"]) == [3, 1]
    with pytest.raises(KeyError):
        Vocab(["a"], specials=("<pad>",)).encode(["b"])
