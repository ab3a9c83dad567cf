"""Spike functions with surrogate gradients, and the LIF neuron with its backends."""

from spikessm.neurons.lif import LIF_BACKENDS, lif
from spikessm.neurons.step import RESETS, lif_step
from spikessm.neurons.surrogates import SURROGATES, bernoulli_spike, spike, surrogate_grad, ternary_spike

__all__ = [
    "LIF_BACKENDS",
    "RESETS",
    "SURROGATES",
    "bernoulli_spike",
    "lif",
    "lif_step",
    "spike",
    "surrogate_grad",
    "ternary_spike",
]
