"""AdamW with parameter groups from the S4-style ``param._optim`` hints, and a cosine schedule with
linear warmup."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float, hinted_lr: float | None = None) -> list[dict[str, Any]]:
    """Parameter groups for any torch optimiser, honouring ``param._optim`` hints as the S4 repository
    does (its ``setup_optimizer``): parameters without a hint train at ``lr`` with ``weight_decay``;
    those with one form a group per distinct hint, the hint's values replacing the defaults.

    ``hinted_lr`` (spikessm's ``train.ssm_lr``) replaces the hints' learning rate; either way a
    hinted parameter's lr is at most ``lr`` (S4D's SSM parameters: min(lr, 0.001), no weight decay).
    """
    plain, hinted = [], {}
    for p in model.parameters():
        hint = getattr(p, "_optim", None)
        if hint is None:
            plain.append(p)
        else:
            hinted.setdefault(tuple(sorted(hint.items())), []).append(p)
    groups = [{"params": plain, "lr": lr, "weight_decay": weight_decay}] if plain or not hinted else []
    for hint, params in hinted.items():
        options = {"lr": lr, "weight_decay": weight_decay, **dict(hint)}
        if hinted_lr is not None:
            options["lr"] = hinted_lr
        options["lr"] = min(lr, options["lr"])
        groups.append({"params": params, **options})
    return groups


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, ssm_lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`: for spikessm's models, everything at ``lr`` with
    ``weight_decay``, and the S4D parameters at min(lr, ssm_lr) without weight decay."""
    return torch.optim.AdamW(param_groups(model, lr, weight_decay, ssm_lr))


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LR factor rises linearly over ``warmup_steps``, then follows a half cosine to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
