"""Triton LIF backend: the exact time loop as GPU kernels, one program per block of neurons.

x (..., L) is viewed as (n, L) rows, one row per neuron. A program owns BLOCK neurons (one thread each)
and walks time inside; neurons run in parallel across programs. Forward performs `lif_step`'s float
operations in the same order and precision, so spikes are bit-identical to the loop backend (float32 and
float64; bfloat16/float16 inputs are computed in float32 and the spikes returned in the input dtype). It
saves the pre-reset membrane v (compute dtype): from v the backward recomputes s_t = H(v_t - threshold)
and u_t exactly, then runs the reverse-mode recurrence of the loop's graph (derivation in fused.py):

    hard: g_t = ĝ_t σ'_t + (tau g_{t+1}) (1 - s_t)        soft: g_t = ĝ_t σ'_t + tau g_{t+1}
    dL/dx_t = g_t        dL/dtau = Σ_t g_{t+1} u_t
    dL/dthreshold = -Σ_t ĝ_t σ'_t, and for soft reset also -Σ_t (tau g_{t+1}) s_t

written in the order autograd evaluates the loop's graph, so in float32 dL/dx matches the loop to the
last bit wherever the surrogate does (sigmoid's exp may differ by an ulp). tau and threshold gradients
are summed per neuron over time in float64 (float32 sums over long L drift from any other summation
order, including the loop's), then over the neurons that share a value.

Why chunks of time: the loop over time is unrolled CHUNK steps at a time, and each chunk's outputs are
gathered into (BLOCK, CHUNK) tiles (a select per step) and stored once at its end. So within a chunk
every load comes before every store, and the compiler may issue the chunk's loads together (it cannot
move a load above a store that might alias it): the memory latency is paid about once per chunk, not once
per step, and the tile stores write whole sectors of CHUNK consecutive steps. Shorter sequences take the
next power of two above L as their chunk, so that L = 1 (streaming) does not run 31 masked steps. The loads themselves read
one step of BLOCK neurons L elements apart; consecutive steps reuse the same sectors from cache. Edges
are masked: the last chunk may run past L (masked steps load zeros, which leave every sum unchanged and
are never stored), the last block past n.

Bit-exactness on GPUs needs three things Triton would otherwise change: no fused multiply-add
(`enable_fp_fusion=False`: lif_step rounds tau·u before adding x), float32 division rounded to nearest
(`div_rn`; Triton's `/` is approximate in float32), and constants rounded the way torch rounds a Python
float against a float32 tensor (2π becomes float32 first).

Under TRITON_INTERPRET=1 the same kernels run on CPU tensors in Triton's interpreter (numpy), which is
how machines without a GPU test them. Triton reads that variable when a kernel is decorated, so the
kernels are built on first use, once per mode (`_kernels`), not at import: whichever order tests import
modules and set the variable in, a call runs in the mode the environment says at the time of the call.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch
from torch.autograd.function import once_differentiable

from spikessm.errors import UserError

try:
    import triton
    import triton.language as tl
except ImportError:  # the [gpu] extra is not installed: lif_triton says how to install it
    triton = tl = None

BLOCK = 32  # neurons per program: one warp, one neuron per thread
CHUNK = 32  # time steps per tile at most: 128 bytes (a cache line) of float32 per neuron row
_ORDER = ("triangle", "atan", "fast_sigmoid", "sigmoid", "straight_through")  # kernels' SURROGATE index
_INSTALL = 'backend \'triton\' needs Triton, which is not installed: pip install -e ".[gpu]"'


def interpreting() -> bool:
    """Whether Triton would build kernels for its CPU interpreter now (TRITON_INTERPRET set)."""
    knobs = getattr(triton, "knobs", None)  # Triton >= 3.4; older versions read the variable directly
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


# --- kernels (undecorated: `_kernels` applies triton.jit on first use) ----------------------------------
# Compile-time arguments are annotated tl.constexpr; `from __future__ import annotations` keeps that as
# text, which is what Triton reads, so this module imports without Triton.
# Only Triton builtins are called: tl.sum, tl.zeros, tl.cdiv and the like are jit functions themselves,
# decorated when Triton was imported, in whatever mode was set then; the interpreter cannot run compiled
# ones, nor the compiler interpreted ones.
# Per-neuron values are (BLOCK, 1) columns, not (BLOCK,) vectors: a column has the tiles' layout, so
# putting a step into a tile is a select within a thread; a vector took a round trip through shared
# memory at every step (seen in the PTX for sm_90).


def _forward_kernel(
    x_ptr, tau_ptr, threshold_ptr, s_ptr, v_ptr, n, length,
    HARD: tl.constexpr, SAVE_V: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
):
    """x, s: (n, L) in x's dtype; v: (n, L) and tau, threshold: (n,) in the compute dtype."""
    rows = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK))[:, None]
    row_ok = rows < n
    tau = tl.load(tau_ptr + rows, mask=row_ok, other=0)
    threshold = tl.load(threshold_ptr + rows, mask=row_ok, other=0)
    compute = tau_ptr.dtype.element_ty
    cols = tl.arange(0, CHUNK)[None, :]
    base = rows.to(tl.int64) * length
    u = tl.full([BLOCK, 1], 0, compute)  # membrane after the previous step's reset
    for t0 in range(0, length, CHUNK):
        s_tile = tl.full([BLOCK, CHUNK], 0, compute)
        v_tile = tl.full([BLOCK, CHUNK], 0, compute)
        for k in tl.static_range(CHUNK):
            # rows < (n while t0 + k < L, else 0): a block comparison, where `row_ok & (t0 + k < L)` would
            # combine a block with a scalar, which Triton 3.9's interpreter turns into an int32 mask.
            ok = rows < tl.where(t0 + k < length, n, 0)
            x_t = tl.load(x_ptr + base + (t0 + k), mask=ok, other=0).to(compute)
            # lif_step, operation by operation. The reset is a select between lif_step's two possible
            # results, each computed as lif_step computes it (v·(1 - 1) = v·0, v·(1 - 0) = v·1 = v; v - θ·1,
            # v - θ·0), so the bits are the same; the comparison and the reset then overlap, which takes
            # two dependent operations off the time step's critical chain.
            v = tau * u + x_t
            fire = v - threshold >= 0
            s = fire.to(compute)
            if HARD:
                u = tl.where(fire, v * 0, v)
            else:
                u = tl.where(fire, v - threshold, v - threshold * 0)
            s_tile = tl.where(cols == k, s, s_tile)
            if SAVE_V:
                v_tile = tl.where(cols == k, v, v_tile)
        ok = row_ok & (t0 + cols < length)
        tl.store(s_ptr + base + t0 + cols, s_tile.to(s_ptr.dtype.element_ty), mask=ok)
        if SAVE_V:
            tl.store(v_ptr + base + t0 + cols, v_tile, mask=ok)


