"""Image (LRA): grayscale CIFAR-10 read pixel by pixel, x ``(1024, 1)`` (10 classes).

Grayscale exactly as ``tf.image.rgb_to_grayscale`` on uint8, which LRA applies: scale to [0, 1],
weight R, G, B by 0.2989, 0.5870, 0.1140, convert back to uint8 by multiplying with 255.5 and
truncating (``tf.image.convert_image_dtype``). Then normalised with S4's mean 122.6/255 and std
61.0/255. Validation: a seeded random 10% of train (S4: ``val_split=0.1``, seed 42; LRA takes the last
10% instead).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikessm.data.images import image_splits, read_cifar10
from spikessm.data.base import Splits, Task, builtin

GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)
MEAN, STD = (122.6 / 255,), (61.0 / 255,)


def rgb_to_gray(pixels: np.ndarray, chunk: int = 10000) -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, H*W, 1) uint8, in chunks to bound the float32 temporaries."""
    gray = np.empty((len(pixels), pixels[0, 0].size, 1), np.uint8)
    for start in range(0, len(pixels), chunk):
        scaled = pixels[start:start + chunk].astype(np.float32) * np.float32(1 / 255)
        weighted = np.tensordot(GRAY_WEIGHTS, scaled, axes=(0, 1))
        gray[start:start + chunk, :, 0] = (weighted * np.float32(255.5)).reshape(len(scaled), -1)
    return gray


def load_image(options: dict, data_dir: Path | None) -> Splits:
    data, folder = read_cifar10("image", data_dir)
    data = {split: (rgb_to_gray(pixels), labels) for split, (pixels, labels) in data.items()}
    return image_splits(data, folder, options, mean=MEAN, std=STD)


builtin(Task("image", "LRA Image: grayscale CIFAR-10 pixel by pixel", 1024, 10, "classify", load_image,
              options={"val_fraction": 0.1, "split_seed": 42}, needs_data_dir=True))
