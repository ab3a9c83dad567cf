"""Sequence models (encoder, residual stack, pooling, decoder), the registry of model names, and the
data-free :class:`ModelConfig` that builds them."""
from spikessm.models.backbone import SequenceModel
from spikessm.models.config import ModelConfig, build_model, model_defaults
from spikessm.models.registry import all_models, get_model_spec

__all__ = ["ModelConfig", "SequenceModel", "all_models", "build_model", "get_model_spec", "model_defaults"]
