"""Sequence models (encoder, residual stack, pooling, decoder) and the registry of model names."""
from spikessm.models.backbone import SequenceModel
from spikessm.models.registry import all_models, build_model, get_model_spec, model_defaults

__all__ = ["SequenceModel", "all_models", "build_model", "get_model_spec", "model_defaults"]
