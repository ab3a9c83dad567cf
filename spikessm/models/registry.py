"""Model names -> how to build them. ``spikessm models`` prints this registry.

A model is the shared :class:`SequenceModel` backbone around one kind of block. Its config holds the
backbone and S4D settings in :data:`COMMON_OPTIONS` plus the block's own options.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from spikessm.data.registry import Splits
from spikessm.registry import Registry
from spikessm.models.backbone import SequenceModel

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
    """``make_block(d_model, dropout, ssm_options, block_options)`` builds one block."""

    name: str
    description: str
    make_block: Callable[..., nn.Module]
    options: dict[str, Any] = field(default_factory=dict)
    spiking: bool = False


def _load_builtin_models() -> None:
    # Importing the block modules registers them (spikessm.models.zoo).
    import spikessm.models.zoo  # noqa: F401


MODELS: Registry[ModelSpec] = Registry("model", _load_builtin_models)
register, get_model_spec, all_models = MODELS.register, MODELS.get, MODELS.all


def model_defaults(name: str) -> dict[str, Any]:
    """The full option dict of a model: the common options, then its own."""
    return {"name": name, **COMMON_OPTIONS, **get_model_spec(name).options}


def build_model(options: dict[str, Any], splits: Splits, kind: str) -> SequenceModel:
    """A :class:`SequenceModel` for a task's splits, from a complete model option dict."""
    spec = get_model_spec(options["name"])
    ssm = {k: options[k] for k in SSM_KEYS}
    own = {k: options[k] for k in spec.options}
    return SequenceModel(
        lambda d: spec.make_block(d, options["dropout"], ssm, own),
        kind=kind, n_classes=splits.n_classes, d_model=options["d_model"],
        n_layers=options["n_layers"], d_input=splits.d_input, vocab_size=splits.vocab_size,
        norm=options["norm"], prenorm=options["prenorm"], dropout=options["dropout"],
        pool=options["pool"],
        # .get: checkpoints saved before these options existed hold configs without them
        adaptive_cutoffs=options.get("adaptive_softmax_cutoffs"),
        adaptive_div_value=options.get("adaptive_softmax_div_value", 4.0),
    )
