"""The Gated Spiking Unit (Stan & Rhodes, Sci. Rep. 2024): feature mixing without dense MACs.

    GSU(x) = (Ter(x) W1 + b1)  ⊙  (alpha ⊙ (x Ter(W2)) + b2)          Ter(.) in {-1, 0, 1}

Branch 1 quantises the activations and keeps real weights; branch 2 keeps the real, non-saturating
activations and quantises the weights. Both are additions and subtractions only; the gate is one
product per output. The paper's equation leaves details open (Stan & Rhodes 2024, arXiv 2401.00955), so
the form above is the one three independent reimplementations agree on, and these choices are ours:

- ``Ter(x)``: a dynamic threshold, ``threshold * max_h |x_h|`` per sample and time step (the
  reimplementations' "dynamic threshold"; ratio 0.15 as in one of them). On binary spikes this is
  the identity, so Binary S4D + GSU keeps its spikes. Gradient: the ``surrogate`` at
  ``|x| - threshold`` (arctan by default, the paper's main surrogate).
- ``Ter(W2)``: ternary weights as in Ternary Weight Networks (Li et al. 2016): zero below
  ``0.7 * mean|W2|`` per output, sign elsewhere, a straight-through gradient, and a per-output scale
  ``alpha`` (the mean kept |W2|) applied after the accumulation, one MAC per output.
- ``W1`` and ``W2`` are separate matrices (one reimplementation ties them; nothing says the paper does).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikessm.blocks.base import GELU, Activation, SSMBlock
from spikessm.blocks.binary import BinarySpike
from spikessm.errors import check_choice
from spikessm.neurons.surrogates import SURROGATES, ternary_spike

TWN_RATIO = 0.7  # Li et al. (2016): the ternary threshold that best approximates Gaussian weights


class Ternary(Activation):
    """Ter(x) with a dynamic threshold over the channel axis (dim -2 of ``(B, H, L)``)."""

    spiking = True  # its nonzero fraction is recorded like a firing rate (and drives the AC count)

    def __init__(self, threshold: float = 0.15, surrogate: str = "atan"):
        super().__init__()
        check_choice("gsu_surrogate", surrogate, SURROGATES)
        self.threshold, self.surrogate = threshold, surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.detach().abs().amax(dim=-2, keepdim=True)
        return ternary_spike(x, self.threshold * scale, self.surrogate)


def ternary_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ter(w), alpha): ternary weights ``(out, in)`` and the per-output scale ``(out,)``."""
    delta = TWN_RATIO * w.detach().abs().mean(dim=1, keepdim=True)
    mask = (w.detach().abs() >= delta).to(w.dtype)
    # straight-through: forward sign(w) * mask, backward identity
    ternary = w + (torch.sign(w) * mask - w).detach()
    alpha = (w.detach().abs() * mask).sum(1) / mask.sum(1).clamp(min=1)
    return ternary, alpha


class GSU(nn.Module):
    """The gated spiking unit as a feature-mixing layer, ``(B, H, L)`` -> ``(B, H, L)``."""

    def __init__(self, d_model: int, threshold: float = 0.15, surrogate: str = "atan"):
        super().__init__()
        self.ternary = Ternary(threshold, surrogate)
        self.w1 = nn.Linear(d_model, d_model)
        self.w2 = nn.Linear(d_model, d_model)

    def _mix(self, x: torch.Tensor, ter_x: torch.Tensor) -> torch.Tensor:  # x, ter_x: (..., H) channels last
        w2, alpha = ternary_weights(self.w2.weight)
        branch2 = alpha * torch.nn.functional.linear(x, w2) + self.w2.bias
        return self.w1(ter_x) * branch2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x.transpose(1, 2), self.ternary(x).transpose(1, 2)).transpose(1, 2)

    def step(self, x: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, H)
        return self._mix(x, self.ternary(x.unsqueeze(-1)).squeeze(-1))

    def operations(self, L: int, input_rate: float | None, rates: dict):
        """(MACs, ACs) per sequence. Branch 1: one AC per nonzero Ter(x) per output. Branch 2: one AC
        per nonzero ternary weight per nonzero input. The scale alpha and the gate: a MAC each per
        output. ``rates["ternary"]``: the measured nonzero fraction of Ter(x); without it (the ANN
        equivalent) both branches are dense MACs."""
        H = self.w1.in_features
        per_output = 2 * L * H  # alpha and the gate
        ternary_rate = rates.get("ternary")
        if ternary_rate is None:
            return 2 * L * H * H + per_output, 0.0
        w_density = (ternary_weights(self.w2.weight)[0] != 0).float().mean().item()
        x_density = 1.0 if input_rate is None else input_rate
        return per_output, L * H * H * (ternary_rate + w_density * x_density)


class GSUBlock(SSMBlock):
    """S4D -> (binary spike, or GELU when ``spike`` is None) -> dropout -> GSU. ``(B, H, L)``, or
    ``(B, L, H)`` with ``transposed=False``; ``ssm_options`` go to :class:`spikessm.ssm.S4D`."""

    def __init__(self, d_model: int, spike: str | None = "atan", gsu_threshold: float = 0.15,
                 gsu_surrogate: str = "atan", dropout: float = 0.0, transposed: bool = True, **ssm_options: Any):
        activation = GELU() if spike is None else BinarySpike(spike)
        super().__init__(d_model, activation, GSU(d_model, gsu_threshold, gsu_surrogate), dropout, transposed,
                         **ssm_options)
