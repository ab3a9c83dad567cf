"""The ANN baseline block of both papers: S4D -> GELU -> dropout -> Conv1x1 + GLU."""
from spikessm.blocks.base import GELU, GLU, SSMBlock


def s4d_block(d_model: int, dropout: float = 0.0, **ssm_options) -> SSMBlock:
    """The S4D block of Gu et al. (2022); ``ssm_options`` go to :class:`spikessm.ssm.S4D`."""
    return SSMBlock(d_model, GELU(), GLU(d_model), dropout, **ssm_options)
