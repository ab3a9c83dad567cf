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


class _FFTConv(torch.autograd.Function):
    """y = (k ⊛ u)[:L], the circular convolution of size n = 2L of zero-padded u with k.

    Autograd through ``irfft(rfft(u) * rfft(k))`` would keep the complex spectrum of u, twice the
    memory of u itself, for every layer. This keeps u and recomputes its spectrum in the backward
    pass, where both gradients are circular correlations of size n:

        dL/du[s] = sum_t g[t] k[(t - s) mod n]   = irfft(rfft(g) * conj(rfft(k)))[:L]
        dL/dk[m] = sum_t g[t] u[(t - m) mod n]   = irfft(sum_B rfft(g) * conj(rfft(u)))[:len(k)]
    """

    @staticmethod
    def forward(ctx, u, k):
        L, n = u.shape[-1], 2 * u.shape[-1]
        ctx.save_for_backward(u, k)  # k rather than its spectrum, which is twice its size
        # In place where possible: each (B, H, L + 1) complex temporary is twice the size of u.
        return torch.fft.irfft(torch.fft.rfft(u, n=n).mul_(torch.fft.rfft(k, n=n)), n=n)[..., :L]

    @staticmethod
    def backward(ctx, g):
        u, k = ctx.saved_tensors
        L, n = u.shape[-1], 2 * u.shape[-1]
        k_f = torch.fft.rfft(k, n=n)
        g_f = torch.fft.rfft(g, n=n)
        grad_u = grad_k = None
        if ctx.needs_input_grad[1]:
            cross = torch.fft.rfft(u, n=n).conj_physical_().mul_(g_f).sum_to_size(k_f.shape)  # over the batch
            grad_k = torch.fft.irfft(cross, n=n)[..., :k.shape[-1]]
        if ctx.needs_input_grad[0]:
            # A copy of the first half, so that the (B, H, 2L) result is freed here, not by the next node.
            grad_u = torch.fft.irfft(g_f.mul_(k_f.conj()), n=n)[..., :L].contiguous()
        return grad_u, grad_k


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y = k * u over the last axis.

    u ``(B, H, L)``; k ``(H, L)`` (causal) or ``(H, 2L)`` (from :func:`bidirectional_kernel`), of u's
    dtype. Zero-padding to n = 2L turns the FFT's circular convolution into a linear one.
    """
    return _FFTConv.apply(u, k)
