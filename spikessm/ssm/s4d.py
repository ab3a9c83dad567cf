"""The S4D layer: y = K * u + D u, causal or bidirectional, parallel or step by step."""
from __future__ import annotations

import torch
from torch import nn

from spikessm.errors import UserError
from spikessm.ssm.conv import bidirectional_kernel, fft_conv
from spikessm.ssm.kernel import S4DKernel


class S4D(nn.Module):
    """Token mixing of one S4D layer, without activation: ``y = K * u + D u``.

    u, y: ``(B, H, L)``. Bidirectional layers sum a causal and an anti-causal kernel and cannot
    run step by step.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1,
                 init: str = "lin", bidirectional: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.kernel = S4DKernel(d_model, d_state, dt_min, dt_max, init,
                                channels=2 if bidirectional else 1)
        self.D = nn.Parameter(torch.randn(d_model))

    def macs(self, L: int) -> int:
        """MACs of the recurrent form over L steps: per channel and step each of the N/2 complex
        modes costs 4 (state update) + 2 (real part of C'x) real MACs, and D u one more."""
        H, N2 = self.kernel.log_A_real.shape
        kernels = 2 if self.bidirectional else 1
        return L * H * (6 * N2 * kernels + 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        k = self.kernel(u.shape[-1])
        k = bidirectional_kernel(k) if self.bidirectional else k[0]
        return fft_conv(u, k.to(u.dtype)) + self.D.unsqueeze(-1) * u

    def initial_state(self, batch: int) -> torch.Tensor:
        if self.bidirectional:
            raise UserError("a bidirectional S4D layer sees the future and cannot run step by step; "
                            "train with model.bidirectional=false to stream")
        return self.kernel.initial_state(batch)

    def step(self, u: torch.Tensor, state: torch.Tensor, discrete=None):
        """u ``(B, H)`` -> y ``(B, H)``, new state. See :meth:`S4DKernel.step`."""
        y, state = self.kernel.step(u, state, discrete)
        return y + self.D * u, state
