"""A recurrent spiking network of adaptive LIF neurons, the recurrent-SNN baseline of sequential images.

Adaptive LIF (ALIF) neurons in the style of Bellec et al. (2018, arXiv 1803.09574) and Yin et al.
(2021, arXiv 2103.12593): each layer's neurons receive their input and their own spikes of the previous
step through recurrent weights, and every spike raises the neuron's threshold, which then decays back.
Per neuron and time step t:

    I_t = W_in x_t + b + W_rec s_{t-1}          input current (layer 0: W_in x_t + b is the encoder)
    theta_t = theta_0 + beta a_{t-1}            threshold raised by the adaptation variable a
    v_t = alpha u_{t-1} + (1 - alpha) I_t       leaky integration, alpha = exp(-1 / tau_m)
    s_t = H(v_t - theta_t)                      spike (surrogate gradient in training)
    u_t = v_t - theta_t s_t                     soft reset: subtract the threshold
    a_t = rho a_{t-1} + (1 - rho) s_t           adaptation, rho = exp(-1 / tau_adp)

tau_m and tau_adp are learned per neuron (as ln tau). Readout by membrane: the last layer's spikes
drive leaky integrators r_t = kappa r_{t-1} + (1 - kappa) s_t (kappa = exp(-1 / tau_out)), and the shared
linear decoder of r is then the membrane of leaky-integrator readout neurons (Bellec et al. 2018), read
at the last valid step (``pool: last``) or averaged over time (``pool: mean``). ``tau_out = 0`` reads the
spike count instead (the decoder of the mean spikes: non-leaky integrators). Training is
backpropagation through time over the unrolled loop.
"""
from __future__ import annotations

from typing import Any

import math

import torch
from torch import nn

from spikessm.errors import UserError, check_choice
from spikessm.models.backbone import SequenceModel
from spikessm.neurons.surrogates import SURROGATES, spike

OPTIONS = {"tau_m": 20.0, "tau_adp": 200.0, "theta0": 0.1, "beta": 1.8, "surrogate": "triangle", "tau_out": 10.0}
CHOICES = {"surrogate": SURROGATES}


