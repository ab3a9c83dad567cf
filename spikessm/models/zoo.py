"""The registered models: the ANN baseline and the spiking models of both papers."""
from spikessm.blocks.s4d import s4d_block
from spikessm.models.registry import ModelSpec, register

register(ModelSpec(
    "s4d", "ANN baseline: S4D -> GELU -> GLU (Gu et al. 2022)",
    lambda d, dropout, ssm, own: s4d_block(d, dropout, **ssm),
))
