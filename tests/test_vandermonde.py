"""The memory-lean S4D kernel and FFT convolution against the formulas they replace.

References kept here: the materialised Vandermonde product exp(dtA l) over all (N/2, L), and autograd
through irfft(rfft(u) * rfft(k)).
"""
import math

import pytest
import torch

from spikessm.ssm import S4D, S4DKernel, bidirectional_kernel, fft_conv
from spikessm.ssm.kernel import vandermonde
from spikessm.ssm.kernel import vandermonde_materialised as materialised


def reference_fft_conv(u, k):
    n = 2 * u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :u.shape[-1]]


def random_kernel(init, channels, dtype, seed=0, H=8, N=16):
    torch.manual_seed(seed)
    k = S4DKernel(H, N, init=init, channels=channels)
    with torch.no_grad():  # beyond the initialisation, so every parameter matters
        for p in k.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return k.to(dtype)


def relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("L", [1, 2, 7, 33, 1000])
def test_values_and_gradients_equal_the_materialised_formula_in_float64(init, channels, L):
    k = random_kernel(init, channels, torch.float64)
    weights = torch.randn(channels, 8, L, dtype=torch.float64)
    results = []
    for formula in (vandermonde, materialised):
        k.zero_grad()
        K = formula(*k.discrete(), L)
        (K * weights).sum().backward()
        results.append((K.detach(), [p.grad.clone() for p in k.parameters()]))
    (K_new, g_new), (K_old, g_old) = results
    assert K_new.shape == (channels, 8, L)
    assert relative(K_new, K_old) <= 1e-12
    for a, b in zip(g_new, g_old):
        assert relative(a, b) <= 1e-12


@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("L", [7, 1000, 4096])
def test_float32_is_as_exact_as_the_materialised_formula(init, L):
    """In float32 both formulas round differently; measured against a float64 evaluation of the same
    float32 parameters, the new one must be as close as the old one (both about 1e-6 of the kernel's
    size: the old formula's own rounding, not a loss of accuracy)."""
    k = random_kernel(init, 2, torch.float32, H=32, N=64)
    dtA, C = k.discrete()
    truth = materialised(dtA.detach().to(torch.complex128), C.detach().to(torch.complex128), L)
    new, old = vandermonde(dtA, C, L).double(), materialised(dtA, C, L).double()
    assert relative(new, truth) <= max(1.2 * relative(old, truth), 1e-6)
    assert relative(new, truth) <= 3e-6


def test_autograd_keeps_no_table_of_all_powers():
    """Every tensor saved for the backward pass is O(N sqrt L) per channel, never (N/2, L)."""
    H, N, L = 4, 64, 4096
    k = S4DKernel(H, N, channels=2)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        K = k(L)
    K.sum().backward()
    assert shapes  # the hook saw the graph
    budget = 2 * H * N * 2 * (math.isqrt(L) + 1)  # channels x H x N x (ceil(L/b) + b)
    largest = max(math.prod(s) for s in shapes)
    assert largest <= budget, f"a saved tensor of shape {max(shapes, key=math.prod)} exceeds O(H N sqrt L)"
    assert largest < H * N // 2 * L


def test_kernel_under_autocast_is_float32():
    k = S4DKernel(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        K = k(100)
    assert K.dtype == torch.float32
    torch.testing.assert_close(K, k(100))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("L", [1, 5, 64])
def test_fft_conv_values_and_gradients_equal_autograd_through_ffts(bidirectional, L):
    torch.manual_seed(L)
    u = torch.randn(3, 4, L, dtype=torch.float64, requires_grad=True)
    k2 = torch.randn(2, 4, L, dtype=torch.float64)
    k = (bidirectional_kernel(k2) if bidirectional else k2[0]).requires_grad_()
    g = torch.randn(3, 4, L, dtype=torch.float64)
    ours = torch.autograd.grad((fft_conv(u, k) * g).sum(), (u, k))
    theirs = torch.autograd.grad((reference_fft_conv(u, k) * g).sum(), (u, k))
    torch.testing.assert_close(fft_conv(u, k), reference_fft_conv(u, k), rtol=0, atol=1e-12)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_fft_conv_saves_its_input_not_its_spectrum():
    u = torch.randn(2, 4, 256, requires_grad=True)
    k = torch.randn(4, 256, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        fft_conv(u, k)
    assert not any(t.is_complex() and t.numel() >= u.numel() for t in saved)


def test_layer_gradients_flow_through_the_lean_path():
    """The whole S4D layer (kernel, bidirectional, convolution, D) against the materialised formula."""
    torch.manual_seed(0)
    layer = S4D(4, d_state=8, bidirectional=True).double()
    u = torch.randn(2, 4, 50, dtype=torch.float64)
    y = layer(u)
    k = materialised(*layer.kernel.discrete(), 50)
    expected = reference_fft_conv(u, bidirectional_kernel(k)) + layer.D.unsqueeze(-1) * u
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
