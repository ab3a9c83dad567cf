"""Turning lists of ``(x, y)`` samples into ``(x, y, lengths)`` batches."""
from __future__ import annotations

import torch


def _stack_labels(ys):
    return torch.stack(ys) if isinstance(ys[0], torch.Tensor) else torch.tensor(ys)


def stack_collate(samples):
    """Fixed-length samples (x ``(L, d)`` or ``(L,)``): stack them; every length is L."""
    xs, ys = zip(*samples)
    x = torch.stack(xs)
    return x, _stack_labels(ys), torch.full((x.shape[0],), x.shape[1])


def pad_collate(samples, pad_id: int = 0):
    """Token sequences of different lengths, right-padded to the longest in the batch.

    A sample's x is a 1-D id tensor, or for retrieval a pair of them. Returns x ``(B, L)`` with
    lengths ``(B,)``, or x ``(B, 2, L)`` with lengths ``(B, 2)``.
    """
    xs, ys = zip(*samples)
    docs = [doc for x in xs for doc in (x if isinstance(x, (tuple, list)) else (x,))]
    # an empty sequence (a blank review, an empty ListOps expression) is read as one pad token: pooling
    # over no steps would divide by zero and read as a diverged loss
    docs = [doc if len(doc) else torch.full((1,), pad_id, dtype=doc.dtype) for doc in docs]
    per_sample = len(docs) // len(xs)
    x = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True, padding_value=pad_id)
    lengths = torch.tensor([len(d) for d in docs])
    if per_sample > 1:
        x, lengths = x.view(len(xs), per_sample, -1), lengths.view(len(xs), per_sample)
    return x, _stack_labels(ys), lengths