class AdaptiveLIFLayer(nn.Module):
    """One recurrent layer of H adaptive LIF neurons.

    ``forward(current)``: input currents ``(B, L, H)`` (W_in x + b, already computed for every step)
    -> spikes ``(B, L, H)``; the recurrent current is added step by step. :meth:`step` advances one
    step ``(B, H)``. ``input``: the layer's input map (``None``: the current arrives ready, as from the
    model's encoder).
    """

    spiking = True  # the output is the layer's spikes (recorded as its firing rate)
    macs_per_step = 4  # per neuron: the leak and input of v (2), the threshold (1), the adaptation (1)

    def __init__(self, d_model: int, d_input: int | None = None, tau_m: float = 20.0, tau_adp: float = 200.0,
                 theta0: float = 0.1, beta: float = 1.8, surrogate: str = "triangle"):
        super().__init__()
        check_choice("model.surrogate", surrogate, SURROGATES)
        for name, value in (("tau_m", tau_m), ("tau_adp", tau_adp)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise UserError(f"model.{name} must be a number > 0 (time steps); got {value!r}")
        if not (isinstance(theta0, (int, float)) and theta0 > 0):
            raise UserError(f"model.theta0 must be a number > 0; got {theta0!r}")
        if not (isinstance(beta, (int, float)) and beta >= 0):
            raise UserError(f"model.beta must be a number >= 0; got {beta!r}")
        self.d_model, self.theta0, self.beta, self.surrogate = d_model, float(theta0), float(beta), surrogate
        self.input = None if d_input is None else nn.Linear(d_input, d_model)
        self.recurrent = nn.Linear(d_model, d_model, bias=False)
        self.ln_tau_m = nn.Parameter(torch.full((d_model,), float(tau_m)).log())
        self.ln_tau_adp = nn.Parameter(torch.full((d_model,), float(tau_adp)).log())

    def decays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha = exp(-1 / tau_m) and rho = exp(-1 / tau_adp), each ``(H,)`` in (0, 1)."""
        return torch.exp(-torch.exp(-self.ln_tau_m)), torch.exp(-torch.exp(-self.ln_tau_adp))

    def initial_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, a, s) at rest: membranes, adaptation and last spikes, each ``(B, H)`` zeros."""
        zeros = torch.zeros(batch, self.d_model, dtype=like.dtype, device=like.device)
        return zeros, zeros, zeros

    def _advance(self, current: torch.Tensor, state, alpha: torch.Tensor, rho: torch.Tensor):
        u, a, s = state
        theta = self.theta0 + self.beta * a
        v = alpha * u + (1 - alpha) * (current + self.recurrent(s))
        s = spike(v - theta, self.surrogate)
        return s, (v - theta * s, rho * a + (1 - rho) * s, s)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        alpha, rho = self.decays()
        state, spikes = self.initial_state(current.shape[0], current), []
        for t in range(current.shape[1]):
            s, state = self._advance(current[:, t], state, alpha, rho)
            spikes.append(s)
        return torch.stack(spikes, dim=1)

    def step(self, current: torch.Tensor, state):
        """current ``(B, H)`` -> (spikes ``(B, H)``, state)."""
        return self._advance(current, state, *self.decays())


class RecurrentSNN(SequenceModel):
    """``n_layers`` recurrent ALIF layers of ``d_model`` neurons with the shared encoder, pooling and
    decoders. Layer 0's input weights are the encoder; layer l > 0 receives layer l-1's spikes.

    ``block_options``: ``tau_m``, ``tau_adp`` (initial time constants in steps), ``theta0``, ``beta``,
    ``surrogate``, ``tau_out`` (the readout neurons' time constant; 0: spike-count readout). Always causal (``bidirectional`` must be false); ``norm``, ``prenorm`` and the S4D
    options do not apply (no residual stream). ``dropout`` drops spikes between layers.
    """

    def __init__(self, block_options: dict[str, Any], *, bidirectional: bool, **backbone: Any):
        if bidirectional:
            raise UserError("model rsnn is recurrent, hence causal: set model.bidirectional=false")
        own = {**OPTIONS, **block_options}
        tau_out = own.pop("tau_out")
        if not (isinstance(tau_out, (int, float)) and tau_out >= 0):
            raise UserError(f"model.tau_out must be a number >= 0 (0: spike-count readout); got {tau_out!r}")
        backbone["norm"] = "none"
        first = iter([True])  # only the first layer takes its current from the encoder

        def layer(d: int) -> nn.Module:
            return AdaptiveLIFLayer(d, None if next(first, False) else d, **own)

        super().__init__(layer, **backbone)
        # kappa: the readout neurons' leak (0: they integrate without leak, i.e. count spikes)
        self.kappa = math.exp(-1 / tau_out) if tau_out > 0 else 0.0

    def readout(self, spikes: torch.Tensor) -> torch.Tensor:
        """The last layer's spikes ``(B, L, H)`` -> what the decoder reads ``(B, L, H)``: the spikes
        (spike-count readout), or with ``tau_out`` > 0 the traces r_t = kappa r_{t-1} + (1 - kappa) s_t,
        so that ``decoder(r_t)`` is the membrane of leaky-integrator readout neurons (Bellec et al. 2018)."""
        if not self.kappa:
            return spikes
        r, traces = torch.zeros_like(spikes[:, 0]), []
        for t in range(spikes.shape[1]):
            r = self.kappa * r + (1 - self.kappa) * spikes[:, t]
            traces.append(r)
        return torch.stack(traces, dim=1)

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, d_input)`` or ids ``(B, L)`` -> the last layer's spikes (or readout traces) ``(B, H, L)``."""
        h = self.encoder(x)
        for i, layer in enumerate(self.blocks):
            if i:
                h = layer.input(self.dropout(h))
            h = layer(h)
        return self.readout(h).transpose(1, 2)

    def stack_operations(self, L: int, rates: dict[str, float]) -> list[dict]:
        """Per layer and sequence: every spike of layer l is delivered to its H recurrent synapses and
        to the next layer's H input synapses, one AC each (event-driven hardware delivers every spike,
        the last step's too); the neuron updates are MACs (``macs_per_step``). The ANN equivalent
        prices both maps as dense MACs. The encoder (layer 0's input, on real input) is its own row; the
        readout traces (``tau_out`` > 0) are one MAC per channel and step, in the last layer's row."""
        ops, below = [], None
        for i, layer in enumerate(self.blocks):
            H = layer.d_model
            rate = rates.get(f"blocks.{i}")
            neuron = L * H * layer.macs_per_step
            dense = L * H * H * (2 if i else 1)  # recurrent, and the input map from the layer below
            ac = L * H * H * ((rate or 0.0) + ((below or 0.0) if i else 0.0))
            if i == len(self.blocks) - 1 and self.kappa:
                neuron += L * H  # the readout traces: one MAC per channel and step
            ops.append({"layer": f"blocks.{i}", "mac": neuron, "ac": ac, "ann_mac": neuron + dense, "rate": rate,
                        "mixing": (0.0, ac, dense)})
            below = rate
        return ops

    # ---- streaming

    def initial_state(self, batch: int) -> dict:
        self._require_streamable()
        like = self.encoder.weight
        zeros = torch.zeros(batch, self.d_model, dtype=like.dtype, device=like.device)
        return {"blocks": [layer.initial_state(batch, like) for layer in self.blocks], "trace": zeros,
                "sum": zeros, "steps": 0}

    @torch.no_grad()
    def step(self, x_t: torch.Tensor, state: dict):
        """One step: x_t ``(B, d_input)`` or ids ``(B,)`` -> (output, state), as :meth:`SequenceModel.step`."""
        h, states = self.encoder(x_t), []
        for i, (layer, s) in enumerate(zip(self.blocks, state["blocks"])):
            h, s = layer.step(layer.input(h) if i else h, s)
            states.append(s)
        if self.kappa:
            h = self.kappa * state["trace"] + (1 - self.kappa) * h
        return self._emit(h, {**state, "blocks": states, "trace": h})
