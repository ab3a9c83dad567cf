"""The registered models: the ANN baseline and the spiking models of both papers.

Each entry's ``options`` are its block's own settings with their defaults; they become config keys
``model.<key>`` next to the shared backbone and S4D settings.
"""
from spikessm.blocks.binary import binary_s4d_block
from spikessm.blocks.gsu import gsu_block
from spikessm.blocks.s4d import s4d_block
from spikessm.blocks.spiking import spikingssm_block
from spikessm.models.registry import ModelSpec, register

GSU_OPTIONS = {"gsu_threshold": 0.15, "gsu_surrogate": "atan"}
LIF_OPTIONS = {"tau": 0.125, "reset": "hard", "surrogate": "triangle", "backend": "auto",
               "learnable_vth": True, "shared_vth": False}

register(ModelSpec(
    "s4d", "ANN baseline: S4D -> GELU -> GLU (Gu et al. 2022)",
    lambda d, dropout, ssm, own: s4d_block(d, dropout, **ssm),
))
register(ModelSpec(
    "binary-s4d", "Binary S4D: S4D -> binary spike -> GLU (Stan & Rhodes 2024)",
    lambda d, dropout, ssm, own: binary_s4d_block(d, dropout, **own, **ssm),
    options={"spike": "atan"}, spiking=True,
))
register(ModelSpec(
    "binary-s4d-gsu", "Binary S4D + GSU: S4D -> binary spike -> gated spiking unit (Stan & Rhodes 2024)",
    lambda d, dropout, ssm, own: gsu_block(d, dropout, **own, **ssm),
    options={"spike": "atan", **GSU_OPTIONS}, spiking=True,
))
register(ModelSpec(
    "s4d-gsu", "Binary S4D + GSU & GeLU: S4D -> GELU -> gated spiking unit (Stan & Rhodes 2024)",
    lambda d, dropout, ssm, own: gsu_block(d, dropout, spike=None, **own, **ssm),
    options=dict(GSU_OPTIONS), spiking=True,
))
register(ModelSpec(
    "spikingssm", "SpikingSSM: S4D -> LIF (hard reset, learnable threshold) -> GLU, exact neuron "
    "(Shen et al. 2025)",
    lambda d, dropout, ssm, own: spikingssm_block(d, dropout, **own, **ssm),
    options=dict(LIF_OPTIONS), spiking=True,
))
register(ModelSpec(
    "spikingssm-sdn", "SpikingSSM trained as the paper does, with the learned Surrogate Dynamic Network",
    lambda d, dropout, ssm, own: spikingssm_block(d, dropout, **own, **ssm),
    options={**LIF_OPTIONS, "backend": "sdn"}, spiking=True,
))
