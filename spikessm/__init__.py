"""spikessm: spiking state space models (S4D, Binary S4D, GSU, SpikingSSM) for long sequences.

The public API, importable from here (loaded on first use, so that ``import spikessm`` stays light):

- layers for anyone's model: :class:`LIF`, :class:`S4D`, and the blocks :class:`S4DBlock`,
  :class:`BinaryS4DBlock`, :class:`GSUBlock`, :class:`SpikingS4DBlock` (``(B, H, L)``, or
  ``(B, L, H)`` with ``transposed=False``); :func:`param_groups` turns their optimiser hints into
  parameter groups;
- whole models: :class:`ModelConfig` (builds one without data), :func:`load_model` (checkpoint, run
  directory or pretrained directory), :func:`from_pretrained` (``config.json`` + ``model.safetensors``,
  or a shipped name such as ``"spikingssm-sdigits"``); ``model.save_pretrained(dir)`` writes one.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "LIF": "spikessm.blocks.lif",
    "S4D": "spikessm.ssm.s4d",
    "S4DBlock": "spikessm.blocks.s4d",
    "BinaryS4DBlock": "spikessm.blocks.binary",
    "GSUBlock": "spikessm.blocks.gsu",
    "SpikingS4DBlock": "spikessm.blocks.spiking",
    "ModelConfig": "spikessm.models.config",
    "SequenceModel": "spikessm.models.backbone",
    "load_model": "spikessm.pretrained",
    "from_pretrained": "spikessm.pretrained",
    "param_groups": "spikessm.train.optim",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from spikessm.blocks.binary import BinaryS4DBlock
    from spikessm.blocks.gsu import GSUBlock
    from spikessm.blocks.lif import LIF
    from spikessm.blocks.s4d import S4DBlock
    from spikessm.blocks.spiking import SpikingS4DBlock
    from spikessm.models.backbone import SequenceModel
    from spikessm.models.config import ModelConfig
    from spikessm.pretrained import from_pretrained, load_model
    from spikessm.ssm.s4d import S4D
    from spikessm.train.optim import param_groups


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikessm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