def _backward_kernel(
    grad_ptr, v_ptr, tau_ptr, threshold_ptr, grad_x_ptr, grad_tau_ptr, grad_threshold_ptr,
    n, length, HARD: tl.constexpr, SURROGATE: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
):
    """grad = dL/ds, grad_x: (n, L) in x's dtype; v: (n, L) and tau, threshold: (n,) in the compute dtype;
    grad_tau, grad_threshold: (n,) float64, per-neuron sums."""
    rows = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK))[:, None]
    row_ok = rows < n
    tau = tl.load(tau_ptr + rows, mask=row_ok, other=0)
    threshold = tl.load(threshold_ptr + rows, mask=row_ok, other=0)
    compute = tau_ptr.dtype.element_ty
    cols = tl.arange(0, CHUNK)[None, :]
    base = rows.to(tl.int64) * length
    g = tl.full([BLOCK, 1], 0, compute)  # dL/dv_{t+1} on entry to step t
    d_tau = tl.full([BLOCK, 1], 0, tl.float64)
    d_threshold = tl.full([BLOCK, 1], 0, tl.float64)
    chunks = (length + CHUNK - 1) // CHUNK
    for i in range(0, chunks):
        t0 = (chunks - 1 - i) * CHUNK
        gx_tile = tl.full([BLOCK, CHUNK], 0, compute)
        for j in tl.static_range(CHUNK):
            k = CHUNK - 1 - j
            ok = rows < tl.where(t0 + k < length, n, 0)  # past L: v = 0 and ĝ = 0, so g stays 0
            v = tl.load(v_ptr + base + (t0 + k), mask=ok, other=0)
            grad_s = tl.load(grad_ptr + base + (t0 + k), mask=ok, other=0).to(compute)
            z = v - threshold
            s = (z >= 0).to(compute)
            # σ'(z), each formula in the operation order of surrogates.py as torch evaluates it
            if SURROGATE == 0:  # triangle: relu(1 - |z|)
                d_spike = tl.maximum(1 - tl.abs(z), 0, propagate_nan=tl.PropagateNan.ALL)
            elif SURROGATE == 1:  # atan, α = 2: 1 / (1 + (2π z / 2)²), 2π rounded to z's dtype first
                two_pi = tl.full([], 6.283185307179586, tl.float64).to(compute)
                w = two_pi * z * 0.5  # = torch's `/ 2` exactly; Triton's float32 `/` is approximate
                if compute == tl.float64:
                    d_spike = 1 / (1 + w * w)
                else:
                    d_spike = tl.math.div_rn(tl.full([], 1, compute), 1 + w * w)
            elif SURROGATE == 2:  # fast_sigmoid, k = 25: 1 / (1 + 25|z|)²
                w = 1 + 25 * tl.abs(z)
                if compute == tl.float64:
                    d_spike = 1 / (w * w)
                else:
                    d_spike = tl.math.div_rn(tl.full([], 1, compute), w * w)
            elif SURROGATE == 3:  # sigmoid, α = 4: α e / (1 + e)², e = exp(-|αz|)
                e = tl.exp(-tl.abs(4 * z))
                if compute == tl.float64:
                    d_spike = (4 * e) / ((1 + e) * (1 + e))
                else:
                    d_spike = tl.math.div_rn(4 * e, (1 + e) * (1 + e))
            else:  # straight_through
                d_spike = tl.full([BLOCK, 1], 1, compute)
            direct = grad_s * d_spike  # via s_t = H(v_t - threshold)
            via_u = tau * g  # u_t feeds v_{t+1} = tau u_t + x_{t+1}
            if HARD:  # u_t = v_t (1 - s_t), s_t detached
                u = v * (1 - s)
                g_next = g
                g = direct + via_u * (1 - s)
            else:  # u_t = v_t - threshold s_t
                u = v - threshold * s
                g_next = g
                g = direct + via_u
                d_threshold -= (via_u * s).to(tl.float64)
            d_threshold -= direct.to(tl.float64)
            d_tau += g_next.to(tl.float64) * u.to(tl.float64)
            gx_tile = tl.where(cols == k, g, gx_tile)
        gx_out = gx_tile.to(grad_x_ptr.dtype.element_ty)
        if grad_x_ptr.dtype.element_ty == tl.bfloat16:
            # Round to nearest even by hand, as torch and the GPU do: the interpreter truncates here.
            bits = gx_tile.to(tl.uint32, bitcast=True)
            half_ulp = tl.full([], 0x7FFF, tl.uint32) + ((bits >> 16) & 1)
            rounded = ((bits + half_ulp) >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
            gx_out = tl.where(gx_tile == gx_tile, rounded, gx_out)  # NaN stays NaN
        ok = row_ok & (t0 + cols < length)
        tl.store(grad_x_ptr + base + t0 + cols, gx_out, mask=ok)
    tl.store(grad_tau_ptr + rows, d_tau, mask=row_ok)
    tl.store(grad_threshold_ptr + rows, d_threshold, mask=row_ok)


@functools.cache
def _kernels(interpret: bool):
    """(forward, backward) kernels for one mode. triton.jit reads TRITON_INTERPRET as it decorates, and
    `interpret` is what it reads now; the cache keeps one pair per mode."""
    # Triton compiles a variant per integer argument that is 1 or a multiple of 16; for the length that
    # buys aligned tile stores, for the neuron count nothing but compile time.
    return (
        triton.jit(_forward_kernel, do_not_specialize=["n"]),
        triton.jit(_backward_kernel, do_not_specialize=["n"]),
    )


def _launch_options(interpret: bool) -> dict:
    # enable_fp_fusion=False: no fused multiply-add, lif_step rounds tau·u before adding x. One warp per
    # BLOCK of 32 neurons. The interpreter computes in numpy, one operation at a time, and takes neither.
    return {} if interpret else {"num_warps": max(1, BLOCK // 32), "enable_fp_fusion": False}


def _chunk(length: int) -> int:
    return min(CHUNK, triton.next_power_of_2(length))


def _on(device: torch.device):
    # Triton launches on the current CUDA device, which need not be x's.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _per_neuron(p: torch.Tensor, neurons: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """tau or threshold (broadcastable to neurons) as one contiguous value per neuron, (n,)."""
    return p.detach().to(dtype).expand(neurons).contiguous().view(-1)


class _TritonLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tau, threshold, hard, which):
        neurons, length = x.shape[:-1], x.shape[-1]
        n = neurons.numel()
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        interpret = interpreting()
        forward_kernel, _ = _kernels(interpret)
        rows = x.detach().contiguous().view(n, length)
        spikes = torch.empty((n, length), dtype=x.dtype, device=x.device)
        save_v = any(ctx.needs_input_grad[:3])
        v = torch.empty((n, length), dtype=compute, device=x.device) if save_v else spikes  # unused if not
        tau_n, threshold_n = (_per_neuron(p, neurons, compute) for p in (tau, threshold))
        if n:
            with _on(x.device):
                forward_kernel[(triton.cdiv(n, BLOCK),)](
                    rows, tau_n, threshold_n, spikes, v, n, length,
                    HARD=hard, SAVE_V=save_v, BLOCK=BLOCK, CHUNK=_chunk(length), **_launch_options(interpret),
                )
        if save_v:
            ctx.save_for_backward(v, tau, threshold)
        ctx.hard, ctx.which, ctx.shape, ctx.x_dtype = hard, which, x.shape, x.dtype
        return spikes.view(x.shape)

    @staticmethod
    @once_differentiable  # the backward is a kernel, not a graph: no second derivatives
    def backward(ctx, grad):
        v, tau, threshold = ctx.saved_tensors
        neurons = ctx.shape[:-1]
        n, length = v.shape
        interpret = interpreting()
        _, backward_kernel = _kernels(interpret)
        grad_x = torch.empty((n, length), dtype=ctx.x_dtype, device=v.device)
        grad_tau = torch.empty(n, dtype=torch.float64, device=v.device)  # per neuron, all written
        grad_threshold = torch.empty(n, dtype=torch.float64, device=v.device)
        if n:
            with _on(v.device):
                backward_kernel[(triton.cdiv(n, BLOCK),)](
                    grad.contiguous().view(n, length), v, _per_neuron(tau, neurons, v.dtype),
                    _per_neuron(threshold, neurons, v.dtype), grad_x, grad_tau, grad_threshold, n, length,
                    HARD=ctx.hard, SURROGATE=ctx.which, BLOCK=BLOCK, CHUNK=_chunk(length),
                    **_launch_options(interpret),
                )

        def reduce(per_neuron, p, needed):  # sum over the neurons that share one value of p
            return per_neuron.view(neurons).sum_to_size(p.shape).to(p.dtype) if needed else None

        need = ctx.needs_input_grad
        return (
            grad_x.view(ctx.shape) if need[0] else None,
            reduce(grad_tau, tau, need[1]),
            reduce(grad_threshold, threshold, need[2]),
            None,
            None,
        )


def lif_triton(x, tau, threshold, reset, surrogate):
    """LIF spikes from the Triton kernels, for arguments as `lif` validates them.

    x: (..., L) float tensor on a CUDA device (or on CPU under TRITON_INTERPRET=1), any float dtype;
    bfloat16 and float16 are computed in float32. tau, threshold: tensors of x's dtype broadcastable to
    x[..., 0], which may require grad. Returns spikes shaped like x, in x's dtype. Asynchronous: nothing
    waits for the device.
    """
    if triton is None:
        raise UserError(_INSTALL)
    if x.device.type != "cuda" and not (x.device.type == "cpu" and interpreting()):
        raise UserError(
            f"backend 'triton' runs on CUDA tensors; x is on {x.device} (on CPU use 'fused' or 'scan', or "
            "set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter)"
        )
    return _TritonLIF.apply(x, tau, threshold, reset == "hard", _ORDER.index(surrogate))
