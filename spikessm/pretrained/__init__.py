"""Loading models without their data: from checkpoints, run directories and pretrained directories,
and the pretrained models shipped inside the package.

- :func:`load_model` takes a checkpoint file (``best.pt``, ``last.pt``), a run directory (its
  ``best.pt``), a pretrained directory (``config.json`` + ``model.safetensors``) or a shipped name.
- :func:`from_pretrained` takes a pretrained directory or a shipped name (:func:`available`).
- :func:`export_run` turns a finished run into a pretrained directory (``spikessm export``).

Each returns the model in eval mode on the CPU (``.to(device)`` it as needed), with
``model.config`` (its :class:`~spikessm.models.config.ModelConfig`) and ``model.info`` (what the
checkpoint or ``config.json`` says about the task: name, vocabulary, metrics).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from spikessm.data.registry import get_task
from spikessm.errors import UserError
from spikessm.models.backbone import SequenceModel
from spikessm.models.config import ModelConfig
from spikessm.models.serialization import CONFIG_FILE, WEIGHTS_FILE, load_state_strictly, read_config, read_weights
from spikessm.train.checkpoint import load_checkpoint

SHIPPED = Path(__file__).resolve().parent  # <name>/config.json + model.safetensors


def available() -> list[str]:
    """Names of the pretrained models shipped with the package."""
    return sorted(p.parent.name for p in SHIPPED.glob(f"*/{CONFIG_FILE}"))


def pretrained_dir(name_or_dir: str | Path) -> Path:
    """The directory of a shipped name, or ``name_or_dir`` itself when it is a pretrained directory."""
    path = Path(name_or_dir).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    if isinstance(name_or_dir, str) and (SHIPPED / name_or_dir / CONFIG_FILE).is_file():
        return SHIPPED / name_or_dir
    if not path.exists():
        raise UserError(f"{name_or_dir} does not exist and is not a shipped model ({', '.join(available()) or 'none'})")
    raise UserError(f"{name_or_dir} is neither a pretrained directory (config.json + model.safetensors) nor a "
                    f"shipped model ({', '.join(available()) or 'none'})")


def from_pretrained(name_or_dir: str | Path) -> SequenceModel:
    """The model saved by ``save_pretrained`` (or ``spikessm export``) in a directory, or a shipped
    one by name, in eval mode. Only JSON and safetensors are read: no code can run."""
    directory = pretrained_dir(name_or_dir)
    config = read_config(directory)
    model = ModelConfig.from_dict(config["model"], str(directory / CONFIG_FILE)).build()
    load_state_strictly(model, read_weights(directory), directory / WEIGHTS_FILE)
    model.info = {k: v for k, v in config.items() if k not in ("format", "version", "model")}
    return model.eval()


def checkpoint_model_config(ckpt: dict[str, Any], path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` a checkpoint holds; for checkpoints saved before it did, inferred from
    its training config and the shapes of its weights (no data needed either way)."""
    if "model_config" in ckpt:
        return ModelConfig.from_dict(ckpt["model_config"], f"checkpoint {path}")
    cfg, state = ckpt.get("config"), ckpt.get("model")
    if not isinstance(cfg, dict) or not isinstance(state, dict) or "encoder.weight" not in state:
        raise UserError(f"checkpoint {path} holds no model config and no model to infer one from")
    task = get_task(cfg["task"])
    encoder = state["encoder.weight"]
    ids = task.vocab_size is not None
    if task.kind == "lm":
        n_classes = encoder.shape[0]
    else:
        decoder = [k for k in state if k.startswith("decoder.") and k.endswith("weight")][-1]
        n_classes = state[decoder].shape[0]
    return ModelConfig.from_options(cfg["model"], task.kind, n_classes,
                                    d_input=None if ids else encoder.shape[1],
                                    vocab_size=encoder.shape[0] if ids else None)


def checked_training_config(cfg: Any, path: Path) -> dict:
    """The training config a checkpoint holds, validated as ``spikessm train`` validates one (keys added
    since get their defaults); {} when it holds none. A malformed one is a one-line UserError."""
    if not cfg:
        return {}
    from spikessm.train.config import build_config

    if not isinstance(cfg, dict):
        raise UserError(f"checkpoint {path}: its training config is a {type(cfg).__name__}, not a mapping")
    try:
        return build_config(flags=cfg)
    except UserError as e:
        raise UserError(f"checkpoint {path}: its training config is invalid: {e}") from None


def load_model(path: str | Path) -> SequenceModel:
    """A model in eval mode from a checkpoint file, a run directory (its best.pt), a pretrained
    directory or a shipped name. Never reads the training data."""
    p = Path(path).expanduser()
    if p.is_dir() and not (p / CONFIG_FILE).is_file():
        if not (p / "best.pt").is_file():
            raise UserError(f"{p} holds neither best.pt (a run directory) nor config.json (a pretrained model)")
        p = p / "best.pt"
    if p.is_file():
        ckpt = load_checkpoint(p)
        model = checkpoint_model_config(ckpt, p).build()
        if not isinstance(ckpt.get("model"), dict):
            raise UserError(f"checkpoint {p} holds no model weights")
        load_state_strictly(model, ckpt["model"], f"checkpoint {p}")
        cfg = checked_training_config(ckpt.get("config"), p)
        model.info = {"task": cfg.get("task"), "vocab": ckpt.get("vocab"), "config": cfg}
        return model.eval()
    return from_pretrained(path)


def export_run(run_dir: str | Path, out: str | Path, sample_text: str | None = None) -> Path:
    """Write the best weights of a finished run as a pretrained directory ``out``: the model config,
    the task (name, data options, vocabulary) and the run's test metrics from summary.json.
    ``sample_text``: a short text for language models to stream when their data is not at hand."""
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    cfg = model.info["config"]
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    keep = ("test_accuracy", "test_ppl", "test_bpc", "test_loss", "firing_rate", "firing_rates", "params",
            "epochs", "seed", "train_seconds")
    data = {k: v for k, v in (cfg.get("data") or {}).items() if k != "dir"}
    info: dict[str, Any] = {"task": cfg.get("task"), "data": data, "vocab": model.info.get("vocab"),
                            "metrics": {k: summary[k] for k in keep if k in summary},
                            "training_config": {k: v for k, v in cfg.items() if k != "data"}}
    if sample_text is not None:
        info["sample_text"] = sample_text
    return model.save_pretrained(out, **info)


__all__ = ["available", "checkpoint_model_config", "export_run", "from_pretrained", "load_model", "pretrained_dir"]
