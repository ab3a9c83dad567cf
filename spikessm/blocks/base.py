"""What every block shares: S4D token mixing -> activation -> dropout -> feature mixing.

The models of both papers differ only in the activation (GELU, a binary spike, an LIF neuron) and
the feature mixing (GLU or GSU), so a block is those two parts plugged into :class:`SSMBlock`.
Each part runs in parallel over a whole sequence ``(B, H, L)`` and step by step ``(B, H)``,
which is what streaming (recurrent) inference needs.

Layout: like the S4 repository's ``transposed`` flag, ``transposed=True`` (the default, and what
:class:`~spikessm.models.backbone.SequenceModel` uses) takes ``(B, H, L)``, channels before time;
``transposed=False`` takes batch-first, channels-last ``(B, L, H)``, as ``nn.Linear`` and
``nn.TransformerEncoderLayer(batch_first=True)`` do.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spikessm.blocks.lean_ops import Dropout, glu_conv
from spikessm.ssm import S4D


class Activation(nn.Module):
    """A pointwise-in-time nonlinearity: stateless unless it overrides the state methods."""

    spiking = False  # True: outputs are spikes, counted by spikessm.metrics
    macs_per_step = 0  # per neuron and time step (a membrane update is 1; GELU's cost is not counted)

    def initial_state(self, batch: int, d_model: int | None = None, like: torch.Tensor | None = None) -> Any:
        return None

    def step(self, y: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """y ``(B, H)`` -> (out ``(B, H)``, state). Stateless activations are their own step."""
        return self(y.unsqueeze(-1)).squeeze(-1), state


class GELU(Activation):
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.gelu(y)


class GLU(nn.Module):
    """Feature mixing of S4D: Conv1x1 (H -> 2H), then a ⊙ sigmoid(b)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.linear = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)

    # True when the input holds spikes (set by SSMBlock): the backward pass then keeps them as bytes.
    spike_input = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, L) -> (B, H, L)
        return glu_conv(x, self.linear.weight, self.linear.bias, self.spike_input)

    def step(self, x: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, H)
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
    """``mixing(dropout(activation(S4D(u))))``: u and the output are ``(B, H, L)``, or ``(B, L, H)``
    with ``transposed=False``. ``ssm_options`` go to :class:`spikessm.ssm.S4D` (``d_state``,
    ``dt_min``, ``dt_max``, ``init``, ``bidirectional``, ``lr``)."""

    def __init__(self, d_model: int, activation: Activation, mixing: nn.Module, dropout: float = 0.0,
                 transposed: bool = True, **ssm_options: Any):
        super().__init__()
        self.d_model, self.transposed = d_model, transposed
        self.ssm = S4D(d_model, **ssm_options)
        self.activation = activation
        self.dropout = Dropout(dropout)
        self.mixing = mixing
        if isinstance(mixing, GLU):  # dropout scales spikes to 1 / (1 - p): no longer bytes
            mixing.spike_input = activation.spiking and dropout == 0

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if not self.transposed:
            return self._forward(u.transpose(-1, -2)).transpose(-1, -2)
        return self._forward(u)

    def _forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.mixing(self.dropout(self.activation(self.ssm(u))))

    def initial_state(self, batch: int, like: torch.Tensor | None = None) -> tuple[Any, Any]:
        """The state before the first :meth:`step`; ``like`` gives dtype and device (default: the
        layer's parameters)."""
        like = self.ssm.D if like is None else like
        return self.ssm.initial_state(batch), self.activation.initial_state(batch, self.d_model, like)

    def step(self, u: torch.Tensor, state: tuple[Any, Any], discrete: Any = None) -> tuple[torch.Tensor, tuple[Any, Any]]:
        """u ``(B, H)`` -> (out ``(B, H)``, state). Inference only: dropout is not applied.
        ``discrete``: ``self.ssm.kernel.discrete()``, to compute it once for a whole stream."""
        ssm_state, act_state = state
        y, ssm_state = self.ssm.step(u, ssm_state, discrete)
        a, act_state = self.activation.step(y, act_state)
        return self.mixing.step(a), (ssm_state, act_state)

    def extra_repr(self) -> str:
        return "" if self.transposed else "transposed=False"
