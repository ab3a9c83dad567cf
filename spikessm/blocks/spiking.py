"""SpikingSSM (Shen et al., AAAI 2025; arXiv 2408.14909): an LIF neuron inside the S4D block.

    y = K * u + D u                   the S4D output is the neuron's input current (their Eq. 8)
    s = LIF(y / exp(ln_vth))          hard reset, tau = 0.125, threshold 1 after the scaling
    out = GLU(Conv1x1(s))             feature mixing on spikes: accumulates only

A learnable threshold v_th is the same as dividing the input by v_th (their Property 1,
f(I; v_th) = f(I / v_th; 1)), so it is learned as ln_vth per channel (or shared), initialised at 0.
The neuron runs on any :func:`spikessm.neurons.lif` backend: ``auto`` picks the fastest exact one;
``sdn`` reproduces the paper's training with the learned Surrogate Dynamic Network.
"""
from __future__ import annotations

from typing import Any

from spikessm.blocks.base import GLU, SSMBlock
from spikessm.blocks.lif import LIF


class SpikingS4DBlock(SSMBlock):
    """S4D -> LIF (per-channel learnable threshold) -> dropout -> GLU.

    ``(B, H, L)`` -> ``(B, H, L)``, or ``(B, L, H)`` with ``transposed=False``. Neuron options as in
    :class:`~spikessm.blocks.lif.LIF` (``shared_threshold``: one threshold for all channels);
    ``ssm_options`` go to :class:`spikessm.ssm.S4D`.
    """

    def __init__(self, d_model: int, tau: float = 0.125, reset: str = "hard", surrogate: str = "triangle",
                 backend: str = "auto", learn_threshold: bool = True, shared_threshold: bool = False,
                 learn_tau: bool = False, dropout: float = 0.0, transposed: bool = True, **ssm_options: Any):
        neuron = LIF(None if shared_threshold else d_model, tau=tau, reset=reset, surrogate=surrogate,
                     backend=backend, learn_threshold=learn_threshold, learn_tau=learn_tau)
        super().__init__(d_model, neuron, GLU(d_model), dropout, transposed, **ssm_options)
