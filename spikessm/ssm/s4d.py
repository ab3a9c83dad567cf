"""The S4D layer: y = K * u + D u, causal or bidirectional, parallel or step by step."""
from __future__ import annotations

import torch
from torch import nn

from spikessm.errors import UserError
from spikessm.ssm.conv import bidirectional_kernel, fft_conv
from spikessm.ssm.kernel import S4DKernel


class S4D(nn.Module):
    """Token mixing of one S4D layer, without activation: ``y = K * u + D u``.

    u, y: ``(B, H, L)``, or ``(B, L, H)`` with ``transposed=False`` (the S4 repository's flag).
    Bidirectional layers sum a causal and an anti-causal kernel and cannot run step by step.

    Optimiser hints, as in the S4 repository (Gu et al., github.com/state-spaces/s4): A and dt carry
    ``param._optim = {"lr": lr, "weight_decay": 0.0}`` (no ``"lr"`` when ``lr`` is None), which
    :func:`spikessm.train.optim.param_groups` turns into parameter groups.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1,
                 init: str = "lin", bidirectional: bool = False, transposed: bool = True,
                 lr: float | None = 0.001):
        super().__init__()
        self.bidirectional, self.transposed = bidirectional, transposed
        self.kernel = S4DKernel(d_model, d_state, dt_min, dt_max, init,
                                channels=2 if bidirectional else 1)
        self.D = nn.Parameter(torch.randn(d_model))
        hint = {"weight_decay": 0.0} if lr is None else {"lr": lr, "weight_decay": 0.0}
        for p in (self.kernel.log_dt, self.kernel.log_A_real, self.kernel.A_imag):
            p._optim = dict(hint)

    def macs(self, L: int) -> int:
        """MACs of the recurrent form over L steps: per channel and step each of the N/2 complex
        modes costs 4 (state update) + 2 (real part of C'x) real MACs, and D u one more."""
        H, N2 = self.kernel.log_A_real.shape
        kernels = 2 if self.bidirectional else 1
        return L * H * (6 * N2 * kernels + 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if not self.transposed:
            return self._forward(u.transpose(-1, -2)).transpose(-1, -2)
        return self._forward(u)

    def _forward(self, u: torch.Tensor) -> torch.Tensor:
        k = self.kernel(u.shape[-1])
        k = bidirectional_kernel(k) if self.bidirectional else k[0]
        return fft_conv(u, k.to(u.dtype)) + self.D.unsqueeze(-1) * u

    def initial_state(self, batch: int) -> torch.Tensor:
        if self.bidirectional:
            raise UserError("a bidirectional S4D layer sees the future and cannot run step by step; "
                            "train with model.bidirectional=false to stream")
        return self.kernel.initial_state(batch)

    def step(self, u: torch.Tensor, state: torch.Tensor, discrete=None) -> tuple[torch.Tensor, torch.Tensor]:
        """u ``(B, H)`` -> y ``(B, H)``, new state. See :meth:`S4DKernel.step`."""
        y, state = self.kernel.step(u, state, discrete)
        return y + self.D * u, state
