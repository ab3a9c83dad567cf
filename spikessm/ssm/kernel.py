"""The S4D kernel: a diagonal state space model, as a convolution kernel and as a recurrence.

Per channel h (H channels) the continuous SSM  x'(t) = A x(t) + B u(t),  y(t) = C x(t)  has a diagonal
complex A with N/2 modes (the other N/2 are their conjugates, hence the factor 2 Re below). With
B folded into C and zero-order-hold discretisation at step dt_h (Gu et al. 2022, "On the
Parameterization and Initialization of Diagonal State Space Models"):

    dA_n = exp(dt A_n)                C'_n = C_n (exp(dt A_n) - 1) / A_n
    K[l] = 2 Re( sum_n C'_n dA_n^l )  for l = 0..L-1          (the Vandermonde kernel)
    x_t  = dA x_{t-1} + u_t           y_t = 2 Re( sum_n C'_n x_{n,t} )    (the same map, step by step)

Initialisation: S4D-Lin A_n = -1/2 + i pi n; S4D-Inv A_n = -1/2 + i N/pi (N/(2n+1) - 1);
dt ~ LogUniform[dt_min, dt_max]; C ~ CN(0, 1).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from spikessm.errors import UserError, check_choice

INITS = ("lin", "inv")


def vandermonde(dtA: torch.Tensor, C: torch.Tensor, L: int) -> torch.Tensor:
    """``K[c, h, l] = 2 Re sum_n C[c, h, n] exp(dtA[h, n] l)`` for l < L, without the (N/2, L) product.

    dtA ``(H, N/2)`` and C ``(channels, H, N/2)``, complex; returns ``(channels, H, L)``, real.

    Materialising exp(dtA l) for every l takes H·N/2·L complex numbers, kept again for the backward
    pass: gigabytes at L = 16K. Instead split l = k b + j with b = ceil(sqrt(L)), 0 <= j < b:

        K[c, h, k b + j] = 2 Re sum_n P[c, h, k, n] Z[h, n, j]
        P = C_n exp(dtA_n k b),   Z = exp(dtA_n j)
        2 Re(P Z) = 2 (Re P Re Z - Im P Im Z)

    two batched real matrix products of (ceil(L/b), N/2) and (N/2, b) factors per channel: O(H N sqrt(L))
    memory forward and backward, at BLAS speed. Every power is computed directly, as
    exp(a t) (cos(w t) + i sin(w t)) for dtA = a + i w, in real arithmetic (vectorised, unlike complex
    exp on the CPU), never by repeated products, so nothing drifts.
    """
    b = math.isqrt(L - 1) + 1 if L > 1 else 1
    m = -(-L // b)
    a, w = dtA.real, dtA.imag  # (H, N/2)
    steps = torch.arange(max(m, b), device=dtA.device, dtype=a.dtype)

    def powers(t):  # exp(dtA t) for times t (T,): real and imaginary parts, (H, T, N/2)
        at, wt = a.unsqueeze(-2) * t[:, None], w.unsqueeze(-2) * t[:, None]
        magnitude = torch.exp(at)
        return magnitude * torch.cos(wt), magnitude * torch.sin(wt)

    Er, Ei = powers(steps[:m] * b)  # (H, m, N/2)
    Cr, Ci = C.real.unsqueeze(-2), C.imag.unsqueeze(-2)  # (channels, H, 1, N/2)
    Pr, Pi = Cr * Er - Ci * Ei, Cr * Ei + Ci * Er  # (channels, H, m, N/2)
    Zr, Zi = (z.transpose(-1, -2) for z in powers(steps[:b]))  # (H, N/2, b)
    K = 2 * (torch.matmul(Pr, Zr) - torch.matmul(Pi, Zi))  # (channels, H, m, b)
    return K.flatten(-2)[..., :L]


def vandermonde_materialised(dtA: torch.Tensor, C: torch.Tensor, L: int) -> torch.Tensor:
    """:func:`vandermonde` through the whole (H, N/2, L) table of powers: the textbook formula, kept as the
    reference that tests and ``benchmarks/kernel.py`` compare against. Not for training at long L."""
    powers = torch.exp(dtA.unsqueeze(-1) * torch.arange(L, device=dtA.device))
    return 2 * torch.einsum("chn,hnl->chl", C, powers).real


class S4DKernel(nn.Module):
    """Holds A, C and dt for H channels; produces the kernel ``(channels, H, L)`` or steps the recurrence.

    ``channels`` = 2 gives two independent kernels (the forward and backward halves of a
    bidirectional layer).
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1,
                 init: str = "lin", channels: int = 1):
        super().__init__()
        check_choice("S4D init", init, INITS)
        if d_state < 2 or d_state % 2:
            raise UserError(f"d_state must be an even number >= 2, got {d_state}")
        if not 0 < dt_min <= dt_max:
            raise UserError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        H, N2 = d_model, d_state // 2
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        n = torch.arange(N2, dtype=torch.float)
        imag = math.pi * n if init == "lin" else d_state / math.pi * (d_state / (2 * n + 1) - 1)
        C = torch.randn(channels, H, N2, dtype=torch.cfloat)  # CN(0,1): real and imaginary var 1/2
        self.C = nn.Parameter(torch.view_as_real(C))
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(H, N2)))
        self.A_imag = nn.Parameter(imag.repeat(H, 1))
        for p in (self.log_dt, self.log_A_real, self.A_imag):
            # S4/S4D practice: these train at lr = min(lr, 0.001) without weight decay. The tag is
            # read by spikessm.train.optim, which owns the numbers (config train.ssm_lr).
            p._ssm = True

    def discrete(self):
        """``(dt A, C')``: dt A ``(H, N/2)`` and C' ``(channels, H, N/2)``, complex."""
        dt = torch.exp(self.log_dt).unsqueeze(-1)  # (H, 1)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag  # (H, N/2)
        dtA = A * dt
        # torch.complex rather than view_as_complex: the latter's gradient has a stride of its own on
        # the size-1 channel axis, which DistributedDataParallel warns about on every step.
        C = torch.complex(self.C[..., 0], self.C[..., 1])
        return dtA, C * (torch.exp(dtA) - 1.0) / A

    def forward(self, L: int) -> torch.Tensor:
        """The kernel ``(channels, H, L)``, real, in the parameters' dtype (also under autocast)."""
        with torch.autocast(self.C.device.type, enabled=False):  # fp16 powers would lose the kernel
            # Recomputed in the backward pass rather than kept: its O(H N sqrt L) intermediates are a dozen
            # tensors (190 MB a layer at H = 1024, L = 8K), the recomputation a few milliseconds.
            return checkpoint(vandermonde, *self.discrete(), L, use_reentrant=False)

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero state ``(B, H, N/2)``, complex, for :meth:`step`."""
        H, N2 = self.log_A_real.shape
        cdtype = torch.complex128 if self.C.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch, H, N2, dtype=cdtype, device=self.C.device)

    def step(self, u: torch.Tensor, state: torch.Tensor, discrete=None):
        """One step of the recurrence (first kernel only, i.e. the causal one).

        u ``(B, H)``; state ``(B, H, N/2)``. Returns ``(K*u)_t`` ``(B, H)`` and the new state.
        Pass ``discrete=self.discrete()`` when stepping many times, to compute it once.
        """
        dtA, C = discrete if discrete is not None else self.discrete()
        state = torch.exp(dtA) * state + u.unsqueeze(-1)
        return 2 * torch.einsum("hn,bhn->bh", C[0], state).real, state
