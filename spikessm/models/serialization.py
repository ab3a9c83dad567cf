"""Pretrained-model directories: ``config.json`` + ``model.safetensors``, no pickle anywhere.

``config.json`` holds ``{"format": "spikessm-pretrained", "version": 1, "model": <ModelConfig>, ...}``
plus whatever describes the model's task (its name, vocabulary, test metrics); ``model.safetensors``
holds the state dict in the safetensors format (a JSON header and raw tensor bytes), which cannot
carry code. Both are written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from spikessm.errors import UserError
from spikessm.files import write_atomically

FORMAT = "spikessm-pretrained"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_pretrained(directory: str | Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Path:
    """Write ``config`` (JSON-able, with a ``"model"`` entry) and the tensors into ``directory``."""
    directory = Path(directory)
    header = {"format": FORMAT, "version": VERSION, **config}
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserError(f"{name} holds non-finite values; refusing to save a broken model")
    data = save_safetensors_bytes(tensors, metadata={"format": "pt"})
    write_atomically(directory / WEIGHTS_FILE, lambda f: f.write(data))
    text = json.dumps(header, indent=2) + "\n"
    write_atomically(directory / CONFIG_FILE, lambda f: f.write(text.encode()))
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The validated top level of ``directory/config.json`` (its ``"model"`` entry is checked by
    :class:`~spikessm.models.config.ModelConfig`)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist: not a pretrained-model directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})".replace("\n", " ")) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"{path}: not a spikessm pretrained config (its \"format\" must be {FORMAT!r})")
    if config.get("version") != VERSION:
        raise UserError(f"{path}: version {config.get('version')!r}; this spikessm reads version {VERSION}")
    if not isinstance(config.get("model"), dict):
        raise UserError(f"{path}: no \"model\" mapping")
    return config


def read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``directory/model.safetensors``, or a one-line UserError."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return load_safetensors_bytes(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None


def load_state_strictly(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """``model.load_state_dict(tensors)``, but any missing or extra key, wrong shape or dtype kind is
    a one-line UserError naming ``source`` and the first offending key."""
    expected = model.state_dict()
    extra = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors))
    if extra:
        raise UserError(f"{source}: unexpected tensor {extra[0]!r} ({len(extra)} extra) for this model config")
    if missing:
        raise UserError(f"{source}: missing tensor {missing[0]!r} ({len(missing)} missing) for this model config")
    for name, want in expected.items():
        got = tensors[name]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise UserError(f"{source}: tensor {name!r} has shape {shape}, the model config needs {tuple(want.shape)}")
        if got.is_floating_point() != want.is_floating_point() or got.is_complex() != want.is_complex():
            raise UserError(f"{source}: tensor {name!r} is {got.dtype}, the model needs {want.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise UserError(f"{source}: tensor {name!r} holds non-finite values")
    model.load_state_dict(tensors)
