"""LRA loaders (listops, text, retrieval, pathfinder, pathx) on small fixture files in the released layouts."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from spikessm.data.collate import pad_collate
from spikessm.data.registry import get_task
from spikessm.errors import UserError


def load(name, data_dir, **options):
    task = get_task(name)
    return task.load({**task.options, **options}, data_dir)


# --- ListOps ---------------------------------------------------------------------------------------

LISTOPS_ROWS = [
    ("( ( ( [MAX 2 ) 9 ) ] )", 9),
    ("( ( ( [MIN 3 ) ( ( ( [SM 4 ) 8 ) ] ) ) ] )", 2),
    ("( ( ( ( [MED 1 ) 5 ) 7 ) ] )", 5),
]


def write_listops(folder, rows=LISTOPS_ROWS, header="Source\tTarget"):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        lines = [header] + [f"{source}\t{target}" for source, target in rows]
        (folder / f"basic_{split}.tsv").write_text("\r\n".join(lines) + "\r\n")  # csv.writer ends lines so


def test_listops_tokens_and_labels(tmp_path):
    write_listops(tmp_path / "listops-1000")
    splits = load("listops", tmp_path)
    # <pad>=0 <unk>=1 [MIN=2 [MAX=3 [MED=4 [SM=5 X=6, digit d = 7 + d
    x, y = splits.train[0]
    assert x.tolist() == [3, 9, 16, 6] and int(y) == 9
    x, y = splits.train[1]
    assert x.tolist() == [2, 10, 5, 11, 15, 6, 6] and int(y) == 2
    assert splits.vocab_size == 17 and splits.n_classes == 10 and splits.collate is pad_collate
    assert splits.info["vocab"][:7] == ["<pad>", "<unk>", "[MIN", "[MAX", "[MED", "[SM", "X"]
    assert len(splits.val) == len(splits.test) == 3
    batch_x, batch_y, lengths = pad_collate([splits.train[i] for i in range(3)])
    assert batch_x.shape == (3, 7) and lengths.tolist() == [4, 7, 5] and batch_x[0, 4:].eq(0).all()


def test_listops_s4_layout_and_truncation(tmp_path):
    write_listops(tmp_path / "listops")
    splits = load("listops", tmp_path, l_max=5)
    assert [len(splits.train[i][0]) for i in range(3)] == [4, 5, 5]
    assert splits.info["truncated_train"] == 1


def test_listops_bad_row_names_file_and_line(tmp_path):
    write_listops(tmp_path / "listops-1000", rows=LISTOPS_ROWS[:1] + [("( [MAX 2 ] )", "x")])
    with pytest.raises(UserError, match=r"basic_\w+\.tsv:3: expected"):
        load("listops", tmp_path)


def test_listops_bad_header(tmp_path):
    write_listops(tmp_path / "listops-1000", header="Expression\tValue")
    with pytest.raises(UserError, match=r"basic_\w+\.tsv:1: expected the header"):
        load("listops", tmp_path)


def test_missing_data_lists_searched_paths_and_source(tmp_path):
    with pytest.raises(UserError) as error:
        load("listops", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "listops-1000") in message and str(tmp_path / "listops") in message
    assert "basic_train.tsv" in message and "lra_release.gz" in message and "\n" not in message


def test_no_data_dir_says_how_to_pass_one():
    with pytest.raises(UserError, match="--data-dir"):
        load("retrieval", None)


def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load("listops", tmp_path / "nowhere")


# --- Text (IMDb) -----------------------------------------------------------------------------------

def write_imdb(root, n_per_class=5):
    for split in ("train", "test"):
        for label, sentiment in enumerate(("neg", "pos")):
            folder = root / "aclImdb" / split / sentiment
            folder.mkdir(parents=True)
            for i in range(n_per_class):
                (folder / f"{i}_{7 * label + 1}.txt").write_bytes(f"{sentiment} review {i} é!".encode())


def test_text_bytes_labels_and_validation(tmp_path):
    write_imdb(tmp_path)
    (tmp_path / "aclImdb" / "train" / "pos" / "0_10.txt").write_bytes(b"Hi!")
    splits = load("text", tmp_path, val_fraction=0.2)
    assert len(splits.train) == 9 and len(splits.val) == 2 and len(splits.test) == 10  # 11 train files
    assert splits.vocab_size == 258 and splits.n_classes == 2
    dataset = splits.train.dataset  # the train split before the validation cut, files in sorted order
    x, y = dataset[5]  # first positive review: pos/0_10.txt
    assert x.tolist() == [ord("H") + 2, ord("i") + 2, ord("!") + 2] and int(y) == 1
    x, y = dataset[0]
    assert bytes((x - 2).tolist()).decode() == "neg review 0 é!" and int(y) == 0  # UTF-8 bytes: é is 2


def test_text_val_fraction_zero_uses_test_and_l_max_truncates(tmp_path):
    write_imdb(tmp_path)
    splits = load("text", tmp_path, val_fraction=0, l_max=4)
    assert splits.val is splits.test and "test set" in splits.info["val"]
    assert all(len(splits.train[i][0]) == 4 for i in range(len(splits.train)))


def test_text_missing_class_folder(tmp_path):
    write_imdb(tmp_path)
    for path in (tmp_path / "aclImdb" / "test" / "neg").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"test/neg/\*\.txt.*ai\.stanford\.edu"):
        load("text", tmp_path)


# --- Retrieval (AAN) -------------------------------------------------------------------------------

def write_aan(folder, lines=None):
    folder.mkdir(parents=True)
    lines = lines or ["1.0\tp1\tp2\tab\tcd", "0.0\tp3\tp4\tabc\t\"q\"", "1\tp5\tp6\tx\tyz"]
    for split in ("train", "eval", "test"):
        (folder / f"new_aan_pairs.{split}.tsv").write_text("\n".join(lines) + "\n")


def test_retrieval_pairs(tmp_path):
    write_aan(tmp_path / "tsv_data")
    splits = load("retrieval", tmp_path)
    (a, b), y = splits.train[0]
    assert a.tolist() == [ord("a") + 2, ord("b") + 2] and b.tolist() == [ord("c") + 2, ord("d") + 2]
    assert int(y) == 1 and int(splits.train[1][1]) == 0
    assert splits.train[1][0][1].tolist() == [ord(c) + 2 for c in '"q"']  # quotes are plain bytes
    x, y, lengths = pad_collate([splits.train[i] for i in range(3)])
    assert x.shape == (3, 2, 3) and lengths.tolist() == [[2, 2], [3, 3], [1, 2]]


def test_retrieval_s4_layout_and_l_max(tmp_path):
    write_aan(tmp_path / "aan")
    splits = load("retrieval", tmp_path, l_max=1)
    (a, b), _ = splits.test[1]
    assert len(a) == len(b) == 1


@pytest.mark.parametrize("line, problem", [("1.0\tp1\tp2\tonly four", "5 tab-separated"),
                                           ("yes\tp1\tp2\ta\tb", "label"), ("2.0\tp1\tp2\ta\tb", "label")])
def test_retrieval_bad_line(tmp_path, line, problem):
    write_aan(tmp_path / "tsv_data", ["1.0\tp1\tp2\ta\tb", line])
    with pytest.raises(UserError, match=rf"new_aan_pairs\.\w+\.tsv:2: .*{problem}"):
        load("retrieval", tmp_path)


# --- Pathfinder ------------------------------------------------------------------------------------

def write_pathfinder(folder, n=20, resolution=32, blank=(), seed=0):
    """n images with label i % 2; images listed in ``blank`` are all black."""
    rng = np.random.default_rng(seed)
    (folder / "imgs" / "0").mkdir(parents=True)
    (folder / "metadata").mkdir()
    rows = []
    for i in range(n):
        pixels = np.zeros((resolution, resolution), np.uint8) if i in blank else \
            rng.integers(0, 256, (resolution, resolution), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "imgs" / "0" / f"sample_{i}.png")
        rows.append(f"imgs/0 sample_{i}.png {i} {i % 2} 1.0 14 4 2 0.5 1 1\n")
    (folder / "metadata" / "0.npy").write_text("".join(rows))
    return folder


def test_pathfinder_shapes_labels_and_split(tmp_path):
    folder = write_pathfinder(tmp_path / "pathfinder32" / "curv_contour_length_14")
    splits = load("pathfinder", tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 2, 2)
    x, y = splits.test[0]
    assert x.shape == (1024, 1) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    index = int(splits.test.indices[0])
    png = np.asarray(Image.open(folder / "imgs" / "0" / f"sample_{index}.png"))
    assert torch.allclose(x[:, 0], torch.tensor(png.reshape(-1) / 255 * 2 - 1, dtype=torch.float32), atol=1e-6)
    assert int(y) == index % 2
    assert splits.d_input == 1 and splits.n_classes == 2
    again = load("pathfinder", tmp_path)  # from the cache, same split
    assert torch.equal(again.test.indices, splits.test.indices)


def test_pathfinder_blank_and_blacklisted_images_are_dropped_and_reported(tmp_path, caplog):
    write_pathfinder(tmp_path / "pathfinder" / "pathfinder32" / "curv_baseline", n=180, blank={3, 7})
    with caplog.at_level("WARNING"):
        splits = load("pathfinder", tmp_path, difficulty="curv_baseline")
    # sample_172 of pathfinder32/curv_baseline is S4's blacklisted image
    assert splits.info["dropped_blank"] == 2 and splits.info["dropped_blacklisted"] == 1
    assert splits.info["images"] == 177 and len(splits.train) + len(splits.val) + len(splits.test) == 177
    assert "dropped 2 blank image(s), 1 blacklisted image(s)" in caplog.text


def test_pathx_reads_128(tmp_path):
    write_pathfinder(tmp_path / "pathfinder128" / "curv_contour_length_14", n=10, resolution=128)
    splits = load("pathx", tmp_path)
    assert splits.train[0][0].shape == (128 * 128, 1)


def test_pathfinder_errors(tmp_path):
    folder = write_pathfinder(tmp_path / "pathfinder32" / "curv_contour_length_14", n=4)
    with pytest.raises(UserError, match="resolution"):
        load("pathfinder", tmp_path, resolution=48)
    with pytest.raises(UserError, match=r"pathfinder64/curv_contour_length_14.*lra_release"):
        load("pathfinder", tmp_path, resolution=64)
    (folder / "imgs" / "0" / "sample_2.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="sample_2.png: cannot read"):
        load("pathfinder", tmp_path)
    (folder / "imgs" / "0" / "sample_2.png").unlink()
    with pytest.raises(UserError, match="sample_2.png: no such file"):
        load("pathfinder", tmp_path)
    (folder / "metadata" / "0.npy").write_text("imgs/0 sample_0.png 0 1\nimgs/0 sample_1.png 1\n")
    with pytest.raises(UserError, match=r"0\.npy:2: expected"):
        load("pathfinder", tmp_path)


def test_pathfinder_wrong_size_image(tmp_path):
    folder = write_pathfinder(tmp_path / "pathfinder32" / "curv_contour_length_14", n=3)
    Image.fromarray(np.ones((16, 16), np.uint8)).save(folder / "imgs" / "0" / "sample_1.png")
    with pytest.raises(UserError, match="sample_1.png: expected 32x32"):
        load("pathfinder", tmp_path)


# --- every split pickles, so DataLoader workers can take it ----------------------------------------

def test_datasets_pickle_and_load_in_workers(tmp_path):
    write_listops(tmp_path / "listops-1000")
    write_aan(tmp_path / "tsv_data")
    write_pathfinder(tmp_path / "pathfinder32" / "curv_contour_length_14", n=10)
    for name in ("listops", "retrieval", "pathfinder"):
        splits = load(name, tmp_path)
        restored = pickle.loads(pickle.dumps(splits.train))
        x, y = restored[0]
        original = splits.train[0][0]
        assert all(torch.equal(a, b) for a, b in zip(x, original)) if isinstance(x, tuple) else torch.equal(x, original)
    loader = DataLoader(load("listops", tmp_path).train, batch_size=2, collate_fn=pad_collate, num_workers=2)
    assert sum(len(y) for _, y, _ in loader) == 3
