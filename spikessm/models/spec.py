"""What a registered model is (:class:`ModelSpec`) and the options every model shares.

A leaf of the models package: :mod:`spikessm.models.zoo` lists the specs, :mod:`spikessm.models.registry`
registers them and :mod:`spikessm.models.config` builds models from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

# The settings of the backbone and of every S4D layer, with their defaults (config keys ``model.<key>``).
COMMON_OPTIONS: dict[str, Any] = {
    "d_model": 64, "n_layers": 4, "d_state": 64, "dt_min": 0.001, "dt_max": 0.1, "init": "lin",
    "bidirectional": False, "norm": "batch", "prenorm": False, "dropout": 0.0, "pool": "mean",
    # Language modelling: adaptive softmax cluster boundaries (empty: a plain linear decoder) and the
    # factor by which each further cluster's projection shrinks (see SequenceModel).
    "adaptive_softmax_cutoffs": [], "adaptive_softmax_div_value": 4.0,
}
SSM_KEYS = ("d_state", "dt_min", "dt_max", "init", "bidirectional")


@dataclass(frozen=True)
class ModelSpec:
    """``make_block(d_model, dropout, ssm_options, block_options)`` builds one block of the
    :class:`~spikessm.models.backbone.SequenceModel` stack. A model that is not such a stack (the
    Transformer, the recurrent SNN) gives ``model_class`` instead: a SequenceModel subclass built as
    ``model_class(block_options, bidirectional=..., **backbone_options)``.

    ``options``: the block's own settings with their defaults; ``choices``: for those that take a
    name, the valid names (checked when a config is built, before any data is read).
    """

    name: str
    description: str
    make_block: Callable[..., nn.Module] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    spiking: bool = False
    choices: dict[str, tuple] = field(default_factory=dict)
    model_class: type | None = None
