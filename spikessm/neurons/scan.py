"""Exact parallel LIF in pure torch, for any device.

The reset makes LIF nonlinear: given the spikes the membrane is a linear recurrence, but the spikes
depend on the membrane. This backend cuts time into chunks of c steps and runs all chunks of all neurons
at once, each from a guessed starting membrane (its carry, first 0), with lif_step's own arithmetic. Then
each chunk takes the carry its predecessor ended with, and the chunks whose carry changed run again,
until no carry changes. After round r the first r chunks are exact, so this ends with the loop's exact
answer (bit-identical spikes) within L/c rounds; in practice 2 or 3, since a hard reset forgets the carry
at the chunk's first spike and the leak shrinks any carry error by tau^c over a chunk.

With the spikes known the backward pass is linear: g_t = ĝ_t σ'_t + a_t g_{t+1}, a_t = tau (1 - s_t) (hard)
or tau (soft), g_t = dL/dv_t. A chunked scan solves it: every chunk from a zero carry while recording
the product of a over the rest of the chunk, a pass across chunks for the true carries, one fix-up.
Products only ever multiply (underflow to 0 is the right limit); nothing divides by them.

c = ceil(sqrt(L)) balances the sequential steps within chunks against those across chunks.
Layout: (c, N·m) tensors, row j = step j of every chunk, column i·m + k = chunk k of neuron i (a plain
2-D transpose of the (N·m, c) view of x, which torch copies far faster than a 3-D permutation).
"""

import math

import torch
import torch.nn.functional as F

from spikessm.neurons.step import lif_step
from spikessm.neurons.surrogates import surrogate_grad


def _to_chunks(t: torch.Tensor, c: int) -> torch.Tensor:
    """(N, L) -> (c, N·m), zero-padded to m·c steps."""
    padding = -t.shape[1] % c
    if padding:
        t = F.pad(t, (0, padding))
    return t.reshape(-1, c).t().contiguous()


