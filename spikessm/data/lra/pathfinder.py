"""Pathfinder and Path-X (LRA): are the two circles joined by one dashed curve? (2 classes)

Layout ``pathfinder{R}/<difficulty>/{imgs/<batch>/sample_<i>.png, metadata/<batch>.npy}`` (as released,
or under ``pathfinder/`` as S4 arranges it). Despite the extension the metadata files are text, one
image per line, whitespace-separated: field 0 ``imgs/<batch>``, field 1 ``sample_<i>.png``, field 3 the
label (LRA's TFDS builder and S4 read them this way). Difficulty folders: ``curv_baseline`` (easy,
contours of 6 paddles), ``curv_contour_length_9``, ``curv_contour_length_14`` (hard; S4's choice, our
default). Path-X is the 128x128 version (16,384 steps).

Images are grayscale PNGs, x ``(R*R, 1)`` scaled to [0, 1] then normalised with mean 0.5, std 0.5 (S4).
Dropped and reported in ``Splits.info`` (and logged): blank images (LRA filters them) and the one
image S4 blacklists as broken. The released data has no splits: 80/10/10 at random with
``split_seed`` (S4: 42). Decoding hundreds of thousands of PNGs is slow, so the decoded pixels are
cached (:mod:`spikessm.data.cache`).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Subset
from tqdm import tqdm

from spikessm.data.cache import cached
from spikessm.data.common import LRA_SOURCE, bad_line, check_tensor, find_data, random_split
from spikessm.data.images import ImageSequences
from spikessm.data.base import Splits, Task, builtin
from spikessm.errors import UserError, check_choice

log = logging.getLogger(__name__)

RESOLUTIONS = (32, 64, 128, 256)
DIFFICULTIES = ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14")
# S4 (src/dataloaders/lra.py, PathFinderDataset): an image of the release that cannot be read
BLACKLIST = {"pathfinder32/curv_baseline/imgs/0/sample_172.png"}
FRACTIONS = (0.8, 0.1, 0.1)


class Confinement:
    """Whether an image path a metadata row names stays inside the data set's folder.

    A path must be relative, without ``..``, and must still lie inside the folder once every symlink is
    followed: a symlink inside the folder may point elsewhere inside it, never out of it (a crafted
    archive's link to ``/etc/shadow`` is refused like the row ``../../x.png``). The folder itself, and
    the data directory above it, may be symlinks to anywhere. Folders are resolved once each, so a
    row costs one ``lstat`` of its image.
    """

    def __init__(self, folder: Path):
        self.root = os.path.realpath(folder)
        self.folders: dict[str, bool] = {}

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def allows(self, folder: Path, relative: str) -> bool:
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts:
            return False
        parent = str(pure.parent)
        if parent not in self.folders:
            self.folders[parent] = self._inside(os.path.realpath(folder / parent))
        if not self.folders[parent]:
            return False
        path = folder / relative
        return not os.path.islink(path) or self._inside(os.path.realpath(path))


def read_metadata(folder: Path) -> list[tuple[str, int]]:
    """``(image path relative to folder, label)`` for every row of ``metadata/*.npy``, batches in order.

    An image path that leaves ``folder`` (see :class:`Confinement`) is a one-line error naming the
    metadata file and line; nothing outside the folder is opened.
    """
    # batch ids are numbers: order 2 before 10
    files = sorted((folder / "metadata").glob("*.npy"), key=lambda p: (len(p.stem), p.stem))
    confinement = Confinement(folder)
    rows = []
    for path in files:
        if not path.is_file():
            raise UserError(f"{path}: not a file (a Pathfinder metadata file is a text file)")
        with open(path, "rb") as f:  # decoded line by line, so that an error names its line
            for number, raw in enumerate(f, start=1):
                try:
                    fields = raw.decode("utf-8").split()
                except UnicodeDecodeError:
                    raise bad_line(path, number, "not UTF-8 text (is it a Pathfinder metadata file?)") from None
                if not fields:
                    continue  # a blank line describes no image
                if len(fields) < 4 or fields[3] not in ("0", "1"):
                    raise bad_line(path, number, "expected 'imgs/<batch> sample_<i>.png <index> <label 0/1> "
                                                 "...' separated by spaces")
                relative = f"{fields[0]}/{fields[1]}"
                if not confinement.allows(folder, relative):
                    raise bad_line(path, number, f"the image path {relative!r} leads outside {folder}; "
                                                 "a metadata row may only name images inside its data folder")
                rows.append((relative, int(fields[3])))
    return rows


def decode_images(folder: Path, paths: list[str], resolution: int) -> np.ndarray:
    """(N, resolution**2) uint8 grayscale pixels of the PNGs ``folder/paths[i]``."""
    from PIL import Image, UnidentifiedImageError

    pixels = np.empty((len(paths), resolution * resolution), np.uint8)
    for i, relative in enumerate(tqdm(paths, desc=f"decoding {folder.name}", unit="img", disable=None)):
        path = folder / relative
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("L"))
        except (OSError, UnidentifiedImageError) as error:  # missing or damaged
            raise UserError(f"{path}: cannot read the image listed in the metadata ({error})") from None
        if array.shape != (resolution, resolution):
            raise UserError(f"{path}: expected {resolution}x{resolution} pixels, got "
                            f"{array.shape[1]}x{array.shape[0]}")
        pixels[i] = array.reshape(-1)
    return pixels


def _read_folder(folder: Path, resolution: int, difficulty: str, rows: list[tuple[str, int]]) -> dict:
    blacklisted = [row for row in rows if f"pathfinder{resolution}/{difficulty}/{row[0]}" in BLACKLIST]
    rows = [row for row in rows if row not in blacklisted]
    pixels = decode_images(folder, [relative for relative, _ in rows], resolution)
    keep = pixels.max(axis=1) > 0
    return {"pixels": torch.from_numpy(pixels[keep]),
            "labels": torch.tensor([label for _, label in rows])[torch.from_numpy(keep)],
            "dropped": {"blank": int((~keep).sum()), "blacklisted": len(blacklisted)}}


def check_decoded(data, resolution: int) -> None:
    """A ValueError unless ``data`` is what :func:`_read_folder` returns at ``resolution``."""
    pixels = check_tensor(data["pixels"], "pixels", torch.uint8, 2)
    labels = check_tensor(data["labels"], "labels", torch.int64, 1)
    if pixels.shape[1] != resolution * resolution or len(labels) != len(pixels) or \
            (len(labels) and not bool(((labels == 0) | (labels == 1)).all())):
        raise ValueError(f"pixels {tuple(pixels.shape)} and labels {tuple(labels.shape)} do not fit {resolution}x{resolution}")
    if not isinstance(data["dropped"], dict) or not all(isinstance(n, int) for n in data["dropped"].values()):
        raise ValueError("dropped counts are malformed")


def read_pathfinder(task: str, resolution: int, options: dict, data_dir: Path | None) -> Splits:
    difficulty = str(options["difficulty"])
    check_choice("data.resolution", resolution, RESOLUTIONS)
    if difficulty not in DIFFICULTIES and not re.fullmatch(r"curv_contour_length_\d+", difficulty):
        raise UserError(f"data.difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    here = f"pathfinder{resolution}/{difficulty}"
    folder = find_data(task, data_dir, [(here, ["metadata/*.npy", "imgs"]),
                                        (f"pathfinder/{here}", ["metadata/*.npy", "imgs"])], LRA_SOURCE)
    rows = read_metadata(folder)
    sources = [*(folder / "metadata").glob("*.npy"), *(folder / relative for relative, _ in rows)]
    data = cached(f"pathfinder{resolution}", folder, sources, {"difficulty": difficulty},
                  lambda: _read_folder(folder, resolution, difficulty, rows),
                  validate=lambda data: check_decoded(data, resolution))
    dropped = {why: n for why, n in data["dropped"].items() if n}
    if dropped:
        log.warning("%s: dropped %s", folder, ", ".join(f"{n} {why} image(s)" for why, n in dropped.items()))
    dataset = ImageSequences(data["pixels"].unsqueeze(-1), data["labels"], mean=(0.5,), std=(0.5,))
    seed = int(options["split_seed"])
    return Splits(*(Subset(dataset, part) for part in random_split(len(dataset), FRACTIONS, seed)),
                  n_classes=2, d_input=1,
                  info={"source": str(folder), "images": len(dataset),
                        **{f"dropped_{why}": n for why, n in dropped.items()},
                        "val": f"random 80/10/10 split of all images (seed {seed})"})


def load_pathfinder(options: dict, data_dir: Path | None) -> Splits:
    return read_pathfinder("pathfinder", int(options["resolution"]), options, data_dir)


def load_pathx(options: dict, data_dir: Path | None) -> Splits:
    return read_pathfinder("pathx", 128, options, data_dir)


builtin(Task("pathfinder", "LRA Pathfinder: are two circles connected by a dashed path? pixels",
              1024, 2, "classify", load_pathfinder, needs_data_dir=True,
              options={"resolution": 32, "difficulty": "curv_contour_length_14", "split_seed": 42},
              choices={"resolution": RESOLUTIONS}))
builtin(Task("pathx", "LRA Path-X: Pathfinder at 128x128 (16,384 steps)", 128 * 128, 2, "classify",
              load_pathx, needs_data_dir=True,
              options={"difficulty": "curv_contour_length_14", "split_seed": 42}))
