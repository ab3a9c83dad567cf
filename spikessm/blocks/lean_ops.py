"""Two operations of the blocks' hot path that keep less for the backward pass than autograd would.

At paper lengths (L = 16K, batch 8, 128 channels: 67 MB per (B, H, L) float32 tensor and layer) what
the backward pass keeps is most of a training step's memory. Plain autograd keeps, per layer:

- for ``GLU(Conv1x1(a))``: the convolution's input a *and* its (B, 2H, L) output, three tensors' worth;
  :func:`glu_conv` keeps only a, as int8 when a holds spikes (a quarter of float32), and recomputes the
  (B, 2H, L) pre-activation in the backward pass (one 1x1 convolution more, a small cost beside the rest);
- for ``y / v_th`` before the LIF neuron: y, although the neuron keeps y / v_th anyway;
  :func:`divide_by_threshold` keeps its output instead, the same tensor the neuron keeps;
- for dropout, torch's CPU kernel keeps its mask as floats; :class:`Dropout` keeps it as booleans.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _GLUConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, spikes):
        ctx.dtype, ctx.spikes = x.dtype, spikes
        ctx.save_for_backward(x.to(torch.int8) if spikes else x, weight, bias)
        return F.glu(F.conv1d(x, weight, bias), dim=-2)

    @staticmethod
    def backward(ctx, grad):
        saved, weight, bias = ctx.saved_tensors
        # In the dtype the forward computed in (bfloat16 under autocast, else the input's).
        dtype = grad.dtype
        x, w = saved.to(dtype), weight.to(dtype)
        z = F.conv1d(x, w, bias.to(dtype))  # (B, 2H, L), recomputed
        a, c = z.chunk(2, dim=-2)
        # out = a sigmoid(c):  d/da = sigmoid(c),  d/dc = a sigmoid(c) (1 - sigmoid(c)); written into z,
        # which then holds dL/dz, so that no second (B, 2H, L) tensor is ever allocated.
        sig = torch.sigmoid(c)
        grad_a = grad * sig
        c.copy_(a).mul_(grad_a).mul_(sig.neg_().add_(1))
        a.copy_(grad_a)
        del sig, grad_a
        grad_x = F.conv1d(z, w.transpose(0, 1)).to(ctx.dtype) if ctx.needs_input_grad[0] else None
        grad_w = torch.matmul(z, x.transpose(-1, -2)).sum(0).unsqueeze(-1).to(weight.dtype)  # (2H, H, 1)
        return grad_x, grad_w, z.sum((0, 2)).to(bias.dtype), None


def glu_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, spikes: bool = False) -> torch.Tensor:
    """``F.glu(F.conv1d(x, weight, bias), dim=-2)``: x ``(B, H, L)``, weight ``(2H, H, 1)``, bias ``(2H,)``
    -> ``(B, H, L)``, keeping only x for the backward pass. ``spikes=True`` promises that x holds
    integers in [-128, 127] (spikes {0, 1} or ternary {-1, 0, 1}): it is then kept as int8."""
    return _GLUConv.apply(x, weight, bias, spikes)


class _DivideByThreshold(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, ln_vth):
        vth = torch.exp(ln_vth)
        x = y / vth
        ctx.save_for_backward(x, vth)
        ctx.shape = ln_vth.shape
        return x

    @staticmethod
    def backward(ctx, grad):
        x, vth = ctx.saved_tensors
        # x = y / e^l:  dx/dy = 1 / e^l,  dx/dl = -x
        grad_y = grad / vth if ctx.needs_input_grad[0] else None
        grad_ln_vth = (-(grad * x)).sum_to_size(ctx.shape) if ctx.needs_input_grad[1] else None
        return grad_y, grad_ln_vth


def divide_by_threshold(y: torch.Tensor, ln_vth: torch.Tensor) -> torch.Tensor:
    """``y / exp(ln_vth)`` (same rounding), keeping the quotient rather than y for the backward pass.
    ln_vth broadcasts to y, e.g. ``(H, 1)`` against ``(B, H, L)``."""
    return _DivideByThreshold.apply(y, ln_vth)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        keep = torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(1 - p)
        ctx.save_for_backward(keep)
        ctx.scale = 1 / (1 - p)
        return x * keep * ctx.scale

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None


class Dropout(nn.Dropout):
    """``nn.Dropout`` (zero each element with probability p in training, scale the rest by 1 / (1 - p))
    that keeps its mask as booleans for the backward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return torch.zeros_like(x)
        return _Dropout.apply(x, self.p)
