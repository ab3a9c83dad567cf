"""Sequential images: IDX and CIFAR-10 readers, the restricted unpickler, smnist/psmnist/sfmnist/scifar/image."""
import builtins
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

import spikessm.data.images as images
from spikessm.data.lra.image import rgb_to_gray
from spikessm.data.registry import get_task
from spikessm.errors import UserError

IDX_NAMES = {"train-images-idx3-ubyte": 3, "train-labels-idx1-ubyte": 1,
             "t10k-images-idx3-ubyte": 3, "t10k-labels-idx1-ubyte": 1}


def load(name, data_dir, **options):
    task = get_task(name)
    return task.load({**task.options, **options}, data_dir)


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder, n_train=20, n_test=10, gz=True, seed=0):
    """The four IDX files; image i's first pixel is i (so tests can find it), labels i % 10."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        pixels[:, 0, 0] = np.arange(n)
        arrays[f"{prefix}-images-idx3-ubyte"] = pixels
        arrays[f"{prefix}-labels-idx1-ubyte"] = (np.arange(n) % 10).astype(np.uint8)
    for name, array in arrays.items():
        data = idx_bytes(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def test_smnist_from_torchvision_folder(tmp_path):
    arrays = write_mnist(tmp_path / "MNIST" / "raw")
    splits = load("smnist", tmp_path, val_fraction=0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 10)
    x, y = splits.test[3]
    assert x.shape == (784, 1) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.tensor(arrays["t10k-images-idx3-ubyte"][3].reshape(-1) / 255,
                                                dtype=torch.float32))
    assert int(y) == 3 and splits.d_input == 1 and splits.n_classes == 10


def test_psmnist_is_one_fixed_permutation(tmp_path):
    write_mnist(tmp_path, gz=False)  # the four files at the top, not gzipped
    plain, permuted = load("smnist", tmp_path), load("psmnist", tmp_path)
    order = torch.randperm(784, generator=torch.Generator().manual_seed(images.PERMUTATION_SEED))
    for i in range(3):
        assert torch.equal(permuted.test[i][0], plain.test[i][0][order])
    restored = pickle.loads(pickle.dumps(permuted.train))  # DataLoader workers get a copy
    assert torch.equal(restored[0][0], permuted.train[0][0])
    assert not torch.equal(permuted.test[0][0], plain.test[0][0])


def test_idx_errors_name_the_file(tmp_path):
    write_mnist(tmp_path, gz=False)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte: not an IDX file .*magic 00000803, expected 00000801"):
        load("smnist", tmp_path)
    write_mnist(tmp_path, gz=False)
    images_file = tmp_path / "train-images-idx3-ubyte"
    images_file.write_bytes(images_file.read_bytes()[:-5])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: header says 20x28x28 = 15680 bytes, file holds 15675"):
        load("smnist", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bbroken")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz: damaged gzip"):
        load("smnist", tmp_path)


def test_idx_missing_lists_searched_folders(tmp_path):
    with pytest.raises(UserError) as error:
        load("smnist", tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(error.value) and "train-images-idx3-ubyte" in str(error.value)


def test_sfmnist_falls_back_to_the_debian_install(tmp_path, monkeypatch):
    write_mnist(tmp_path / "system", seed=1)
    monkeypatch.setattr(images, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system")
    splits = load("sfmnist", None)
    assert splits.info["source"] == str(tmp_path / "system") and len(splits.test) == 10
    write_mnist(tmp_path / "data" / "FashionMNIST" / "raw", n_test=5)
    assert len(load("sfmnist", tmp_path / "data").test) == 5  # a data directory comes first


def test_sfmnist_missing_everywhere_suggests_apt(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load("sfmnist", None)


# --- CIFAR-10 --------------------------------------------------------------------------------------

def cifar_batches(n=4, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
            for name in names}


def write_cifar_python(folder, batches):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)  # as the release: protocol 2, bytes keys


def write_cifar_binary(folder, batches):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def test_scifar_python_and_binary_agree(tmp_path):
    batches = cifar_batches()
    write_cifar_python(tmp_path / "py" / "cifar-10-batches-py", batches)
    write_cifar_binary(tmp_path / "bin" / "cifar-10-batches-bin", batches)
    a = load("scifar", tmp_path / "py", val_fraction=0.1)
    b = load("scifar", tmp_path / "bin", val_fraction=0.1)
    assert (len(a.train), len(a.val), len(a.test)) == (18, 2, 4) and a.d_input == 3
    for i in range(4):
        assert torch.equal(a.test[i][0], b.test[i][0]) and int(a.test[i][1]) == batches["test_batch"][1][i]
    x = a.test[0][0]
    red = batches["test_batch"][0][0, :1024] / 255
    assert x.shape == (1024, 3)
    assert torch.allclose(x[:, 0], torch.tensor((red - 0.4914) / 0.247, dtype=torch.float32), atol=1e-5)


def test_lra_image_grayscale(tmp_path):
    batches = cifar_batches()
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", batches)
    splits = load("image", tmp_path)
    x, y = splits.test[2]
    assert x.shape == (1024, 1) and splits.d_input == 1
    rgb = batches["test_batch"][0][2].reshape(3, 1024).astype(np.float64)
    gray = np.floor((0.2989 * rgb[0] + 0.5870 * rgb[1] + 0.1140 * rgb[2]) / 255 * 255.5)
    assert torch.allclose(x[:, 0], torch.tensor((gray / 255 - 122.6 / 255) / (61.0 / 255), dtype=torch.float32),
                          atol=1e-4)
    assert int(y) == batches["test_batch"][1][2]


def test_rgb_to_gray_matches_tensorflow_values():
    # tf.image.rgb_to_grayscale on uint8: pure red -> 76, (10, 20, 30) -> 18, white -> 255
    pixels = np.array([[[[255, 10, 255]], [[0, 20, 255]], [[0, 30, 255]]]], np.uint8)  # (1, RGB, 1, 3)
    assert rgb_to_gray(pixels).reshape(-1).tolist() == [76, 18, 255]


def test_cifar_errors(tmp_path):
    batches = cifar_batches()
    write_cifar_binary(tmp_path / "cifar-10-batches-bin", batches)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(UserError, match="data_batch_3.bin: size 12291 is not a whole number of 3073-byte"):
        load("image", tmp_path)
    write_cifar_python(tmp_path / "py" / "cifar-10-batches-py", batches)
    (tmp_path / "py" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(UserError, match="data_batch_1: not a CIFAR-10 python batch"):
        load("image", tmp_path / "py")
    (tmp_path / "py" / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(UserError) as error:
        load("image", tmp_path / "py")
    assert "data_batch_4" in str(error.value) and "cs.toronto.edu" in str(error.value)


class _CreatesFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return builtins.open, (str(self.path), "w")


class _RunsShell:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.mark.parametrize("payload", [_CreatesFile, _RunsShell])
def test_cifar_pickle_with_foreign_global_is_refused_unexecuted(tmp_path, payload):
    batches = cifar_batches()
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_python(folder, batches)
    marker = tmp_path / "pwned"
    data, labels = batches["data_batch_2"]
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": data, b"labels": labels, b"extra": payload(marker)}, f, protocol=2)
    with pytest.raises(UserError, match=r"data_batch_2: refusing to unpickle \w+\.(open|system) "):
        load("scifar", tmp_path)
    assert not marker.exists()
    with open(folder / "data_batch_2", "rb") as f:  # the plain unpickler would have run it
        pickle.load(f, encoding="bytes")
    assert marker.exists()


def test_cifar_pickle_refuses_dangerous_builtins(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_python(folder, cifar_batches())
    # GLOBAL builtins.eval, then call it: a pickle that would evaluate code
    (folder / "test_batch").write_bytes(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.")
    with pytest.raises(UserError, match="test_batch: refusing to unpickle builtins.eval"):
        load("scifar", tmp_path)
