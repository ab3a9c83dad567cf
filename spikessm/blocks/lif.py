"""``LIF``: leaky integrate-and-fire neurons as an ``nn.Module`` with a learnable threshold (and
optionally a learnable leak), for any model.

The threshold is learned as ``ln_vth`` (v_th = exp(ln_vth) > 0), one per channel or one shared, and
applied by dividing the input current: for a hard reset, LIF with threshold v_th on input I fires
exactly as LIF with threshold 1 on I / v_th (Shen et al. 2025, arXiv 2408.14909, Property 1). A
learnable leak is ``tau = sigmoid(tau_logit)``, kept inside (0, 1).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from spikessm.blocks.base import Activation
from spikessm.blocks.lean_ops import divide_by_threshold
from spikessm.errors import UserError, check_choice
from spikessm.neurons.lif import LIF_BACKENDS, lif
from spikessm.neurons.step import RESETS, lif_step
from spikessm.neurons.surrogates import SURROGATES


class LIF(Activation):
    """LIF neurons, one per channel: input currents -> spikes in {0, 1} of the same shape.

    Layout: ``transposed=True`` (default) takes ``(B, H, L)``, time last; ``transposed=False`` takes
    ``(B, L, H)``. ``channels`` = H gives every channel its own threshold (and leak); ``None``
    shares one. ``learn_threshold`` / ``learn_tau`` make them trainable parameters.
    ``backend``: any :func:`spikessm.neurons.lif` backend. Streaming: :meth:`initial_state` and
    :meth:`step` advance the same neurons one time step, ``(B, H)`` at a time.
    """

    spiking = True
    macs_per_step = 1  # the membrane update tau u + x

    def __init__(self, channels: int | None = None, tau: float = 0.125, threshold: float = 1.0,
                 reset: str = "hard", surrogate: str = "triangle", backend: str = "auto",
                 learn_threshold: bool = True, learn_tau: bool = False, transposed: bool = True):
        super().__init__()
        check_choice("reset", reset, RESETS)
        check_choice("surrogate", surrogate, SURROGATES)
        check_choice("backend", backend, LIF_BACKENDS)
        if not threshold > 0:
            raise UserError(f"LIF threshold must be > 0; got {threshold!r}")
        if not (0 < tau < 1 if learn_tau else 0 <= tau <= 1):
            raise UserError(f"LIF tau must lie in {'(0, 1) to be learned' if learn_tau else '[0, 1]'}; got {tau!r}")
        self.channels, self.transposed = channels, transposed
        self.reset, self.surrogate, self.backend = reset, surrogate, backend
        shape = (1,) if channels is None else (channels, 1)  # (H, 1) broadcasts over (B, H, L)
        self.ln_vth = nn.Parameter(torch.full(shape, math.log(threshold)), requires_grad=learn_threshold)
        if learn_tau:
            self.tau_logit = nn.Parameter(torch.full(shape, math.log(tau / (1 - tau))))
        else:
            self.tau_logit = None
            self._tau = float(tau)

    @property
    def tau(self) -> float | torch.Tensor:
        """The leak: a float, or ``(H,)`` (``(1,)`` shared) when learned."""
        return self._tau if self.tau_logit is None else torch.sigmoid(self.tau_logit).view(-1)

    @property
    def threshold(self) -> torch.Tensor:
        """The firing thresholds exp(ln_vth), ``(H,)`` or ``(1,)``."""
        return torch.exp(self.ln_vth).view(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transposed:
            return self._spikes(x.transpose(-1, -2)).transpose(-1, -2)
        return self._spikes(x)

    def _spikes(self, x: torch.Tensor) -> torch.Tensor:  # (..., H, L)
        return lif(divide_by_threshold(x, self.ln_vth), self.tau, 1.0, self.reset, self.surrogate, self.backend)

    def initial_state(self, batch: int, d_model: int | None = None, like: torch.Tensor | None = None) -> torch.Tensor:
        """Membranes at rest, ``(B, H)``; ``like`` gives dtype and device (default: the parameters')."""
        channels = d_model or self.channels
        if channels is None:
            raise UserError("LIF(channels=None).initial_state needs d_model, the number of channels")
        like = self.ln_vth if like is None else like
        return torch.zeros(batch, channels, dtype=like.dtype, device=like.device)

    def step(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: input ``(B, H)``, membranes ``(B, H)`` -> (spikes ``(B, H)``, membranes)."""
        return lif_step(x / torch.exp(self.ln_vth.view(-1)), u, self.tau, 1.0, self.reset, self.surrogate)

    def extra_repr(self) -> str:
        tau = "learned" if self.tau_logit is not None else self._tau
        layout = "" if self.transposed else ", transposed=False"
        return (f"channels={self.channels}, tau={tau}, reset={self.reset}, surrogate={self.surrogate}, "
                f"backend={self.backend}{layout}")
