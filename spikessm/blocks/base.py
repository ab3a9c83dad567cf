"""What every block shares: S4D token mixing -> activation -> dropout -> feature mixing.

The models of both papers differ only in the activation (GELU, a binary spike, an LIF neuron) and
the feature mixing (GLU or GSU), so a block is those two parts plugged into :class:`SSMBlock`.
Each part runs in parallel over a whole sequence ``(B, H, L)`` and step by step ``(B, H)``,
which is what streaming (recurrent) inference needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikessm.ssm import S4D


class Activation(nn.Module):
    """A pointwise-in-time nonlinearity: stateless unless it overrides the state methods."""

    spiking = False  # True: outputs are spikes, counted by spikessm.metrics
    macs_per_step = 0  # per neuron and time step (a membrane update is 1; GELU's cost is not counted)

    def initial_state(self, batch: int, d_model: int, like: torch.Tensor):
        return None

    def step(self, y: torch.Tensor, state):
        """y ``(B, H)`` -> (out ``(B, H)``, state). Stateless activations are their own step."""
        return self(y.unsqueeze(-1)).squeeze(-1), state


class GELU(Activation):
    def forward(self, y):
        return F.gelu(y)


class GLU(nn.Module):
    """Feature mixing of S4D: Conv1x1 (H -> 2H), then a ⊙ sigmoid(b)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.linear = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)

    def forward(self, x):  # (B, H, L) -> (B, H, L)
        return F.glu(self.linear(x), dim=-2)

    def step(self, x):  # (B, H) -> (B, H)
        return F.glu(F.linear(x, self.linear.weight.squeeze(-1), self.linear.bias), dim=-1)

    def operations(self, L: int, input_rate: float | None, rates: dict) -> tuple[float, float]:
        """(MACs, ACs) for one sequence of L steps. On spikes (``input_rate`` = fraction of
        nonzero inputs) the H -> 2H map costs one AC per nonzero input per output; on real input
        it is dense MACs. The gate's product is one MAC per output. (``rates``: of sub-layers; none.)"""
        H = self.linear.in_channels
        dense = L * H * 2 * H
        gate = L * H
        if input_rate is None:
            return dense + gate, 0.0
        return gate, input_rate * dense


class SSMBlock(nn.Module):
    """``mixing(dropout(activation(S4D(u))))``; u and the output are ``(B, H, L)``."""

    def __init__(self, d_model: int, activation: Activation, mixing: nn.Module, dropout: float = 0.0,
                 **ssm_options):
        super().__init__()
        self.d_model = d_model
        self.ssm = S4D(d_model, **ssm_options)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)
        self.mixing = mixing

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.mixing(self.dropout(self.activation(self.ssm(u))))

    def initial_state(self, batch: int, like: torch.Tensor):
        return self.ssm.initial_state(batch), self.activation.initial_state(batch, self.d_model, like)

    def step(self, u: torch.Tensor, state, discrete=None):
        """u ``(B, H)`` -> (out ``(B, H)``, state). Inference only: dropout is not applied."""
        ssm_state, act_state = state
        y, ssm_state = self.ssm.step(u, ssm_state, discrete)
        a, act_state = self.activation.step(y, act_state)
        return self.mixing.step(a), (ssm_state, act_state)
