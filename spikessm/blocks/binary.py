"""Binary S4D (Stan & Rhodes, Sci. Rep. 2024; arXiv 2401.00955): the GELU after S4D becomes a spike.

    y_t = (K * u)_t + D u_t     s_t = H(y_t) in {0, 1}     out_t = GLU(W s_t + b)

The feature-mixing map then sees binary input, so it needs accumulates only. The spike is a
Heaviside at 0 with a surrogate gradient (arctan by default, the paper's main choice; fast sigmoid is
its ablation, more than 10 points worse on sCIFAR), or the stochastic Bernoulli spike of the
authors' arXiv-era code (p = sigmoid(y), s ~ Bernoulli(p)).
"""
from __future__ import annotations

from typing import Any

import torch

from spikessm.blocks.base import GLU, Activation, SSMBlock
from spikessm.errors import check_choice
from spikessm.neurons.surrogates import SURROGATES, bernoulli_spike, spike

SPIKES = SURROGATES + ("bernoulli",)


class BinarySpike(Activation):
    """s = H(y) with a surrogate gradient, or s ~ Bernoulli(sigmoid(y)). Stateless; ``(B, H, L)``."""

    spiking = True

    def __init__(self, kind: str = "atan"):
        super().__init__()
        check_choice("spike", kind, SPIKES)
        self.kind = kind

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return bernoulli_spike(y) if self.kind == "bernoulli" else spike(y, self.kind)

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


class BinaryS4DBlock(SSMBlock):
    """S4D -> binary spike -> dropout -> GLU. ``(B, H, L)``, or ``(B, L, H)`` with ``transposed=False``.

    ``spike``: a surrogate name (the Heaviside spike) or ``"bernoulli"``; ``ssm_options`` go to
    :class:`spikessm.ssm.S4D`."""

    def __init__(self, d_model: int, spike: str = "atan", dropout: float = 0.0, transposed: bool = True,
                 **ssm_options: Any):
        super().__init__(d_model, BinarySpike(spike), GLU(d_model), dropout, transposed, **ssm_options)