def _from_chunks(t: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """(c, N·m) -> (N, L), dropping the padding."""
    return t.t().reshape(n, -1)[:, :length]


def _per_column(p: torch.Tensor, neurons: torch.Size, columns: int) -> torch.Tensor:
    """A tau or threshold broadcastable to x[..., 0] as one value per column, (N·m,)."""
    n = neurons.numel()
    return p.detach().expand(neurons).reshape(n).repeat_interleave(columns // n)


def _run_chunks(x, tau, threshold, reset, carry):
    """lif_step over every column's chunk from its carry. x: (c, cols); tau, threshold, carry: (cols,).
    Returns spikes s and after-reset membranes u, each (c, cols)."""
    s, u = torch.empty_like(x), torch.empty_like(x)
    u_t = carry
    for j in range(x.shape[0]):
        s[j], u_t = lif_step(x[j], u_t, tau, threshold, reset)
        u[j] = u_t
    return s, u


def _rerun_chunks(x, tau, threshold, reset, s, u, columns, carry):
    """Re-run the chunks in `columns` (indices) from new carries, updating s and u in place. A chunk
    stops once its membrane equals the previous run's at the same step: from there on nothing changes.

    Which chunks still differ is looked up only at steps 1, 2, 4, 8, ...: each lookup (`nonzero`) waits
    for the device, and a chunk that already agrees but keeps running only rewrites the same values."""

    def pick(t):  # index_select, not t[columns]: advanced indexing measured ~1000x slower on CPU
        return t.index_select(0, columns)

    u_t = carry
    tau, threshold = pick(tau), pick(threshold)
    for j in range(x.shape[0]):
        s_j, u_t = lif_step(pick(x[j]), u_t, tau, threshold, reset)
        s[j].index_copy_(0, columns, s_j)
        if j & (j + 1):  # j + 1 is not a power of two: no lookup at this step
            u[j].index_copy_(0, columns, u_t)
            continue
        differs = (u_t != pick(u[j])).nonzero().squeeze(1)
        u[j].index_copy_(0, columns, u_t)
        if differs.numel() == 0:
            break
        columns, u_t = columns.index_select(0, differs), u_t.index_select(0, differs)
        tau, threshold = tau.index_select(0, differs), threshold.index_select(0, differs)


@torch.no_grad()
def _solve(x, tau, threshold, reset, n):
    """Fixed-point iteration on the chunk carries. x, tau, threshold per column as laid out above.
    Returns spikes s and after-reset membranes u (c, N·m) and each chunk's carry (N·m,)."""
    carry = x.new_zeros(x.shape[1])
    s, u = _run_chunks(x, tau, threshold, reset, carry)
    for _ in range(x.shape[1] // n - 1):  # chunk k is exact after round k + 1
        new_carry = F.pad(u[-1].view(n, -1)[:, :-1], (1, 0)).reshape(-1)  # chunk k starts where k - 1 ended
        columns = (new_carry != carry).nonzero().squeeze(1)
        if columns.numel() == 0:
            break
        carry = new_carry
        _rerun_chunks(x, tau, threshold, reset, s, u, columns, carry.index_select(0, columns))
    return s, u, carry


def _reverse_linear(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """g with g_t = b_t + a_t g_{t+1} along each neuron's whole sequence (0 after its end), chunk layout.
    Overwrites b."""
    p = torch.empty_like(b)  # product of a from step j to the end of its chunk
    h_next, p_next = torch.zeros_like(b[0]), torch.ones_like(b[0])
    for j in reversed(range(b.shape[0])):  # each chunk from a zero carry
        h_next = b[j].addcmul_(a[j], h_next)
        p[j] = p_next = a[j] * p_next
    h_first, p_first = b[0].view(n, -1), p[0].view(n, -1)
    carry = torch.zeros_like(h_first)  # carry[:, k] = g at the first step of chunk k + 1
    for k in reversed(range(h_first.shape[1] - 1)):
        carry[:, k] = h_first[:, k + 1] + p_first[:, k + 1] * carry[:, k + 1]
    return b.addcmul_(p, carry.view(-1))


class _ScanLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tau, threshold, reset, surrogate):
        neurons, length = x.shape[:-1], x.shape[-1]
        n = neurons.numel()
        xc = _to_chunks(x.detach().reshape(n, length), math.isqrt(length - 1) + 1)
        tau_c, threshold_c = (_per_column(p, neurons, xc.shape[1]) for p in (tau, threshold))
        s, u, carry = _solve(xc, tau_c, threshold_c, reset, n)
        ctx.save_for_backward(xc, u, carry, tau, threshold)
        ctx.reset, ctx.surrogate = reset, surrogate
        return _from_chunks(s, n, length).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        xc, u, carry, tau, threshold = ctx.saved_tensors
        neurons, length = grad.shape[:-1], grad.shape[-1]
        n = neurons.numel()
        tau_c, threshold_c = (_per_column(p, neurons, xc.shape[1]) for p in (tau, threshold))
        u_prev = torch.cat([carry[None], u[:-1]])  # u_{t-1}; a chunk's first step follows its carry
        z = torch.mul(tau_c, u_prev).add_(xc).sub_(threshold_c)  # v_t - threshold, as lif_step rounds it
        spiked = z >= 0
        direct = surrogate_grad(z, ctx.surrogate).mul_(_to_chunks(grad.reshape(n, length), xc.shape[0]))
        a = torch.where(spiked, 0.0, tau_c) if ctx.reset == "hard" else tau_c.expand_as(z)
        minus_direct = -direct if threshold.requires_grad else None  # the scan overwrites direct
        g = _reverse_linear(a, direct, n)

        def reduce(t, p):  # (c, N·m) summed over time, then over the neurons sharing one value of p
            return t.sum(0).view(n, -1).sum(1).view(neurons).sum_to_size(p.shape)

        grad_threshold = grad_tau = None
        if threshold.requires_grad:  # z = v - threshold gives -direct; a soft reset u_t = v_t - threshold s_t
            d_threshold = minus_direct  # adds -s_t dL/du_t, and dL/du_t = tau g_{t+1} = g_t - direct_t
            if ctx.reset == "soft":
                d_threshold -= torch.where(spiked, g + minus_direct, 0.0)
            grad_threshold = reduce(d_threshold, threshold)
        if tau.requires_grad:
            grad_tau = reduce(g * u_prev, tau)
        return _from_chunks(g, n, length).reshape(grad.shape), grad_tau, grad_threshold, None, None


def lif_scan(x, tau, threshold, reset, surrogate):
    """LIF spikes by the chunked fixed-point scan, for arguments as `lif` validates them: x (..., L) float;
    tau, threshold tensors of x's dtype and device broadcastable to x[..., 0]. Returns spikes like x."""
    return _ScanLIF.apply(x, tau, threshold, reset, surrogate)
