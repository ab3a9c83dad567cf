"""Experiment configs as plain nested dicts, built in layers and validated in one place.

Precedence, lowest first: built-in defaults (the model's and the task's own options included) ->
a preset YAML (``--preset spikingssm/listops`` or a path) -> the CLI flags -> ``--set key=value``.
Every key must already exist in the defaults, so a typo is an error, not a silently ignored setting.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from spikessm.data.registry import COMMON_DATA_OPTIONS, get_task
from spikessm.errors import UserError, check_choice
from spikessm.models.backbone import cutoffs_problem
from spikessm.models.config import check_model_options, model_defaults

DEFAULT_TASK = "sdigits"
DEFAULT_MODEL = "spikingssm"
PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "eval_batch_size": 256,
    "lr": 0.01,
    "weight_decay": 0.01,
    "ssm_lr": 0.001,  # parameters with S4-style _optim hints (S4D's A, dt): lr = min(lr, ssm_lr)
    "warmup_epochs": 1.0,
    "grad_clip": 0.0,  # 0 = no clipping
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "num_workers": 0,
    "threads": 0,  # torch CPU threads; 0 = torch's default
    "accumulate": 1,  # micro-batches per optimizer step (gradient accumulation)
    "bf16": False,  # bfloat16 autocast on the training device (CPU too)
    "checkpoint_every": 0,  # also save last.pt every this many optimizer steps; 0 = at epoch ends only
    "skip_nonfinite": False,  # skip a step whose loss is NaN/inf instead of stopping the run
}

# (section, key) -> check(value) returning an error message or None
POSITIVE = lambda v: None if v > 0 else "must be > 0"  # noqa: E731
NON_NEGATIVE = lambda v: None if v >= 0 else "must be >= 0"  # noqa: E731
SEED_LIMIT = 2 ** 32  # numpy's seeds are 32-bit: every seed is in [0, 2**32)
# task options that are lengths: 0 or less would train on empty (or end-cut) sequences
POSITIVE_DATA_OPTIONS = ("l_max", "seq_len")
CHECKS = {
    ("train", "epochs"): POSITIVE, ("train", "batch_size"): POSITIVE,
    ("train", "eval_batch_size"): POSITIVE, ("train", "lr"): POSITIVE,
    ("train", "ssm_lr"): POSITIVE, ("train", "weight_decay"): NON_NEGATIVE,
    ("train", "warmup_epochs"): NON_NEGATIVE, ("train", "grad_clip"): NON_NEGATIVE,
    ("train", "num_workers"): NON_NEGATIVE, ("train", "threads"): NON_NEGATIVE,
    ("train", "accumulate"): POSITIVE, ("train", "checkpoint_every"): NON_NEGATIVE,
    ("data", "train_samples"): NON_NEGATIVE, ("data", "eval_samples"): NON_NEGATIVE,
    ("model", "d_model"): POSITIVE, ("model", "n_layers"): POSITIVE,
    ("model", "dropout"): lambda v: None if 0 <= v < 1 else "must be in [0, 1)",
    # the bound by the vocabulary size is checked when the model is built (chars: it depends on the file)
    ("model", "adaptive_softmax_cutoffs"): lambda v: None if v is None else cutoffs_problem(v),
    ("model", "adaptive_softmax_div_value"): lambda v: None if v is not None and v > 0 else "must be > 0",
}


def list_presets() -> list[str]:
    return sorted(str(p.relative_to(PRESET_DIR).with_suffix("")) for p in PRESET_DIR.rglob("*.yaml"))


def load_preset(name: str) -> dict:
    """A preset by name (``spikingssm/listops``) or a path to a YAML file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(list_presets())} "
                        "(or give a path to a .yaml file)")
    try:
        preset = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); a preset is a YAML file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(preset, dict):
        raise UserError(f"{path}: a preset must be a mapping of config sections")
    return preset


def defaults(task: str, model: str) -> dict:
    """The complete default config for a task and a model."""
    return {
        "task": task,
        "seed": 0,
        "model": model_defaults(model),
        "data": {**COMMON_DATA_OPTIONS, **get_task(task).options},
        "train": dict(TRAIN_DEFAULTS),
    }


def _check_type(key: str, default: Any, value: Any) -> Any:
    if default is None:
        return value
    if value is None:
        raise UserError(f"config key {key}: expected {type(default).__name__}, got nothing (an empty value)")
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise UserError(f"config key {key}: expected {type(default).__name__}, got {value!r}")
    return value


def merge(base: dict, update: dict, where: str = "") -> dict:
    """``base`` with ``update`` laid over it; unknown keys and wrong types are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in out:
            raise UserError(f"unknown config key {path!r}; valid keys here: {', '.join(sorted(out))}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"config key {path}: expected a mapping, got {value!r}")
            out[key] = merge(out[key], value, f"{path}.")
        else:
            out[key] = _check_type(path, out[key], value)
    return out


def parse_set(assignment: str) -> dict:
    """``"model.d_model=128"`` -> ``{"model": {"d_model": 128}}`` (the value is read as YAML)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set expects key=value (e.g. model.d_model=128), got {assignment!r}")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" as a string
            value = float(value)
        except ValueError:
            pass
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def check_finite(value: Any, key: str = "") -> None:
    """A :class:`UserError` for a NaN or infinite number anywhere in a config: no option means
    anything with one (``train.warmup_epochs=inf``, ``model.gsu_threshold=-inf``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key {key}={value} must be a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            check_finite(v, key)


def build_config(task: str | None = None, model: str | None = None, preset: str | None = None,
                 flags: dict | None = None, sets: list[str] = ()) -> dict:
    """Resolve the layers into one validated config dict (see the module docstring)."""
    layers = [load_preset(preset)] if preset else []
    if task is not None:  # `--task ""` is an unknown task, not the default
        layers.append({"task": task})
    if model is not None:
        layers.append({"model": {"name": model}})
    layers.append(flags or {})
    layers += [parse_set(s) for s in sets]
    # The task and model names decide which keys exist, so find them first.
    task_name, model_name = DEFAULT_TASK, DEFAULT_MODEL
    for layer in layers:
        if "model" in layer and not isinstance(layer["model"], dict):
            raise UserError(f"config key model: expected a mapping of model options, got {layer['model']!r}")
        task_name = layer.get("task", task_name)
        model_name = layer.get("model", {}).get("name", model_name)
        for key, name in (("task", task_name), ("model.name", model_name)):
            if not isinstance(name, str) or not name:
                raise UserError(f"config key {key}: expected a name (see `spikessm {key.split('.')[0]}s`), "
                                f"got {name!r}")
    cfg = defaults(task_name, model_name)
    for layer in layers:
        cfg = merge(cfg, layer)
    check_finite(cfg)
    seed = cfg["seed"]
    if not 0 <= seed < SEED_LIMIT:
        raise UserError(f"config key seed={seed} must be in [0, 2**32)")
    checks = {**CHECKS, **{("data", key): POSITIVE for key in POSITIVE_DATA_OPTIONS if key in cfg["data"]}}
    for (section, key), check in checks.items():
        problem = check(cfg[section][key])
        if problem:
            raise UserError(f"config key {section}.{key}={cfg[section][key]!r} {problem}")
    check_model_options(cfg["model"])
    task = get_task(cfg["task"])
    for key, valid in task.choices.items():
        check_choice(f"data.{key}", cfg["data"][key], valid)
    kind = task.kind
    if cfg["model"]["adaptive_softmax_cutoffs"] and kind != "lm":
        raise UserError(f"model.adaptive_softmax_cutoffs is for language modelling; task {cfg['task']} is {kind}")
    return cfg
