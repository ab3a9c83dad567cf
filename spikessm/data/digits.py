"""The embedded default tasks: scikit-learn's 8x8 handwritten digits as pixel sequences.

``sdigits`` reads each image row by row as a 64-step sequence of one intensity in [0, 1] (a tiny
stand-in for sequential MNIST that needs no download); ``psdigits`` applies one fixed pixel
permutation first, destroying locality as permuted sMNIST does. 1,797 images, split 70/15/15 with a
fixed seed that does not depend on the training seed, so every run sees the same test set.
"""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from spikessm.data.base import Splits, Task, builtin

SPLIT_SEED = 0  # fixes the train/val/test split and the psdigits permutation for good


def load_digit_sequences(permuted: bool) -> Splits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).reshape(-1, 64, 1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(SPLIT_SEED)
    if permuted:
        x = x[:, torch.randperm(64, generator=g)]
    order = torch.randperm(len(y), generator=g)
    n_val = n_test = round(0.15 * len(y))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Splits(
        train=TensorDataset(x[train], y[train]),
        val=TensorDataset(x[val], y[val]),
        test=TensorDataset(x[test], y[test]),
        n_classes=10,
        d_input=1,
    )


builtin(Task("sdigits", "8x8 digits read pixel by pixel (embedded, scikit-learn)", 64, 10,
              "classify", lambda options, data_dir: load_digit_sequences(permuted=False)))
builtin(Task("psdigits", "sdigits with a fixed pixel permutation (embedded)", 64, 10,
              "classify", lambda options, data_dir: load_digit_sequences(permuted=True)))
