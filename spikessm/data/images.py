"""Images read pixel by pixel as sequences: sMNIST, psMNIST, sFashion-MNIST, sCIFAR; the file readers.

- ``smnist`` / ``sfmnist``: 28x28 digits / clothes, row by row, x ``(784, 1)`` in [0, 1].
- ``psmnist``: sMNIST with one fixed pixel permutation (seed 0) shared by every sample and run.
- ``scifar``: colour CIFAR-10, x ``(1024, 3)``: one step per pixel, the channels as features,
  normalised per channel with CIFAR-10's mean and std (as S4).

MNIST-style data are IDX files (gzipped or not), parsed here: magic ``00 00 08 <ndim>``, then ndim
big-endian uint32 sizes, then the bytes. CIFAR-10 is read from either release: the Python pickles (with
an unpickler that can only rebuild numpy arrays, so a tampered file cannot run code) or the binary
records. Validation: a seeded 10% of train (``val_fraction``, ``split_seed``), test as released.
"""
from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from spikessm.data.common import find_data, hold_out_val
from spikessm.data.base import Splits, Task, builtin
from spikessm.errors import UserError

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_REQUIRED = [f"{name}*" for pair in IDX_NAMES.values() for name in pair]  # plain or .gz
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
MNIST_SOURCE = ("Get the four IDX files of MNIST (http://yann.lecun.com/exdb/mnist/, or the mirror "
                "https://ossci-datasets.s3.amazonaws.com/mnist/) into DATA_DIR/MNIST/raw/.")
FASHION_SOURCE = ("Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or get the four "
                  "IDX files from https://github.com/zalandoresearch/fashion-mnist into "
                  "DATA_DIR/FashionMNIST/raw/.")
CIFAR_SOURCE = ("Get cifar-10-python.tar.gz or cifar-10-binary.tar.gz from "
                "https://www.cs.toronto.edu/~kriz/cifar.html and extract it into the data directory.")
CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)  # S4's CIFAR normalisation
PERMUTATION_SEED = 0


