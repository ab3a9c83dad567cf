"""Model names -> how to build them. ``spikessm models`` prints this registry.

A model is the shared :class:`~spikessm.models.backbone.SequenceModel` backbone around one kind of
block; :mod:`spikessm.models.zoo` lists the built-in ones and :mod:`spikessm.models.config` builds them.
"""
from __future__ import annotations

from spikessm.models.spec import COMMON_OPTIONS, SSM_KEYS, ModelSpec
from spikessm.models.zoo import SPECS
from spikessm.registry import Registry


def _register_builtin_models() -> None:
    for spec in SPECS:
        MODELS.register(spec)


MODELS: Registry[ModelSpec] = Registry("model", _register_builtin_models)
register, get_model_spec, all_models = MODELS.register, MODELS.get, MODELS.all

__all__ = ["COMMON_OPTIONS", "MODELS", "ModelSpec", "SSM_KEYS", "all_models", "get_model_spec", "register"]
