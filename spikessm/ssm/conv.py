"""Applying an S4D kernel: causal (or bidirectional) convolution by FFT."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bidirectional_kernel(k: torch.Tensor) -> torch.Tensor:
    """Two kernels ``(2, H, L)`` -> one of length 2L ``(H, 2L)``.

    k[0] acts causally (lags 0..L-1); k[1], reversed, acts anti-causally (lags -1..-L), so the two
    halves together see the whole sequence. Under the circular convolution of size 2L index 2L-m is
    lag -m.
    """
    L = k.shape[-1]
    return F.pad(k[0], (0, L)) + F.pad(k[1].flip(-1), (L, 0))


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y = k * u over the last axis.

    u ``(B, H, L)``; k ``(H, L)`` (causal) or ``(H, 2L)`` (from :func:`bidirectional_kernel`).
    Zero-padding to n = 2L turns the FFT's circular convolution into a linear one.
    """
    L = u.shape[-1]
    n = 2 * L
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[..., :L]
