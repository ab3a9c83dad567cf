"""Spike functions: a hard threshold forward, a smooth stand-in derivative backward.

Forward, `spike(z)` is the Heaviside step H(z) = 1 if z >= 0 else 0; its true derivative is zero almost
everywhere, so backward uses a *surrogate* derivative σ'(z) instead. The surrogates, at z = input:

    triangle          max(0, 1 - |z|)
    atan              (α/2) / (1 + (π α z / 2)²),   α = 2        (snntorch's `atan` default)
    fast_sigmoid      1 / (1 + k|z|)²,              k = 25       (snntorch's `fast_sigmoid` default)
    sigmoid           α σ(αz) (1 - σ(αz)),          α = 4
    straight_through  1

Each derivative below is written once, as torch code on a tensor z. The fused LIF backend compiles these
same functions with numba on floats (it supplies scalar versions of torch.relu, torch.exp and
torch.ones_like; builtin abs works on both), so keep them to that vocabulary.
"""

import math

import torch

from spikessm.errors import check_choice


def _triangle(z):
    return torch.relu(1 - abs(z))


def _atan(z, alpha=2.0):
    return (alpha / 2) / (1 + (math.pi * alpha * z / 2) ** 2)


def _fast_sigmoid(z, k=25.0):
    return 1 / (1 + k * abs(z)) ** 2


def _sigmoid(z, alpha=4.0):
    # α σ(αz)(1 - σ(αz)) = α e / (1 + e)² with e = exp(-|αz|): one exponential, no overflow and no
    # cancellation in 1 - σ.
    e = torch.exp(-abs(alpha * z))
    return alpha * e / (1 + e) ** 2


def _straight_through(z):
    return torch.ones_like(z)


SURROGATE_DERIVATIVES = {
    "triangle": _triangle,
    "atan": _atan,
    "fast_sigmoid": _fast_sigmoid,
    "sigmoid": _sigmoid,
    "straight_through": _straight_through,
}
SURROGATES = tuple(SURROGATE_DERIVATIVES)


def check_surrogate(surrogate: str) -> None:
    """Raise UserError unless `surrogate` names one of SURROGATES."""
    check_choice("surrogate", surrogate, SURROGATES)


def surrogate_grad(z: torch.Tensor, name: str) -> torch.Tensor:
    """σ'(z) of the named surrogate, elementwise; same shape and dtype as `z`."""
    check_surrogate(name)
    return SURROGATE_DERIVATIVES[name](z)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.surrogate), None


def spike(x: torch.Tensor, surrogate: str = "triangle") -> torch.Tensor:
    """Heaviside step with a surrogate derivative.

    x: float tensor, any shape. Returns a tensor of the same shape and dtype, 1.0 where x >= 0 and
    0.0 elsewhere; its gradient is `grad * σ'(x)` for the named surrogate (one of SURROGATES).
    """
    check_surrogate(surrogate)
    return _Spike.apply(x, surrogate)


class _BernoulliSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, generator):
        p = torch.sigmoid(x)
        ctx.save_for_backward(p)
        return torch.bernoulli(p, generator=generator)

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        # Stochastic straight-through: dL/dp := dL/ds · p, then the chain rule through σ gives p(1 - p).
        return grad * p * p * (1 - p), None


def bernoulli_spike(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic spike of Stan & Rhodes' arXiv-era code: s ~ Bernoulli(σ(x)).

    x: float tensor, any shape. Returns {0, 1} samples of the same shape and dtype (drawn from
    `generator`, or torch's global generator). Backward: grad · p · p(1 - p) with p = σ(x).
    """
    return _BernoulliSpike.apply(x, generator)


def ternary_spike(
    x: torch.Tensor, threshold: float | torch.Tensor = 0.5, surrogate: str = "atan"
) -> torch.Tensor:
    """Ternary activation Ter(x) = sign(x) · H(|x| - threshold), values in {-1, 0, 1}.

    x: float tensor, any shape; threshold: float or tensor broadcastable to x (it may require grad).
    Returns a tensor shaped like x (the broadcast shape) with x's dtype.

    Backward: the step is H(|x| - threshold) with the named surrogate, so dTer/dx = σ'(|x| - threshold)
    (sign(x) · sign(x) = 1 away from 0) and dTer/dthreshold = -sign(x) · σ'(|x| - threshold). The default
    surrogate is atan, the Sci Rep paper's main choice; pass "straight_through" for a plain identity
    gradient. At x = 0 exactly the gradient is 0 (torch's derivative of |x| there).
    """
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.to(x.dtype)
    return torch.sign(x) * spike(x.abs() - threshold, surrogate)
