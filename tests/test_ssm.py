"""The S4D layer: convolution mode against recurrent mode, and the kernel against its definition."""
import math

import pytest
import torch

from spikessm.errors import UserError
from spikessm.ssm import S4D, S4DKernel, bidirectional_kernel, fft_conv


def run_steps(layer, u):
    """Reference: feed u (B, H, L) through the recurrence one step at a time."""
    state, discrete, ys = layer.initial_state(u.shape[0]), layer.kernel.discrete(), []
    for t in range(u.shape[-1]):
        y, state = layer.step(u[..., t], state, discrete)
        ys.append(y)
    return torch.stack(ys, -1)


def randomise(layer: S4D, seed: int):
    """Random parameters beyond the initialisation (D, C and dt are all exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_convolution_equals_recurrence(init, dtype, tol):
    torch.manual_seed(0)
    layer = randomise(S4D(6, d_state=16, init=init), 1).to(dtype)
    u = torch.randn(2, 6, 512, dtype=dtype)
    assert (layer(u) - run_steps(layer, u)).abs().max().item() <= tol


def test_impulse_response_is_the_kernel_plus_D():
    torch.manual_seed(0)
    layer = S4D(4, d_state=8).double()
    L = 100
    u = torch.zeros(1, 4, L, dtype=torch.float64)
    u[..., 0] = 1.0
    expected = layer.kernel(L)[0].clone()
    expected[:, 0] += layer.D
    torch.testing.assert_close(run_steps(layer, u)[0], expected, rtol=0, atol=1e-12)


def test_kernel_matches_its_definition_by_hand():
    """K[l] = 2 Re(sum_n C'_n exp(dt A_n l)), written out with Python complex numbers."""
    torch.manual_seed(0)
    k = S4DKernel(1, d_state=4).double()
    dt = math.exp(k.log_dt[0].item())
    K = k(5)[0, 0]
    for l in range(5):
        total = 0
        for n in range(2):
            A = complex(-math.exp(k.log_A_real[0, n].item()), k.A_imag[0, n].item())
            C = complex(*k.C[0, 0, n].tolist())
            Cd = C * (complex(math.e) ** (dt * A) - 1) / A
            total += Cd * complex(math.e) ** (dt * A * l)
        assert abs(K[l].item() - 2 * total.real) < 1e-12


def test_init_schemes():
    lin = S4DKernel(2, d_state=8, init="lin")
    inv = S4DKernel(2, d_state=8, init="inv")
    torch.testing.assert_close(lin.A_imag[0], math.pi * torch.arange(4.0))
    n = torch.arange(4.0)
    torch.testing.assert_close(inv.A_imag[0], 8 / math.pi * (8 / (2 * n + 1) - 1))
    torch.testing.assert_close(torch.exp(lin.log_A_real), torch.full((2, 4), 0.5))
    dt = torch.exp(S4DKernel(1000, dt_min=0.01, dt_max=0.02).log_dt)
    assert dt.min() >= 0.01 and dt.max() <= 0.02


def test_bidirectional_kernel_is_causal_and_anticausal():
    torch.manual_seed(0)
    L = 32
    layer = S4D(3, d_state=8, bidirectional=True).double()
    with torch.no_grad():
        layer.D.zero_()
    k = layer.kernel(L)
    u = torch.zeros(1, 3, L, dtype=torch.float64)
    t0 = 10
    u[..., t0] = 1.0
    y = layer(u)[0]
    # output at t = t0 + m (m >= 0) comes from the causal kernel k[0][m] ...
    torch.testing.assert_close(y[:, t0:], k[0, :, : L - t0])
    # ... and at t = t0 - m (m >= 1) from the anti-causal kernel k[1][m - 1]
    torch.testing.assert_close(y[:, :t0].flip(-1), k[1, :, :t0])
    # Causal only: zeroing the backward kernel leaves no response before the impulse.
    only_forward = fft_conv(u, bidirectional_kernel(torch.stack([k[0], torch.zeros_like(k[1])])))
    assert only_forward[0, :, :t0].abs().max() < 1e-12 < k[1].abs().max()


def test_bidirectional_cannot_stream():
    with pytest.raises(UserError, match="bidirectional"):
        S4D(2, bidirectional=True).initial_state(1)


def test_fft_conv_equals_direct_convolution():
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, 20, dtype=torch.float64), torch.randn(3, 20, dtype=torch.float64)
    direct = torch.zeros_like(u)
    for t in range(20):
        for s in range(t + 1):
            direct[..., t] += k[:, t - s] * u[..., s]
    torch.testing.assert_close(fft_conv(u, k), direct)


@pytest.mark.parametrize("kwargs", [dict(init="foo"), dict(d_state=7), dict(dt_min=0.2, dt_max=0.1)])
def test_bad_options(kwargs):
    with pytest.raises(UserError):
        S4DKernel(2, **kwargs)