class ImageSequences(Dataset):
    """Images as pixel sequences: sample i is ``(x (L, C) float, label)``.

    Pixels stay uint8 in memory (``(N, L, C)``) and are scaled to [0, 1], optionally permuted along L,
    then normalised ``(x - mean) / std`` per channel on access.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, mean=(0.0,), std=(1.0,),
                 permutation: torch.Tensor | None = None):
        self.pixels, self.labels, self.permutation = pixels, labels, permutation
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.pixels[i].float() / 255
        if self.permutation is not None:
            x = x[self.permutation]
        return (x - self.mean) / self.std, self.labels[i]


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (gzip detected from its content)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise UserError(f"{path}: damaged gzip file ({error})") from None
    expected = bytes([0, 0, 0x08, ndim])
    if data[:4] != expected:
        raise UserError(f"{path}: not an IDX file of {ndim}-d unsigned bytes: magic {data[:4].hex()}, "
                        f"expected {expected.hex()}")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim].ljust(4 * ndim, b"\0"))
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(shape):  # Python integers: dims whose product overflows int64 do not wrap
        raise UserError(f"{path}: header says {'x'.join(map(str, shape))} = {math.prod(shape)} bytes, "
                        f"file holds {len(body)}")
    return np.frombuffer(body, np.uint8).reshape(shape).copy()  # writable, as torch wants


def _idx_file(folder: Path, name: str) -> Path:
    plain = folder / name
    return plain if plain.is_file() else folder / f"{name}.gz"


def read_mnist_style(task: str, data_dir: Path | None, layouts: list, source: str) -> tuple[dict, Path]:
    """``{"train": (images (N, 28, 28) uint8, labels (N,)), "test": ...}`` from the four IDX files,
    and the folder they were found in."""
    folder = find_data(task, data_dir, [(place, IDX_REQUIRED) for place in layouts], source)
    splits = {}
    for split, (images_name, labels_name) in IDX_NAMES.items():
        images = read_idx(_idx_file(folder, images_name), 3)
        labels = read_idx(_idx_file(folder, labels_name), 1)
        if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise UserError(f"{folder}: {split} files hold {images.shape} images, {len(labels)} labels "
                            f"(max {labels.max(initial=0)}); expected N 28x28 images and N labels 0-9")
        splits[split] = (images, labels)
    return splits, folder


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers; refuses every other global before calling it.

    Pickles can call any importable function while loading (``os.system`` included), so a CIFAR batch
    from an untrusted copy must not be unpickled with the default unpickler.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 stores bytes written by Python 3
        *(("builtins", name) for name in ("list", "dict", "tuple", "set", "frozenset", "bytearray",
                                          "bytes", "str", "int", "float", "complex", "bool")),
    }

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # the release was pickled by Python 2
        self.path = path

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise UserError(f"{self.path}: refusing to unpickle {module}.{name} (a CIFAR-10 batch only "
                            f"holds numpy arrays and lists); the file is not the official release")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, path).load()
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except UserError:
        raise
    except Exception as error:  # truncated file, wrong keys, not a pickle at all
        raise UserError(f"{path}: not a CIFAR-10 python batch ({type(error).__name__}: {error})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
        raise UserError(f"{path}: expected data (N, 3072) and N labels, got {data.shape}, {labels.shape}")
    # never cast silently: 300.7 would wrap to 44, NaN become 0, the label 3.7 become 3
    if data.dtype.kind not in "ui" or (data.size and (data.min() < 0 or data.max() > 255)):
        raise UserError(f"{path}: pixels must be integers 0-255; got {data.dtype}"
                        + (f" from {data.min()} to {data.max()}" if data.size and data.dtype.kind in "uif" else ""))
    if labels.dtype.kind not in "ui":
        raise UserError(f"{path}: labels must be integers 0-9; got {labels.dtype}")
    return data.astype(np.uint8), labels.astype(np.int64)


def _read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, np.uint8)
    if len(raw) == 0 or len(raw) % 3073:
        raise UserError(f"{path}: size {len(raw)} is not a whole number of 3073-byte CIFAR-10 records")
    records = raw.reshape(-1, 3073)  # 1 label byte, then 1024 red, 1024 green, 1024 blue
    return records[:, 1:], records[:, 0].astype(np.int64)


def read_cifar10(task: str, data_dir: Path | None) -> tuple[dict, Path]:
    """``{"train": (pixels (N, 3, 32, 32) uint8, labels (N,)), "test": ...}`` from either release,
    and the folder it was found in."""
    binary = [f"{name}.bin" for names in CIFAR_BATCHES.values() for name in names]
    python = [name for names in CIFAR_BATCHES.values() for name in names]
    folder = find_data(task, data_dir, [("cifar-10-batches-py", python), ("cifar-10-batches-bin", binary)],
                       CIFAR_SOURCE)
    is_binary = folder.name.endswith("-bin")
    splits = {}
    for split, names in CIFAR_BATCHES.items():
        batches = [_read_cifar_binary(folder / f"{name}.bin") if is_binary
                   else _read_cifar_pickle(folder / name) for name in names]
        pixels = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([labels for _, labels in batches])
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
            raise UserError(f"{folder}: {split} labels outside 0-9")
        splits[split] = (pixels, labels)
    return splits, folder


def image_splits(data: dict, folder: Path, options: dict, **dataset_args) -> Splits:
    """Train/val/test :class:`ImageSequences` from ``{"train": (pixels (N, L, C) uint8, labels), "test": ...}``.

    ``dataset_args`` go to :class:`ImageSequences` (mean, std, permutation).
    """
    train, test = (ImageSequences(torch.from_numpy(pixels), torch.from_numpy(labels).long(), **dataset_args)
                   for pixels, labels in (data["train"], data["test"]))
    train, val, how = hold_out_val(train, test, float(options["val_fraction"]), int(options["split_seed"]))
    return Splits(train, val, test, n_classes=10, d_input=data["train"][0].shape[-1],
                  info={"source": str(folder), "val": how})


def load_mnist(options: dict, data_dir: Path | None, permuted: bool = False) -> Splits:
    data, folder = read_mnist_style("psmnist" if permuted else "smnist", data_dir, ["MNIST/raw", "."],
                                    MNIST_SOURCE)
    permutation = (torch.randperm(784, generator=torch.Generator().manual_seed(PERMUTATION_SEED))
                   if permuted else None)
    return image_splits(_rows(data), folder, options, permutation=permutation)


def load_fashion_mnist(options: dict, data_dir: Path | None) -> Splits:
    data, folder = read_mnist_style("sfmnist", data_dir, ["FashionMNIST/raw", ".", FASHION_MNIST_SYSTEM_DIR],
                                    FASHION_SOURCE)
    return image_splits(_rows(data), folder, options)


def _rows(data: dict) -> dict:
    """(N, 28, 28) images -> (N, 784, 1) sequences, row by row."""
    return {split: (images.reshape(len(images), -1, 1), labels) for split, (images, labels) in data.items()}


def load_scifar(options: dict, data_dir: Path | None) -> Splits:
    # (N, 3, 32, 32) -> (N, 1024, 3): pixels in row-major order, the channels as features
    data, folder = read_cifar10("scifar", data_dir)
    data = {split: (np.ascontiguousarray(pixels.reshape(len(pixels), 3, -1).transpose(0, 2, 1)), labels)
            for split, (pixels, labels) in data.items()}
    return image_splits(data, folder, options, mean=CIFAR_MEAN, std=CIFAR_STD)


SPLIT_OPTIONS = {"val_fraction": 0.1, "split_seed": 42}  # S4's val_split 0.1, seed 42

builtin(Task("smnist", "sequential MNIST: 28x28 digits pixel by pixel", 784, 10, "classify", load_mnist,
              options=dict(SPLIT_OPTIONS), needs_data_dir=True))
builtin(Task("psmnist", "permuted sequential MNIST (one fixed pixel permutation)", 784, 10, "classify",
              lambda options, data_dir: load_mnist(options, data_dir, permuted=True),
              options=dict(SPLIT_OPTIONS), needs_data_dir=True))
builtin(Task("sfmnist", "sequential Fashion-MNIST pixel by pixel (Debian: dataset-fashion-mnist)", 784, 10,
              "classify", load_fashion_mnist, options=dict(SPLIT_OPTIONS)))
builtin(Task("scifar", "sequential CIFAR-10 in colour: 1024 pixels x 3 channels", 1024, 10, "classify",
              load_scifar, options=dict(SPLIT_OPTIONS), needs_data_dir=True, d_input=3))
