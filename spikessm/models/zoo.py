"""The built-in models: the ANN baseline and the spiking models of both papers.

Each entry's ``options`` are its block's own settings with their defaults; they become config keys
``model.<key>`` next to the shared backbone and S4D settings. :mod:`spikessm.models.registry`
registers :data:`SPECS`.
"""
from spikessm.blocks.binary import SPIKES, BinaryS4DBlock
from spikessm.blocks.gsu import GSUBlock
from spikessm.blocks.s4d import S4DBlock
from spikessm.blocks.spiking import SpikingS4DBlock
from spikessm.models import rsnn, transformer
from spikessm.models.spec import ModelSpec
from spikessm.neurons.lif import LIF_BACKENDS
from spikessm.neurons.step import RESETS
from spikessm.neurons.surrogates import SURROGATES

GSU_OPTIONS = {"gsu_threshold": 0.15, "gsu_surrogate": "atan"}
GSU_CHOICES = {"gsu_surrogate": SURROGATES}
LIF_OPTIONS = {"tau": 0.125, "reset": "hard", "surrogate": "triangle", "backend": "auto",
               "learnable_vth": True, "shared_vth": False}
LIF_CHOICES = {"reset": RESETS, "surrogate": SURROGATES, "backend": LIF_BACKENDS}


def _spiking_block(d, dropout, ssm, own):
    return SpikingS4DBlock(d, dropout=dropout, tau=own["tau"], reset=own["reset"], surrogate=own["surrogate"],
                           backend=own["backend"], learn_threshold=own["learnable_vth"],
                           shared_threshold=own["shared_vth"], **ssm)


SPECS = (
    ModelSpec("s4d", "ANN baseline: S4D -> GELU -> GLU (Gu et al. 2022)",
              lambda d, dropout, ssm, own: S4DBlock(d, dropout=dropout, **ssm)),
    ModelSpec("binary-s4d", "Binary S4D: S4D -> binary spike -> GLU (Stan & Rhodes 2024)",
              lambda d, dropout, ssm, own: BinaryS4DBlock(d, dropout=dropout, **own, **ssm),
              options={"spike": "atan"}, spiking=True, choices={"spike": SPIKES}),
    ModelSpec("binary-s4d-gsu", "Binary S4D + GSU: S4D -> binary spike -> gated spiking unit (Stan & Rhodes 2024)",
              lambda d, dropout, ssm, own: GSUBlock(d, dropout=dropout, **own, **ssm),
              options={"spike": "atan", **GSU_OPTIONS}, spiking=True, choices={"spike": SPIKES, **GSU_CHOICES}),
    ModelSpec("s4d-gsu", "Binary S4D + GSU & GeLU: S4D -> GELU -> gated spiking unit (Stan & Rhodes 2024)",
              lambda d, dropout, ssm, own: GSUBlock(d, dropout=dropout, spike=None, **own, **ssm),
              options=dict(GSU_OPTIONS), spiking=True, choices=dict(GSU_CHOICES)),
    ModelSpec("spikingssm", "SpikingSSM: S4D -> LIF (hard reset, learnable threshold) -> GLU, exact neuron "
              "(Shen et al. 2025)", _spiking_block, options=dict(LIF_OPTIONS), spiking=True,
              choices=dict(LIF_CHOICES)),
    ModelSpec("spikingssm-sdn", "SpikingSSM trained as the paper does, with the learned Surrogate Dynamic Network",
              _spiking_block, options={**LIF_OPTIONS, "backend": "sdn"}, spiking=True, choices=dict(LIF_CHOICES)),
    ModelSpec("transformer", "Transformer baseline of LRA: torch.nn encoder layers, sinusoidal or learned positions "
              "(Tay et al. 2021)", options=dict(transformer.OPTIONS), choices=dict(transformer.CHOICES),
              model_class=transformer.TransformerModel),
    ModelSpec("rsnn", "Recurrent SNN: adaptive LIF neurons with recurrent weights, BPTT (Bellec et al. 2018, "
              "Yin et al. 2021)", options=dict(rsnn.OPTIONS), spiking=True, choices=dict(rsnn.CHOICES),
              model_class=rsnn.RecurrentSNN),
)
