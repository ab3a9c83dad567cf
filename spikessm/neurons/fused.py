"""Fused LIF backend for CPU: the time loop compiled with numba, neurons in parallel.

Forward runs `lif_step`'s float operations in the same order and dtype, so spikes are bit-identical to
the loop backend. It saves only its inputs: backward recomputes the membrane of a few neurons at a time
into a cache-resident scratch buffer, then runs the reverse-mode recurrence of the loop's graph by hand.
With g_t = dL/dv_t, ĝ_t = dL/ds_t, σ'_t = σ'(v_t - threshold) and the reset detached:

    hard: g_t = ĝ_t σ'_t + tau (1 - s_t) g_{t+1}        soft: g_t = ĝ_t σ'_t + tau g_{t+1}
    dL/dx_t = g_t        dL/dtau = Σ_t g_{t+1} u_t
    dL/dthreshold = -Σ_t ĝ_t σ'_t, and for soft reset also -Σ_t tau g_{t+1} s_t

Speed notes (measured; they shape the code). One neuron's step is a chain of dependent float operations,
so a thread advances a block of neurons in lockstep and the CPU overlaps their chains. Rows a power-of-two
length apart share cache sets: the forward, streaming both x and spike rows, takes 4 neurons (8 rows fit an
8-way L1 set); the backward's recompute streams only x and takes 8. The spike is a select between two
values of the input dtype, which compiles branch-free; spikes are unpredictable and a branch on them
costs more than the rest of the step.
"""

import math

import numba
import numpy as np
import torch
from numba.extending import overload

from spikessm.errors import UserError
from spikessm.neurons.surrogates import SURROGATE_DERIVATIVES

# numba's OpenMP threading layer leaves its workers spinning after a kernel: torch operations that followed
# ran several times slower (measured). The workqueue layer's workers sleep. Only if the user chose none.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

# Neurons per thread in lockstep (see above); compile-time constants, so the lane loops unroll.
FORWARD_BLOCK = 4
BACKWARD_BLOCK = 8


# The surrogate derivatives in surrogates.py are torch code; scalar versions of the torch functions they
# call let numba compile the very same functions, so each formula exists once.
@overload(torch.relu)
def _relu(y):
    return lambda y: max(y, 0.0)


@overload(torch.exp)
def _exp(y):
    return lambda y: math.exp(y)


@overload(torch.ones_like)
def _ones_like(y):
    return lambda y: 1.0


# numba cannot pick a function out of a tuple at run time: kernels take the surrogate's index in _ORDER
# and branch on it (loop-invariant, so perfectly predicted). numba's cache keys on this file only: after
# editing a formula in surrogates.py delete __pycache__ (the fused-vs-loop gradient tests would notice).
_ORDER = ("triangle", "atan", "fast_sigmoid", "sigmoid", "straight_through")
_triangle, _atan, _fast_sigmoid, _sigmoid, _straight_through = (
    numba.njit(SURROGATE_DERIVATIVES[name], inline="always") for name in _ORDER
)


@numba.njit(cache=True, inline="always")
def _surrogate_grad(z, which):
    if which == 0:
        return _triangle(z)
    if which == 1:
        return _atan(z)
    if which == 2:
        return _fast_sigmoid(z)
    if which == 3:
        return _sigmoid(z)
    return _straight_through(z)


@numba.njit(cache=True, inline="always")
def _heaviside(z, one):
    """1 if z >= 0 else 0, as `one`'s dtype (1 in the input dtype; a literal would mean float64)."""
    return one if z >= 0 else one - one


@numba.njit(cache=True, inline="always")
def _step(x_t, u, tau, threshold, hard, one):
    """lif_step's arithmetic, in the input dtype: returns (v_t, s_t, u_t)."""
    v = tau * u + x_t
    s = _heaviside(v - threshold, one)
    u = v * (one - s) if hard else v - threshold * s
    return v, s, u


@numba.njit(cache=True, inline="always")
def _row(block, size, lane, n):
    # The last block repeats row n - 1 in its spare lanes: the same values, written by the same thread.
    return min(block * size + lane, n - 1)


