"""AdamW with the S4D parameter group, and a cosine schedule with linear warmup."""
from __future__ import annotations

import math

import torch
from torch import nn


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, ssm_lr: float) -> torch.optim.AdamW:
    """Two groups: the S4D parameters (tagged ``_ssm``) at lr = min(lr, ssm_lr) without weight
    decay, as S4 and S4D train them; everything else at ``lr`` with ``weight_decay``."""
    ssm = [p for p in model.parameters() if getattr(p, "_ssm", False)]
    rest = [p for p in model.parameters() if not getattr(p, "_ssm", False)]
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay}]
    if ssm:
        groups.append({"params": ssm, "lr": min(lr, ssm_lr), "weight_decay": 0.0})
    return torch.optim.AdamW(groups)


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int):
    """LR factor rises linearly over ``warmup_steps``, then follows a half cosine to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
