"""Leaky integrate-and-fire (LIF) neuron: functional API and backend dispatch.

Input currents x of shape (..., L), time on the last axis. Per element, with u_{-1} = 0:

    v_t = tau · u_{t-1} + x_t                    membrane before the spike
    s_t = H(v_t - threshold)                     spike, 1 if v_t >= threshold
    u_t = v_t · (1 - s_t)          (hard reset)  membrane after the spike
    u_t = v_t - threshold · s_t    (soft reset)

Backward, H gets a surrogate derivative σ'(v_t - threshold) and s_t inside u_t is a constant (the
reset is detached, as in the SpikingSSMs reference BPTT neuron). Gradients reach x, tau and threshold.

Backends compute the same function:
    loop   plain autograd through `lif_step`, one step at a time: the reference.
    fused  numba time loop on CPU, same float operations in the same order: bit-identical spikes.
    scan   exact parallel algorithm in pure torch, any device (see scan.py).
    triton Triton kernels for CUDA tensors (the optional [gpu] extra), same operations as fused: bit-identical
           spikes; CPU tensors only under TRITON_INTERPRET=1 (Triton's interpreter, for tests).
    sdn    SpikingSSMs' surrogate dynamic network: a learned approximation (tau 0.125, hard reset only).
    auto   the fastest exact backend for x: fused for float32/float64 on CPU, triton on CUDA when Triton is
           installed, scan otherwise.
"""

import functools
import importlib.util

import torch

from spikessm.errors import UserError, check_choice
from spikessm.neurons import scan, sdn
from spikessm.neurons.step import RESETS, lif_step
from spikessm.neurons.surrogates import check_surrogate

LIF_BACKENDS = ("auto", "loop", "fused", "scan", "sdn", "triton")


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None  # without importing it (seconds)


def _auto_backend(x: torch.Tensor) -> str:
    """The fastest exact backend for x (backend="auto")."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return "fused"
    if x.device.type == "cuda" and _triton_installed():
        return "triton"
    return "scan"


def _lif_loop(x, tau, threshold, reset, surrogate):
    u = torch.zeros_like(x[..., 0])
    spikes = []
    for x_t in x.unbind(-1):
        s, u = lif_step(x_t, u, tau, threshold, reset, surrogate)
        spikes.append(s)
    return torch.stack(spikes, dim=-1)


def _as_parameter(name: str, value, x: torch.Tensor) -> torch.Tensor:
    """`value` as a tensor of x's dtype and device that broadcasts to x[..., 0] (autograd-connected)."""
    neurons = x.shape[:-1]
    if isinstance(value, torch.Tensor):
        try:
            fits = torch.broadcast_shapes(value.shape, neurons) == neurons
        except RuntimeError:
            fits = False
        if not fits:
            raise UserError(
                f"{name} of shape {tuple(value.shape)} does not broadcast to x[..., 0] of shape {tuple(neurons)}"
            )
        return value.to(dtype=x.dtype, device=x.device)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=x.dtype, device=x.device)
    raise UserError(f"{name} must be a float or a tensor; got {type(value).__name__}")


def _check_tau(tau) -> None:
    """tau in [0, 1]. A tensor is checked only on the CPU and outside autograd: on a GPU the check would
    wait for the device on every call, and a learnable tau is the owning module's to keep in range."""
    if isinstance(tau, torch.Tensor):
        if tau.device.type != "cpu" or tau.requires_grad or tau.numel() == 0:
            return
        low, high = tau.min().item(), tau.max().item()
    elif isinstance(tau, (int, float)) and not isinstance(tau, bool):
        low = high = tau
    else:
        return  # _as_parameter names the type
    if not 0 <= low <= high <= 1:  # also false for NaN
        raise UserError(f"tau must lie in [0, 1]; got values from {low:g} to {high:g}")


def lif(x, tau=0.125, threshold=1.0, reset="hard", surrogate="triangle", backend="auto"):
    """Spikes of LIF neurons driven by input currents x.

    x: float tensor (..., L), time on the last axis, L >= 1.
    tau: leak in [0, 1]; threshold: firing threshold. Each a float or a tensor broadcastable to
        x[..., 0] (one value per neuron or channel); either may require grad.
    reset: "hard" or "soft"; surrogate: one of SURROGATES; backend: one of LIF_BACKENDS.
    Returns spikes in {0, 1}, same shape and dtype as x.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserError(f"x must be a floating-point tensor; got {got}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise UserError(f"x must have a non-empty time axis (the last); got shape {tuple(x.shape)}")
    check_choice("reset", reset, RESETS)
    check_surrogate(surrogate)
    check_choice("backend", backend, LIF_BACKENDS)
    _check_tau(tau)
    tau_t = _as_parameter("tau", tau, x)
    threshold_t = _as_parameter("threshold", threshold, x)

    if backend == "auto":
        backend = _auto_backend(x)
    if backend == "loop":
        return _lif_loop(x, tau_t, threshold_t, reset, surrogate)
    # Optional heavy imports, on first use only: numba takes seconds to import, Triton is an optional extra.
    if backend == "fused":
        from spikessm.neurons.fused import lif_fused

        return lif_fused(x, tau_t, threshold_t, reset, surrogate)
    if backend == "scan":
        return scan.lif_scan(x, tau_t, threshold_t, reset, surrogate)
    if backend == "triton":
        from spikessm.neurons.triton_lif import lif_triton

        return lif_triton(x, tau_t, threshold_t, reset, surrogate)
    return sdn.sdn_lif(x, tau, threshold_t, reset, surrogate)