@numba.njit(parallel=True, cache=True)
def _forward(x, tau, threshold, hard, spikes):
    """x, spikes: (n, L); tau, threshold: (n,); one dtype throughout. Writes the spikes."""
    n, length = x.shape
    one = x.dtype.type(1)
    for block in numba.prange((n + FORWARD_BLOCK - 1) // FORWARD_BLOCK):
        u = np.zeros(FORWARD_BLOCK, x.dtype)
        for t in range(length):
            for k in range(FORWARD_BLOCK):
                i = _row(block, FORWARD_BLOCK, k, n)
                _, spikes[i, t], u[k] = _step(x[i, t], u[k], tau[i], threshold[i], hard, one)


@numba.njit(parallel=True, cache=True)
def _backward(grad, x, tau, threshold, hard, which, grad_x, grad_tau, grad_threshold):
    """grad = dL/ds, x, grad_x: (n, L); tau, threshold: (n,) of x's dtype; grad_tau, grad_threshold: (n,)
    float64. Writes dL/dx and the per-neuron dL/dtau, dL/dthreshold; gradient arithmetic is float64."""
    n, length = x.shape
    one = x.dtype.type(1)
    for block in numba.prange((n + BACKWARD_BLOCK - 1) // BACKWARD_BLOCK):
        v = np.empty((length, BACKWARD_BLOCK), x.dtype)
        u = np.zeros(BACKWARD_BLOCK, x.dtype)
        for t in range(length):
            for k in range(BACKWARD_BLOCK):
                i = _row(block, BACKWARD_BLOCK, k, n)
                v[t, k], _, u[k] = _step(x[i, t], u[k], tau[i], threshold[i], hard, one)

        for k in range(BACKWARD_BLOCK):  # one neuron at a time: the reverse loop is throughput-bound
            i = _row(block, BACKWARD_BLOCK, k, n)
            a, th = np.float64(tau[i]), np.float64(threshold[i])
            g = d_tau = d_threshold = 0.0  # g is dL/dv_{t+1} on entry to step t
            for t in range(length - 1, -1, -1):
                z = v[t, k] - threshold[i]
                s = np.float64(_heaviside(z, one))
                direct = grad[i, t] * _surrogate_grad(np.float64(z), which)  # via s_t = H(v_t - threshold)
                if hard:  # u_t = v_t (1 - s_t) feeds v_{t+1} = tau u_t + x_{t+1}
                    u_t = v[t, k] * (1 - s)
                    g_next, g = g, direct + a * (1 - s) * g
                else:  # u_t = v_t - threshold s_t
                    u_t = v[t, k] - th * s
                    d_threshold -= a * g * s
                    g_next, g = g, direct + a * g
                d_threshold -= direct
                d_tau += g_next * u_t
                grad_x[i, t] = g
            grad_tau[i] = d_tau
            grad_threshold[i] = d_threshold


def _per_neuron(p: torch.Tensor, neurons: torch.Size) -> np.ndarray:
    return p.detach().expand(neurons).reshape(-1).contiguous().numpy()


def _rows(t: torch.Tensor) -> np.ndarray:
    """(..., L) tensor as an (n, L) C-contiguous numpy view (a copy only if t is not contiguous)."""
    return t.detach().contiguous().view(-1, t.shape[-1]).numpy()


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tau, threshold, hard, which):
        neurons = x.shape[:-1]
        spikes = torch.empty_like(x, memory_format=torch.contiguous_format)
        _forward(_rows(x), _per_neuron(tau, neurons), _per_neuron(threshold, neurons), hard, _rows(spikes))
        ctx.save_for_backward(x, tau, threshold)
        ctx.hard, ctx.which = hard, which
        return spikes

    @staticmethod
    def backward(ctx, grad):
        x, tau, threshold = ctx.saved_tensors
        neurons = x.shape[:-1]
        grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
        grad_tau = torch.empty(neurons, dtype=torch.float64)
        grad_threshold = torch.empty(neurons, dtype=torch.float64)
        _backward(
            _rows(grad),
            _rows(x),
            _per_neuron(tau, neurons),
            _per_neuron(threshold, neurons),
            ctx.hard,
            ctx.which,
            _rows(grad_x),
            grad_tau.view(-1).numpy(),
            grad_threshold.view(-1).numpy(),
        )

        def reduce(per_neuron, p):  # sum over the neurons that share one value of p
            return per_neuron.to(x.dtype).sum_to_size(p.shape) if p.requires_grad else None

        return grad_x, reduce(grad_tau, tau), reduce(grad_threshold, threshold), None, None


def lif_fused(x, tau, threshold, reset, surrogate):
    """LIF spikes from the numba kernels, for arguments as `lif` validates them: x (..., L) float32 or
    float64 on CPU; tau, threshold tensors of x's dtype broadcastable to x[..., 0]. Returns spikes like x."""
    if x.device.type != "cpu":
        raise UserError(f"backend 'fused' runs on CPU tensors only; x is on {x.device} (use 'scan' or 'auto')")
    if x.dtype not in (torch.float32, torch.float64):
        raise UserError(f"backend 'fused' takes float32 or float64; x is {x.dtype} (use 'scan' or 'loop')")
    # numba keeps its own thread pool: size it from torch's setting, so one knob governs both.
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    return _FusedLIF.apply(x, tau, threshold, reset == "hard", _ORDER.index(surrogate))
