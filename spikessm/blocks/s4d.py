"""The ANN baseline block of both papers: S4D -> GELU -> dropout -> Conv1x1 + GLU."""
from __future__ import annotations

from typing import Any

from spikessm.blocks.base import GELU, GLU, SSMBlock


class S4DBlock(SSMBlock):
    """The S4D block of Gu et al. (2022, arXiv 2206.11893). ``(B, H, L)`` -> ``(B, H, L)``, or
    ``(B, L, H)`` with ``transposed=False``; ``ssm_options`` go to :class:`spikessm.ssm.S4D`."""

    def __init__(self, d_model: int, dropout: float = 0.0, transposed: bool = True, **ssm_options: Any):
        super().__init__(d_model, GELU(), GLU(d_model), dropout, transposed, **ssm_options)
