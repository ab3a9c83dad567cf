"""SpikingSSM (Shen et al., AAAI 2025; arXiv 2408.14909): an LIF neuron inside the S4D block.

    y = K * u + D u                   the S4D output is the neuron's input current (their Eq. 8)
    s = LIF(y / exp(ln_vth))          hard reset, tau = 0.125, threshold 1 after the scaling
    out = GLU(Conv1x1(s))             feature mixing on spikes: accumulates only

A learnable threshold v_th is the same as dividing the input by v_th (their Property 1,
f(I; v_th) = f(I / v_th; 1)), so it is learned as ln_vth per channel (or shared), initialised at 0.
The neuron runs on any :func:`spikessm.neurons.lif` backend: ``auto`` picks the fastest exact one;
``sdn`` reproduces the paper's training with the learned Surrogate Dynamic Network.
"""
import torch
from torch import nn

from spikessm.blocks.base import GLU, Activation, SSMBlock
from spikessm.neurons import lif, lif_step


class LIFNeuron(Activation):
    """LIF neurons, one per channel, with a learnable threshold. ``(B, H, L)`` -> spikes ``(B, H, L)``."""

    spiking = True
    macs_per_step = 1  # the membrane update tau u + x

    def __init__(self, d_model: int, tau: float = 0.125, reset: str = "hard", surrogate: str = "triangle",
                 backend: str = "auto", learnable_vth: bool = True, shared_vth: bool = False):
        super().__init__()
        self.tau, self.reset, self.surrogate, self.backend = tau, reset, surrogate, backend
        shape = (1,) if shared_vth else (d_model, 1)
        self.ln_vth = nn.Parameter(torch.zeros(shape), requires_grad=learnable_vth)

    def forward(self, y):
        return lif(y / torch.exp(self.ln_vth), self.tau, 1.0, self.reset, self.surrogate, self.backend)

    def initial_state(self, batch, d_model, like):
        return torch.zeros(batch, d_model, dtype=like.dtype, device=like.device)

    def step(self, y, u):
        return lif_step(y / torch.exp(self.ln_vth.view(-1)), u, self.tau, 1.0, self.reset, self.surrogate)

    def extra_repr(self):
        return f"tau={self.tau}, reset={self.reset}, surrogate={self.surrogate}, backend={self.backend}"


def spikingssm_block(d_model: int, dropout: float = 0.0, tau: float = 0.125, reset: str = "hard",
                     surrogate: str = "triangle", backend: str = "auto", learnable_vth: bool = True,
                     shared_vth: bool = False, **ssm_options) -> SSMBlock:
    neuron = LIFNeuron(d_model, tau, reset, surrogate, backend, learnable_vth, shared_vth)
    return SSMBlock(d_model, neuron, GLU(d_model), dropout, **ssm_options)
